// The embedded HistoryStore: one SQLite file in WAL mode, written by one thread that group-commits
// everything queued, so that many concurrent writers share each transaction's fsync.

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "predictor/check.h"
#include "server/group_commit_store.h"
#include "server/history_store.h"
#include "server/log.h"
#include "server/sqlite_wal_scan.h"

namespace prewarm {
namespace {

constexpr int kSchemaVersion = 2;

// PRAGMA application_id of a prewarm store ("prwm"), written when the store is created (and into
// stores created before it existed): `file` and other tools can tell the file apart, and an
// SQLite file of another application is refused at once.
constexpr int64_t kApplicationId = 0x7072776d;

// Lines of PRAGMA quick_check output kept for the error; the check stops after as many problems.
constexpr int kQuickCheckMaxErrors = 10;

// kMigrations[v] takes a store from schema version v to v + 1, inside one transaction. Append new
// versions; never edit a released one.
// The BLOB columns (services, runs, run_events) hold prewarm.store.v1 / prewarm.v1 protos: they
// evolve by protobuf's rules (new optional fields, never a reused number) without a schema
// version, and the reader handles their absence (e.g. a run snapshot without its model, written
// before issue 11's restore, is planned again from the history). Bump the schema only for tables,
// columns and indexes.
constexpr const char* kMigrations[] = {
    // 0 -> 1.
    // seq is the rowid: insertion order, which is what "oldest" means. Pruning never deletes the
    // newest row of the table, so without AUTOINCREMENT seq still never goes back. (A WITHOUT
    // ROWID table clustered by (kind, key, seq) measured ~1.7x the writer CPU of this layout.)
    // value is NULL for NaN, which SQLite cannot store as a REAL.
    R"sql(
      CREATE TABLE observations (
        seq INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,
        key TEXT NOT NULL,
        value REAL,
        time_unix_nanos INTEGER NOT NULL
      );
      CREATE INDEX observations_by_key ON observations (kind, key, seq);
      CREATE TABLE services (name TEXT PRIMARY KEY, serialized BLOB NOT NULL) WITHOUT ROWID;
      CREATE TABLE runs (run_id TEXT PRIMARY KEY, serialized BLOB NOT NULL) WITHOUT ROWID;
      CREATE TABLE run_events (
        seq INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        serialized BLOB NOT NULL
      );
      CREATE INDEX run_events_by_run ON run_events (run_id, seq);
    )sql",
    // 1 -> 2.
    // run_events loses its index on (run_id, seq). Runs report concurrently, so a commit's events
    // each inserted an entry into a different leaf page of the index (that of their run): ~60% of
    // the WAL frames under a ReportTiming load of 256 concurrent runs. The store keeps each run's
    // event seqs in memory instead (read from the table at Open) and DeleteRun deletes by seq.
    // seq is still the rowid, now chosen by the store (one more than the largest at Open, then
    // counting up), so a run's events load in the order appended.
    R"sql(
      DROP INDEX run_events_by_run;
    )sql",
};
static_assert(std::size(kMigrations) == kSchemaVersion);

// GroupCommitStore::kMaxWriteBytes keeps writes SQLite would refuse (SQLITE_TOOBIG, failing every
// other write of their transaction) or whose lengths do not fit its API (past INT_MAX) out.
// Long enough to ride out another process's checkpoint or a backup, short enough that a store
// locked for good turns into errors instead of a hung writer.
constexpr int kBusyTimeoutMs = 5000;

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

absl::StatusCode CodeFor(int rc) {
  switch (rc & 0xff) {  // The primary code of an extended one.
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_PROTOCOL:
      return absl::StatusCode::kUnavailable;
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return absl::StatusCode::kPermissionDenied;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
      return absl::StatusCode::kInvalidArgument;
    default:
      return absl::StatusCode::kInternal;
  }
}

// An error from the last call on `db` (which returned `rc`), naming the file and the operation.
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view path, absl::string_view what) {
  // sqlite3_errmsg() is more specific than sqlite3_errstr(), e.g. which table or column.
  const char* message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return absl::Status(CodeFor(rc), absl::StrCat("prewarm store ", path, ": ", what, ": ", message,
                                                " (sqlite error ", rc, ")"));
}

absl::Status Exec(sqlite3* db, const char* sql, absl::string_view path, absl::string_view what) {
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db, rc, path, what);
  return absl::OkStatus();
}

absl::StatusOr<StmtPtr> Prepare(sqlite3* db, absl::string_view sql, bool persistent,
                                absl::string_view path) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                              persistent ? SQLITE_PREPARE_PERSISTENT : 0, &stmt, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db, rc, path, absl::StrCat("preparing ", sql));
  return StmtPtr(stmt);
}

// The first column of the first row of `sql`, or NOT_FOUND when there is no row.
absl::StatusOr<std::string> QueryText(sqlite3* db, absl::string_view sql, absl::string_view path) {
  absl::StatusOr<StmtPtr> stmt = Prepare(db, sql, /*persistent=*/false, path);
  if (!stmt.ok()) return stmt.status();
  int rc = sqlite3_step(stmt->get());
  if (rc == SQLITE_DONE) return absl::NotFoundError(absl::StrCat("no row from ", sql));
  if (rc != SQLITE_ROW) return SqliteError(db, rc, path, sql);
  const unsigned char* text = sqlite3_column_text(stmt->get(), 0);
  return std::string(text == nullptr ? "" : reinterpret_cast<const char*>(text));
}

absl::StatusOr<int64_t> QueryInt(sqlite3* db, absl::string_view sql, absl::string_view path) {
  absl::StatusOr<StmtPtr> stmt = Prepare(db, sql, /*persistent=*/false, path);
  if (!stmt.ok()) return stmt.status();
  int rc = sqlite3_step(stmt->get());
  if (rc == SQLITE_DONE) return absl::NotFoundError(absl::StrCat("no row from ", sql));
  if (rc != SQLITE_ROW) return SqliteError(db, rc, path, sql);
  return sqlite3_column_int64(stmt->get(), 0);
}

absl::StatusOr<DbPtr> OpenConnection(const std::string& path, int flags) {
  sqlite3* raw = nullptr;
  // NOMUTEX: each connection is used by one thread at a time (the writer, or loads under a lock),
  // so SQLite's own per-connection mutex would be pure overhead.
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  DbPtr db(raw);  // Even a failed open returns a handle that must be closed.
  if (rc != SQLITE_OK) return SqliteError(db.get(), rc, path, "opening");
  sqlite3_extended_result_codes(db.get(), 1);
  rc = sqlite3_busy_timeout(db.get(), kBusyTimeoutMs);
  if (rc != SQLITE_OK) return SqliteError(db.get(), rc, path, "setting busy_timeout");
  return db;
}

// Brings the schema to kSchemaVersion in one transaction, refusing files that are not ours.
absl::Status Migrate(sqlite3* db, const std::string& path) {
  absl::Status status = Exec(db, "BEGIN IMMEDIATE", path, "starting the migration");
  if (!status.ok()) return status;
  status = [&]() -> absl::Status {
    absl::StatusOr<int64_t> has_version = QueryInt(
        db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
        path);
    if (!has_version.ok()) return has_version.status();
    int64_t version = 0;
    if (*has_version > 0) {
      absl::StatusOr<int64_t> stored = QueryInt(db, "SELECT version FROM schema_version", path);
      if (absl::IsNotFound(stored.status())) {
        return absl::DataLossError(
            absl::StrCat("prewarm store ", path, ": the schema_version table is empty"));
      }
      if (!stored.ok()) return stored.status();
      version = *stored;
    } else {
      absl::StatusOr<int64_t> objects = QueryInt(db, "SELECT count(*) FROM sqlite_master", path);
      if (!objects.ok()) return objects.status();
      // Someone else's database: adding our tables to it would be a surprise.
      if (*objects > 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("prewarm store ", path,
                         ": an SQLite database but not a prewarm store (no schema_version)"));
      }
      absl::Status created = Exec(db,
                                  "CREATE TABLE schema_version (version INTEGER NOT NULL);"
                                  "INSERT INTO schema_version (version) VALUES (0);",
                                  path, "creating schema_version");
      if (!created.ok()) return created;
    }
    if (version > kSchemaVersion || version < 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("prewarm store ", path, ": schema version ", version,
                       " is not supported by this binary (which supports up to ", kSchemaVersion,
                       "); upgrade prewarmd"));
    }
    for (int64_t v = version; v < kSchemaVersion; ++v) {
      absl::Status migrated =
          Exec(db, kMigrations[v], path, absl::StrCat("migrating to schema version ", v + 1));
      if (!migrated.ok()) return migrated;
    }
    absl::StatusOr<int64_t> application_id = QueryInt(db, "PRAGMA application_id", path);
    if (!application_id.ok()) return application_id.status();
    if (*application_id != kApplicationId) {
      absl::Status marked =
          Exec(db, absl::StrCat("PRAGMA application_id = ", kApplicationId).c_str(), path,
               "recording the application id");
      if (!marked.ok()) return marked;
    }
    if (version == kSchemaVersion) return absl::OkStatus();
    return Exec(db, absl::StrCat("UPDATE schema_version SET version = ", kSchemaVersion).c_str(),
                path, "recording the schema version");
  }();
  if (!status.ok()) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);  // Best effort; the error matters.
    return status;
  }
  return Exec(db, "COMMIT", path, "committing the migration");
}

// Checks an existing store file before anything writes to it (SQLite's recovery would make a
// damaged WAL's loss permanent at the first checkpoint). Reads only: the WAL with our own scan,
// the database through a read-only connection, which never checkpoints.
absl::Status CheckExistingFile(const StoreOptions& options) {
  namespace fs = std::filesystem;
  const std::string& path = options.path;
  const std::string wal_path = path + "-wal";
  std::error_code error;
  if (!fs::exists(path, error)) {
    // SQLite would rebuild pages of the missing file from the WAL into a new, partial one.
    const uintmax_t wal_bytes = fs::file_size(wal_path, error);
    if (!error && wal_bytes > 0) {
      return absl::DataLossError(absl::StrCat(
          "prewarm store ", path, " does not exist but its WAL ", wal_path, " does (", wal_bytes,
          " bytes): the database file was removed or renamed; restore it, or remove the WAL to "
          "start with an empty store"));
    }
    return absl::OkStatus();  // A new store.
  }
  const uintmax_t bytes = fs::file_size(path, error);

  absl::StatusOr<WalScan> wal = ScanSqliteWal(wal_path);
  if (!wal.ok()) {
    return absl::Status(wal.status().code(),
                        absl::StrCat("prewarm store ", path, ": ", wal.status().message()));
  }
  if (wal->lost_commits > 0) {
    return absl::DataLossError(absl::StrCat(
        "prewarm store ", path, ": its WAL ", wal_path,
        wal->header_valid
            ? absl::StrCat(" has a damaged frame (", wal->first_bad_frame, " of ", wal->frames, ")")
            : std::string(" has a damaged header"),
        " followed by ", wal->lost_commits, " intact committed transaction(s) (", wal->lost_frames,
        " frames) that SQLite would silently drop; keep a copy of both files, "
        "then restore from a backup, or accept the loss of those transactions by checkpointing "
        "what precedes the damage: sqlite3 '",
        path,
        "' 'PRAGMA wal_checkpoint(TRUNCATE)' "
        "(see docs/store.md)"));
  }

  absl::StatusOr<DbPtr> db = OpenConnection(path, SQLITE_OPEN_READONLY);
  if (!db.ok()) return db.status();
  // The first read parses the header: a file that is not a database fails here with DATA_LOSS.
  absl::StatusOr<int64_t> application_id = QueryInt(db->get(), "PRAGMA application_id", path);
  if (!application_id.ok()) return application_id.status();

  {
    absl::StatusOr<StmtPtr> check =
        Prepare(db->get(), absl::StrCat("PRAGMA quick_check(", kQuickCheckMaxErrors, ")"),
                /*persistent=*/false, path);
    if (!check.ok()) return check.status();
    std::vector<std::string> problems;
    int rc;
    while ((rc = sqlite3_step(check->get())) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(check->get(), 0);
      std::string line = text == nullptr ? "" : reinterpret_cast<const char*>(text);
      if (line != "ok") problems.push_back(std::move(line));
    }
    if (rc != SQLITE_DONE) return SqliteError(db->get(), rc, path, "PRAGMA quick_check");
    if (!problems.empty()) {
      return absl::DataLossError(absl::StrCat(
          "prewarm store ", path,
          " is damaged (PRAGMA quick_check: ", absl::StrJoin(problems, "; "),
          "); keep a copy of the file, then restore it from a backup or move it aside to start "
          "with an empty store (see docs/store.md)"));
    }
  }

  if (*application_id != 0 && *application_id != kApplicationId) {
    return absl::FailedPreconditionError(absl::StrCat(
        "prewarm store ", path, ": an SQLite database of another application (application_id ",
        *application_id, "), not a prewarm store"));
  }
  absl::StatusOr<int64_t> objects = QueryInt(db->get(), "SELECT count(*) FROM sqlite_master", path);
  if (!objects.ok()) return objects.status();
  if (*objects > 0) return absl::OkStatus();  // Migrate() tells a store from someone else's.
  const std::string what =
      bytes == 0 ? std::string("is empty (0 bytes)") : "is an SQLite database without any table";
  if (!options.accept_empty) {
    return absl::DataLossError(absl::StrCat(
        "prewarm store ", path, " exists but ", what,
        ": a store was expected (was it truncated or replaced?). Refusing to start with an empty "
        "store, which would forget every service and active run. Restore it from a backup, or "
        "start with --store_accept_empty (config store_accept_empty) to initialise a new store "
        "in it"));
  }
  PREWARM_LOG(WARNING) << "prewarm store " << path << " exists but " << what
                       << "; initialising a NEW EMPTY STORE in it because store_accept_empty is "
                          "set: no services, history or active runs are restored";
  return absl::OkStatus();
}

// Appends of one table that a batch holds are inserted by statements of up to
// 2^(kInsertSizes - 1) rows each (VALUES (...), (...), ...): one statement's overhead (its
// cursors, its NewRowid seek to the table's end, its halt) is shared by the rows of a batch,
// which are inserted in the same order and get the same seq as one statement per row would give.
constexpr int kInsertSizes = 6;
constexpr int kObservationColumns = 4;  // kind, key, value, time_unix_nanos
constexpr int kRunEventColumns = 3;     // seq, run_id, serialized

// The writer's statements, prepared once.
struct Statements {
  StmtPtr begin;
  StmtPtr commit;
  StmtPtr rollback;
  // [k] inserts 2^k rows.
  std::array<StmtPtr, kInsertSizes> insert_observations;
  std::array<StmtPtr, kInsertSizes> append_run_events;
  StmtPtr count_observations;
  StmtPtr prune_observations;
  StmtPtr delete_observations;
  StmtPtr put_service;
  StmtPtr delete_service;
  StmtPtr put_run;
  StmtPtr delete_run;
  StmtPtr delete_run_event;
};

// "INSERT OR FAIL INTO <table_columns> VALUES (?, ...), ..." of `rows` rows of `columns`
// parameters. OR FAIL, not the default ABORT: a statement that writes several rows and may abort
// needs a statement journal (a copy of every page it changes, spilled to a temporary file beyond
// 64 KiB), which made these inserts slower than one statement per row
// (sqlite_history_store_benchmark: -30% writes/s). Nothing needs a failed statement undone on its
// own: any error fails and rolls back the whole batch.
std::string MultiRowInsert(absl::string_view table_columns, int columns, int rows) {
  const std::string row =
      absl::StrCat("(", absl::StrJoin(std::vector<std::string>(columns, "?"), ", "), ")");
  return absl::StrCat("INSERT OR FAIL INTO ", table_columns, " VALUES ",
                      absl::StrJoin(std::vector<std::string>(rows, row), ", "));
}

absl::StatusOr<Statements> PrepareStatements(sqlite3* db, absl::string_view path) {
  Statements s;
  std::pair<StmtPtr*, absl::string_view> all[] = {
      {&s.begin, "BEGIN IMMEDIATE"},
      {&s.commit, "COMMIT"},
      {&s.rollback, "ROLLBACK"},
      {&s.count_observations, "SELECT count(*) FROM observations WHERE kind = ?1 AND key = ?2"},
      // Deletes the key's ?3 + 1 oldest rows: an index range on (kind, key, seq) whose bound is
      // ?3 entries from the start of the key, not max_observations_per_key entries from its end.
      {&s.prune_observations,
       "DELETE FROM observations WHERE kind = ?1 AND key = ?2 AND seq <= ("
       "SELECT seq FROM observations WHERE kind = ?1 AND key = ?2 "
       "ORDER BY seq LIMIT 1 OFFSET ?3)"},
      {&s.delete_observations, "DELETE FROM observations WHERE kind = ?1 AND key = ?2"},
      {&s.put_service,
       "INSERT INTO services (name, serialized) VALUES (?1, ?2) "
       "ON CONFLICT (name) DO UPDATE SET serialized = excluded.serialized"},
      {&s.delete_service, "DELETE FROM services WHERE name = ?1"},
      {&s.put_run,
       "INSERT INTO runs (run_id, serialized) VALUES (?1, ?2) "
       "ON CONFLICT (run_id) DO UPDATE SET serialized = excluded.serialized"},
      {&s.delete_run, "DELETE FROM runs WHERE run_id = ?1"},
      {&s.delete_run_event, "DELETE FROM run_events WHERE seq = ?1"},
  };
  for (auto& [stmt, sql] : all) {
    absl::StatusOr<StmtPtr> prepared = Prepare(db, sql, /*persistent=*/true, path);
    if (!prepared.ok()) return prepared.status();
    *stmt = *std::move(prepared);
  }
  for (int k = 0; k < kInsertSizes; ++k) {
    for (auto [stmt, table_columns, columns] :
         {std::tuple(&s.insert_observations[k], "observations (kind, key, value, time_unix_nanos)",
                     kObservationColumns),
          std::tuple(&s.append_run_events[k], "run_events (seq, run_id, serialized)",
                     kRunEventColumns)}) {
      absl::StatusOr<StmtPtr> prepared =
          Prepare(db, MultiRowInsert(table_columns, columns, 1 << k), /*persistent=*/true, path);
      if (!prepared.ok()) return prepared.status();
      *stmt = *std::move(prepared);
    }
  }
  return s;
}

void BindText(sqlite3_stmt* stmt, int index, absl::string_view text) {
  // SQLITE_STATIC: the bytes outlive the step; every use rebinds before stepping again.
  sqlite3_bind_text(stmt, index, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
}

void BindBlob(sqlite3_stmt* stmt, int index, absl::string_view bytes) {
  // A null pointer would bind NULL, not an empty blob.
  sqlite3_bind_blob(stmt, index, bytes.empty() ? "" : bytes.data(), static_cast<int>(bytes.size()),
                    SQLITE_STATIC);
}

absl::string_view ColumnBytes(sqlite3_stmt* stmt, int column) {
  const void* data = sqlite3_column_blob(stmt, column);
  int size = sqlite3_column_bytes(stmt, column);  // After the pointer, as SQLite requires.
  return absl::string_view(static_cast<const char*>(data), static_cast<size_t>(size));
}

// Runs a cached statement once and resets it for the next use.
int StepAndReset(sqlite3_stmt* stmt) {
  int rc = sqlite3_step(stmt);
  sqlite3_reset(stmt);
  return rc;
}

// Binds an observation append to parameters `first`..`first` + kObservationColumns - 1.
void BindObservation(sqlite3_stmt* stmt, int first, const GroupCommitStore::Write& write) {
  sqlite3_bind_int(stmt, first, static_cast<int>(write.kind));
  BindText(stmt, first + 1, write.key);
  if (std::isnan(write.value)) {
    sqlite3_bind_null(stmt, first + 2);
  } else {
    sqlite3_bind_double(stmt, first + 2, write.value);
  }
  sqlite3_bind_int64(stmt, first + 3, absl::ToUnixNanos(write.time));
}

// Binds a run-event append with `seq` to parameters `first`..`first` + kRunEventColumns - 1.
void BindRunEvent(sqlite3_stmt* stmt, int first, int64_t seq,
                  const GroupCommitStore::Write& write) {
  sqlite3_bind_int64(stmt, first, seq);
  BindText(stmt, first + 1, write.key);
  BindBlob(stmt, first + 2, write.bytes);
}

// The seqs of every run's events, which DeleteRun deletes by (run_events has no index on run_id,
// see kMigrations[1]). 8 bytes per event (up to twice that as a vector grows) plus ~100 per run:
// 21.2 MB of heap measured for 10,000 runs of 200 events each (vectors of capacity 256).
struct RunEventSeqs {
  // Each run's seqs, ascending (the order appended).
  absl::flat_hash_map<std::string, std::vector<int64_t>> by_run;
  // The seq of the next event: above every seq in the table.
  int64_t next = 1;
};

// Reads RunEventSeqs from the run_events table through `db` (in its current transaction, if any).
absl::StatusOr<RunEventSeqs> ReadRunEventSeqs(sqlite3* db, absl::string_view path) {
  absl::StatusOr<StmtPtr> stmt =
      Prepare(db, "SELECT seq, run_id FROM run_events ORDER BY seq", /*persistent=*/false, path);
  if (!stmt.ok()) return stmt.status();
  RunEventSeqs seqs;
  int rc;
  while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
    const int64_t seq = sqlite3_column_int64(stmt->get(), 0);
    seqs.by_run[ColumnBytes(stmt->get(), 1)].push_back(seq);
    seqs.next = seq + 1;
  }
  if (rc != SQLITE_DONE) return SqliteError(db, rc, path, "reading the run events' seqs");
  return seqs;
}

// Thread-safe. The writer thread alone uses the write connection; loads use a second, read-only
// connection, so they see committed snapshots while the writer carries on (WAL).
class SqliteHistoryStore final : public GroupCommitStore {
 public:
  SqliteHistoryStore(StoreOptions options, DbPtr db, DbPtr read_db, Statements statements,
                     RunEventSeqs event_seqs)
      : GroupCommitStore(options.path, options),
        options_(std::move(options)),
        db_(std::move(db)),
        statements_(std::move(statements)),
        event_seqs_(std::move(event_seqs)),
        read_db_(std::move(read_db)) {
    StartWriter();
  }

  ~SqliteHistoryStore() override { Close().IgnoreError(); }

  absl::Status LoadObservations(const std::function<void(const Observation&)>& fn) override
      ABSL_LOCKS_EXCLUDED(read_mu_);

  absl::Status Close() override ABSL_LOCKS_EXCLUDED(close_mu_, read_mu_);

 private:
  // A key's row count after this batch's inserts and pruning; -1 when unknown.
  struct KeyRows {
    int kind;
    absl::string_view key;
    int64_t rows;
  };

  absl::Status CommitBatch(absl::Span<const Write> batch) override;
  // Deletes the oldest rows of each key in `inserted` beyond max_observations_per_key.
  absl::Status Prune(
      const absl::flat_hash_map<std::pair<int, absl::string_view>, int64_t>& inserted,
      const absl::flat_hash_set<std::pair<int, absl::string_view>>& deleted,
      std::vector<KeyRows>* key_rows);
  absl::Status Apply(const Write& write);
  // Inserts `rows` rows (appends of one table, in order) with `inserts` (see kInsertSizes);
  // bind(stmt, first, row) binds row `row`'s `columns` parameters from parameter `first` on.
  absl::Status InsertRows(size_t rows, const std::array<StmtPtr, kInsertSizes>& inserts,
                          int columns, absl::FunctionRef<void(sqlite3_stmt*, int, size_t)> bind);
  // Inserts `events` (appends to run_events, in order) with the next seqs, recording them in
  // event_seqs_.
  absl::Status InsertRunEvents(std::vector<const Write*>& events);
  absl::Status LoadBlobs(
      const char* sql, const std::function<void(absl::string_view, absl::string_view)>& fn) override
      ABSL_LOCKS_EXCLUDED(read_mu_);
  absl::Status Error(int rc, absl::string_view what) const {
    return SqliteError(db_.get(), rc, options_.path, what);
  }

  const StoreOptions options_;

  // Used only by the writer thread while it runs, and by Close() after stopping it.
  DbPtr db_;
  Statements statements_;
  // Committed rows per key, by kind, for the keys written since Open: pruning then deletes just
  // the excess from the oldest end instead of walking max_observations_per_key index entries of
  // every key in every batch (that cost ~40% of the benchmark's CPU). Valid because this store is
  // the file's only writer.
  absl::flat_hash_map<int, absl::flat_hash_map<std::string, int64_t>> rows_per_key_;
  // The committed run events' seqs (plus, during a batch, its own). A failed batch leaves them
  // ahead of the table: they are read again from it at the start of the next batch.
  RunEventSeqs event_seqs_;
  bool event_seqs_stale_ = false;

  absl::Mutex close_mu_;  // Serialises Close() calls.
  bool closed_ ABSL_GUARDED_BY(close_mu_) = false;

  absl::Mutex read_mu_;
  DbPtr read_db_ ABSL_GUARDED_BY(read_mu_);  // Null after Close().
};

absl::Status SqliteHistoryStore::CommitBatch(absl::Span<const Write> batch) {
  int rc = StepAndReset(statements_.begin.get());
  if (rc != SQLITE_DONE) return Error(rc, "beginning a transaction");

  absl::Status status;
  if (event_seqs_stale_) {
    absl::StatusOr<RunEventSeqs> seqs = ReadRunEventSeqs(db_.get(), options_.path);
    if (seqs.ok()) {
      event_seqs_ = *std::move(seqs);
      event_seqs_stale_ = false;
    } else {
      status = seqs.status();
    }
  }
  // Observations per key in this batch, for pruning each key once after all inserts.
  absl::flat_hash_map<std::pair<int, absl::string_view>, int64_t> inserted;
  // Keys whose observations this batch deleted: rows_per_key_ no longer knows their count.
  absl::flat_hash_set<std::pair<int, absl::string_view>> deleted;
  // Appends wait here to be inserted together: until the end of the batch, or until a write
  // that reads or deletes their table (so that each table sees its writes in the batch's order;
  // the tables are independent, and the batch commits as a whole).
  std::vector<const Write*> observations;
  std::vector<const Write*> events;
  const auto insert_observations = [&] {
    absl::Status inserted =
        InsertRows(observations.size(), statements_.insert_observations, kObservationColumns,
                   [&](sqlite3_stmt* stmt, int first, size_t row) {
                     BindObservation(stmt, first, *observations[row]);
                   });
    observations.clear();
    return inserted;
  };
  const auto insert_events = [&] { return InsertRunEvents(events); };
  for (const Write& write : batch) {
    if (!status.ok()) break;
    switch (write.op) {
      case Op::kAppendObservation:
        observations.push_back(&write);
        break;
      case Op::kAppendRunEvent:
        events.push_back(&write);
        break;
      case Op::kDeleteObservations:
        status = insert_observations();
        if (status.ok()) status = Apply(write);
        break;
      case Op::kDeleteRun:
        status = insert_events();
        if (status.ok()) status = Apply(write);
        break;
      case Op::kPutService:
      case Op::kDeleteService:
      case Op::kPutRun:
        status = Apply(write);
        break;
    }
    if (!status.ok()) break;
    const std::pair<int, absl::string_view> kind_key = {static_cast<int>(write.kind), write.key};
    if (write.op == Op::kAppendObservation) ++inserted[kind_key];
    if (write.op == Op::kDeleteObservations) {
      inserted.erase(kind_key);
      deleted.insert(kind_key);
    }
  }
  if (status.ok()) status = insert_observations();
  if (status.ok()) status = insert_events();
  std::vector<KeyRows> key_rows;
  if (status.ok()) status = Prune(inserted, deleted, &key_rows);
  if (status.ok()) {
    rc = StepAndReset(statements_.commit.get());
    if (rc == SQLITE_DONE) {
      for (const auto& [kind, key] : deleted) rows_per_key_[kind].erase(key);
      for (const KeyRows& k : key_rows) {
        absl::flat_hash_map<std::string, int64_t>& rows = rows_per_key_[k.kind];
        if (k.rows < 0) {
          rows.erase(k.key);
        } else if (auto it = rows.find(k.key); it != rows.end()) {
          it->second = k.rows;
        } else {
          rows.emplace(std::string(k.key), k.rows);
        }
      }
      return absl::OkStatus();
    }
    status = Error(rc, "committing");
  }
  // Some errors (e.g. SQLITE_FULL) already rolled the transaction back. rows_per_key_ still
  // describes the last commit, so it stays valid; event_seqs_ may hold this batch's changes.
  if (!sqlite3_get_autocommit(db_.get())) StepAndReset(statements_.rollback.get());
  event_seqs_stale_ = true;
  return status;
}

absl::Status SqliteHistoryStore::Prune(
    const absl::flat_hash_map<std::pair<int, absl::string_view>, int64_t>& inserted,
    const absl::flat_hash_set<std::pair<int, absl::string_view>>& deleted,
    std::vector<KeyRows>* key_rows) {
  const int64_t max = options_.max_observations_per_key;
  for (const auto& [kind_key, added] : inserted) {
    const auto& [kind, key] = kind_key;
    int64_t rows;
    const absl::flat_hash_map<std::string, int64_t>& known = rows_per_key_[kind];
    if (auto it = known.find(key); it != known.end() && !deleted.contains(kind_key)) {
      rows = it->second + added;
    } else {  // First sight of the key since Open: count once (at most the old bound + added).
      sqlite3_stmt* count = statements_.count_observations.get();
      sqlite3_bind_int(count, 1, kind);
      BindText(count, 2, key);
      int rc = sqlite3_step(count);
      rows = rc == SQLITE_ROW ? sqlite3_column_int64(count, 0) : 0;
      sqlite3_reset(count);
      if (rc != SQLITE_ROW) return Error(rc, "counting observations");
    }
    if (rows > max) {
      sqlite3_stmt* prune = statements_.prune_observations.get();
      sqlite3_bind_int(prune, 1, kind);
      BindText(prune, 2, key);
      sqlite3_bind_int64(prune, 3, rows - max - 1);
      int rc = StepAndReset(prune);
      if (rc != SQLITE_DONE) return Error(rc, "pruning observations");
      // Fewer deletions than expected mean another writer changed the key: count it again next
      // time rather than prune on a wrong count.
      rows = sqlite3_changes64(db_.get()) == rows - max ? max : -1;
    }
    key_rows->push_back(KeyRows{kind, key, rows});
  }
  return absl::OkStatus();
}

absl::Status SqliteHistoryStore::Apply(const Write& write) {
  sqlite3_stmt* stmt = nullptr;
  switch (write.op) {
    case Op::kAppendObservation:
    case Op::kAppendRunEvent:
      PREWARM_CHECK(false, "appends are inserted by InsertRows");
      break;
    case Op::kDeleteObservations:
      stmt = statements_.delete_observations.get();
      sqlite3_bind_int(stmt, 1, static_cast<int>(write.kind));
      BindText(stmt, 2, write.key);
      break;
    case Op::kPutService:
      stmt = statements_.put_service.get();
      BindText(stmt, 1, write.key);
      BindBlob(stmt, 2, write.bytes);
      break;
    case Op::kDeleteService:
      stmt = statements_.delete_service.get();
      BindText(stmt, 1, write.key);
      break;
    case Op::kPutRun:
      stmt = statements_.put_run.get();
      BindText(stmt, 1, write.key);
      BindBlob(stmt, 2, write.bytes);
      break;
    case Op::kDeleteRun: {
      // The run's events go with it.
      if (auto it = event_seqs_.by_run.find(write.key); it != event_seqs_.by_run.end()) {
        sqlite3_stmt* event = statements_.delete_run_event.get();
        for (int64_t seq : it->second) {
          sqlite3_bind_int64(event, 1, seq);
          if (int rc = StepAndReset(event); rc != SQLITE_DONE) return Error(rc, "writing");
        }
        event_seqs_.by_run.erase(it);
      }
      stmt = statements_.delete_run.get();
      BindText(stmt, 1, write.key);
      break;
    }
  }
  int rc = StepAndReset(stmt);
  if (rc != SQLITE_DONE) return Error(rc, "writing");
  return absl::OkStatus();
}

absl::Status SqliteHistoryStore::InsertRows(
    size_t rows, const std::array<StmtPtr, kInsertSizes>& inserts, int columns,
    absl::FunctionRef<void(sqlite3_stmt*, int, size_t)> bind) {
  // The largest statement that fits what is left, so at most one statement per size but the
  // largest.
  size_t done = 0;
  while (done < rows) {
    int k = kInsertSizes - 1;
    while ((size_t{1} << k) > rows - done) --k;
    sqlite3_stmt* stmt = inserts[k].get();
    const size_t n = size_t{1} << k;
    for (size_t r = 0; r < n; ++r) bind(stmt, static_cast<int>(r) * columns + 1, done + r);
    int rc = StepAndReset(stmt);
    if (rc != SQLITE_DONE) return Error(rc, "writing");
    done += n;
  }
  return absl::OkStatus();
}

absl::Status SqliteHistoryStore::InsertRunEvents(std::vector<const Write*>& events) {
  const int64_t first_seq = event_seqs_.next;
  absl::Status status = InsertRows(events.size(), statements_.append_run_events, kRunEventColumns,
                                   [&](sqlite3_stmt* stmt, int first, size_t row) {
                                     BindRunEvent(stmt, first, first_seq + row, *events[row]);
                                   });
  if (status.ok()) {
    for (const Write* event : events) {
      event_seqs_.by_run[event->key].push_back(event_seqs_.next++);
    }
  }
  events.clear();
  return status;
}

absl::Status SqliteHistoryStore::Close() {
  PREWARM_CHECK(!OnWriterThread(), "HistoryStore::Close() called from a commit callback");
  absl::MutexLock close_lock(&close_mu_);
  if (closed_) return absl::OkStatus();
  closed_ = true;
  absl::Status status = StopWriter();  // Commits everything queued first.
  {
    absl::MutexLock lock(&read_mu_);
    read_db_.reset();
  }
  // The write connection closes last, so that it checkpoints the WAL into the main file.
  statements_ = Statements();
  sqlite3* db = db_.release();
  int rc = sqlite3_close(db);
  if (rc != SQLITE_OK) {
    if (status.ok()) status = SqliteError(db, rc, options_.path, "closing");
    sqlite3_close_v2(db);  // Frees it once whatever still holds it is done.
  }
  return status;
}

absl::Status SqliteHistoryStore::LoadObservations(
    const std::function<void(const Observation&)>& fn) {
  absl::MutexLock lock(&read_mu_);
  if (read_db_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("prewarm store ", options_.path, " is closed"));
  }
  sqlite3* db = read_db_.get();
  absl::StatusOr<StmtPtr> stmt =
      Prepare(db,
              "SELECT kind, key, value, time_unix_nanos FROM observations "
              "ORDER BY kind, key, seq",
              /*persistent=*/false, options_.path);
  if (!stmt.ok()) return stmt.status();

  NewestPerKey newest(options_.max_observations_per_key, fn, options_.path);
  int rc;
  while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
    newest.Add({.kind = static_cast<Observation::Kind>(sqlite3_column_int(stmt->get(), 0)),
                .key = std::string(ColumnBytes(stmt->get(), 1)),
                .value = sqlite3_column_type(stmt->get(), 2) == SQLITE_NULL
                             ? std::numeric_limits<double>::quiet_NaN()
                             : sqlite3_column_double(stmt->get(), 2),
                .time = absl::FromUnixNanos(sqlite3_column_int64(stmt->get(), 3))});
  }
  if (rc != SQLITE_DONE) return SqliteError(db, rc, options_.path, "loading observations");
  newest.Finish();
  return absl::OkStatus();
}

absl::Status SqliteHistoryStore::LoadBlobs(
    const char* sql, const std::function<void(absl::string_view, absl::string_view)>& fn) {
  absl::MutexLock lock(&read_mu_);
  if (read_db_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("prewarm store ", options_.path, " is closed"));
  }
  sqlite3* db = read_db_.get();
  absl::StatusOr<StmtPtr> stmt = Prepare(db, sql, /*persistent=*/false, options_.path);
  if (!stmt.ok()) return stmt.status();
  int rc;
  while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
    fn(ColumnBytes(stmt->get(), 0), ColumnBytes(stmt->get(), 1));
  }
  if (rc != SQLITE_DONE) return SqliteError(db, rc, options_.path, sql);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<HistoryStore>> HistoryStore::OpenSqlite(StoreOptions options) {
  const std::string& path = options.path;
  if (path.empty() || path == ":memory:") {
    return absl::InvalidArgumentError(
        absl::StrCat("prewarm store \"", path, "\": needs a file path (WAL needs a real file)"));
  }
  if (options.max_observations_per_key < 1 || options.max_batch < 1 ||
      options.max_batch_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prewarm store ", path, ": max_observations_per_key and max_batch must be >= 1 and ",
        "max_batch_delay >= 0"));
  }

  if (absl::Status checked = CheckExistingFile(options); !checked.ok()) return checked;

  absl::StatusOr<DbPtr> db = OpenConnection(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (!db.ok()) return db.status();
  // The first statement reads the file header: a file that is not a database fails here.
  absl::StatusOr<std::string> mode = QueryText(db->get(), "PRAGMA journal_mode = WAL", path);
  if (!mode.ok()) return mode.status();
  if (*mode != "wal") {
    return absl::FailedPreconditionError(absl::StrCat(
        "prewarm store ", path, ": cannot use WAL mode (journal_mode is ", *mode, ")"));
  }
  absl::Status status =
      Exec(db->get(),
           options.synchronous_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
           path, "setting synchronous");
  if (!status.ok()) return status;
  // Up to 64 MiB of pages (default 2 MiB): the observation index of a few thousand keys stays in
  // memory, which cut the benchmark's system time by ~40% (fewer page reads).
  status = Exec(db->get(), "PRAGMA cache_size = -65536", path, "setting cache_size");
  if (!status.ok()) return status;
  status = Migrate(db->get(), path);
  if (!status.ok()) return status;
  absl::StatusOr<Statements> statements = PrepareStatements(db->get(), path);
  if (!statements.ok()) return statements.status();
  absl::StatusOr<RunEventSeqs> event_seqs = ReadRunEventSeqs(db->get(), path);
  if (!event_seqs.ok()) return event_seqs.status();

  absl::StatusOr<DbPtr> read_db = OpenConnection(path, SQLITE_OPEN_READONLY);
  if (!read_db.ok()) return read_db.status();

  return std::make_unique<SqliteHistoryStore>(std::move(options), *std::move(db),
                                              *std::move(read_db), *std::move(statements),
                                              *std::move(event_seqs));
}

}  // namespace prewarm
