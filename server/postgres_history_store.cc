// The shared HistoryStore: one PostgreSQL database that several prewarmd replicas open, of which
// only the leader writes. Writes are group-committed by one writer thread: each batch is one
// pipelined transaction (one round trip) that first checks the fencing epoch, so that a replica
// that lost leadership cannot write after its successor took over.

#include <libpq-fe.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "predictor/check.h"
#include "server/group_commit_store.h"
#include "server/history_store.h"
#include "server/log.h"
#include "server/postgres_connection.h"
#include "server/postgres_schema.h"

namespace prewarm {
namespace {

constexpr int kSchemaVersion = 1;

// kMigrations[v] takes the database from schema version v to v + 1, inside one transaction that
// holds kMigrationLockKey, so that replicas starting together migrate once. Append new versions;
// never edit a released one. Keys, names and ids are bytea: they are arbitrary bytes (text cannot
// hold NUL), and bytea orders like SQLite's BINARY collation. value is NOT NULL: float8 holds NaN.
// prewarm_fence has one row: the epoch of the current leader, bumped by each new leader
// (PostgresLeader) and checked, under a share lock, by every write transaction.
constexpr const char* kMigrations[] = {
    // 0 -> 1.
    R"sql(
      CREATE TABLE prewarm_fence (
        id integer PRIMARY KEY CHECK (id = 1),
        epoch bigint NOT NULL,
        leader text NOT NULL,
        since timestamptz NOT NULL
      );
      INSERT INTO prewarm_fence VALUES (1, 0, '', now());
      CREATE FUNCTION prewarm_check_fence(expected bigint) RETURNS void LANGUAGE plpgsql AS $$
      DECLARE
        current_epoch bigint;
        current_leader text;
      BEGIN
        SELECT epoch, leader INTO current_epoch, current_leader FROM prewarm_fence WHERE id = 1
          FOR SHARE;
        IF current_epoch IS DISTINCT FROM expected THEN
          RAISE EXCEPTION 'fenced: this replica writes at epoch %, but replica "%" took over at '
                          'epoch %', expected, current_leader, current_epoch
            USING ERRCODE = 'PWF01';
        END IF;
      END $$;
      CREATE TABLE observations (
        seq bigserial PRIMARY KEY,
        kind integer NOT NULL,
        key bytea NOT NULL,
        value double precision NOT NULL,
        time_unix_nanos bigint NOT NULL
      );
      CREATE INDEX observations_by_key ON observations (kind, key, seq);
      CREATE TABLE services (name bytea PRIMARY KEY, serialized bytea NOT NULL);
      CREATE TABLE runs (run_id bytea PRIMARY KEY, serialized bytea NOT NULL);
      CREATE TABLE run_events (
        seq bigserial PRIMARY KEY,
        run_id bytea NOT NULL,
        serialized bytea NOT NULL
      );
      CREATE INDEX run_events_by_run ON run_events (run_id, seq);
    )sql",
};
static_assert(std::size(kMigrations) == kSchemaVersion);

// pg_advisory_xact_lock key held while migrating ("prwm" 1).
constexpr int64_t kMigrationLockKey = 0x7072776d00000001;

// Statements sent before their results are read: bounds what the server buffers for a client
// that is still sending (blocking libpq could otherwise deadlock on a full socket).
constexpr int kPipelineWindow = 256;

// No statement of the store waits longer (lock waits included): a locked or stuck database turns
// into UNAVAILABLE errors instead of a hung writer.
constexpr absl::Duration kStatementTimeout = absl::Seconds(30);

// The writer's prepared statements: name and SQL.
constexpr std::pair<const char*, const char*> kStatements[] = {
    {"check_fence", "SELECT prewarm_check_fence($1::bigint)"},
    {"insert_observation",
     "INSERT INTO observations (kind, key, value, time_unix_nanos) "
     "VALUES ($1::integer, $2::bytea, $3::float8, $4::bigint)"},
    // Deletes what is older than the key's newest $3 rows: an index range on (kind, key, seq).
    {"prune_observations",
     "DELETE FROM observations WHERE kind = $1::integer AND key = $2::bytea AND seq <= ("
     "SELECT seq FROM observations WHERE kind = $1::integer AND key = $2::bytea "
     "ORDER BY seq DESC OFFSET $3::bigint LIMIT 1)"},
    {"delete_observations",
     "DELETE FROM observations WHERE kind = $1::integer AND key = $2::bytea"},
    {"put_service",
     "INSERT INTO services (name, serialized) VALUES ($1::bytea, $2::bytea) "
     "ON CONFLICT (name) DO UPDATE SET serialized = excluded.serialized"},
    {"delete_service", "DELETE FROM services WHERE name = $1::bytea"},
    {"put_run",
     "INSERT INTO runs (run_id, serialized) VALUES ($1::bytea, $2::bytea) "
     "ON CONFLICT (run_id) DO UPDATE SET serialized = excluded.serialized"},
    {"delete_run", "DELETE FROM runs WHERE run_id = $1::bytea"},
    {"delete_run_events", "DELETE FROM run_events WHERE run_id = $1::bytea"},
    {"append_run_event",
     "INSERT INTO run_events (run_id, serialized) VALUES ($1::bytea, $2::bytea)"},
};

}  // namespace

absl::Status MigratePostgresSchema(PGconn* conn, const std::string& dsn) {
  auto exec = [&](const char* sql, absl::string_view what) {
    return pg::ExecScript(conn, dsn, sql, what);
  };
  absl::Status status = exec("BEGIN", "beginning the migration");
  if (!status.ok()) return status;
  auto migrate = [&]() -> absl::Status {
    absl::Status s = pg::Exec(conn, dsn, "SELECT pg_advisory_xact_lock($1::bigint)",
                              pg::Params().Int64(kMigrationLockKey), "locking for the migration")
                         .status();
    if (!s.ok()) return s;
    s = exec(
        "CREATE TABLE IF NOT EXISTS prewarm_schema ("
        "id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL); "
        "INSERT INTO prewarm_schema VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
        "creating the schema version table");
    if (!s.ok()) return s;
    absl::StatusOr<pg::ResultPtr> row =
        pg::Exec(conn, dsn, "SELECT version FROM prewarm_schema WHERE id = 1", pg::Params(),
                 "reading the schema version");
    if (!row.ok()) return row.status();
    const int version = pg::GetInt32(row->get(), 0, 0);
    if (version > kSchemaVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat("prewarm store ", pg::Describe(dsn), ": schema version ", version,
                       " is newer than this prewarmd's ", kSchemaVersion, "; upgrade prewarmd"));
    }
    for (int v = version; v < kSchemaVersion; ++v) {
      s = exec(kMigrations[v], absl::StrCat("migrating to schema version ", v + 1));
      if (!s.ok()) return s;
    }
    if (version == kSchemaVersion) return absl::OkStatus();
    return pg::Exec(conn, dsn, "UPDATE prewarm_schema SET version = $1::integer",
                    pg::Params().Int32(kSchemaVersion), "writing the schema version")
        .status();
  };
  status = migrate();
  if (!status.ok()) {
    exec("ROLLBACK", "rolling back the migration").IgnoreError();
    return status;
  }
  return exec("COMMIT", "committing the migration");
}

namespace {

// Thread-safe. The writer thread alone uses the write connection (reconnecting after a failed
// batch); loads use a second connection under read_mu_.
class PostgresHistoryStore final : public GroupCommitStore {
 public:
  PostgresHistoryStore(StoreOptions options, pg::ConnPtr conn, pg::ConnPtr read_conn)
      : GroupCommitStore(pg::Describe(options.path), options),
        options_(std::move(options)),
        conn_(std::move(conn)),
        read_conn_(std::move(read_conn)) {
    StartWriter();
  }

  ~PostgresHistoryStore() override { Close().IgnoreError(); }

  absl::Status LoadObservations(const std::function<void(const Observation&)>& fn) override
      ABSL_LOCKS_EXCLUDED(read_mu_);

  absl::Status Close() override ABSL_LOCKS_EXCLUDED(close_mu_, read_mu_);

 private:
  // Statements of one transaction sent in pipeline mode; results are read kPipelineWindow at a
  // time. The first failure is kept; later statements are aborted by the server.
  class Pipeline {
   public:
    Pipeline(PGconn* conn, const std::string& dsn) : conn_(conn), dsn_(dsn) {}
    void Send(const char* statement, const pg::Params& params) {
      if (!status_.ok()) return;
      if (PQsendQueryPrepared(conn_, statement, params.size(), params.values(), params.lengths(),
                              params.formats(), /*resultFormat=*/1) == 0) {
        status_ = pg::Error(conn_, nullptr, dsn_, "sending a write");
        return;
      }
      if (++outstanding_ >= kPipelineWindow) ReadResults(/*flush_request=*/true);
    }
    // Ends the implicit transaction (commit, or rollback after an error) and reads every result.
    absl::Status Finish() {
      if (!status_.ok()) return status_;
      if (PQpipelineSync(conn_) == 0) return pg::Error(conn_, nullptr, dsn_, "committing");
      ReadResults(/*flush_request=*/false);
      if (!broken_) {
        pg::ResultPtr sync(PQgetResult(conn_));
        if (PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC) {
          broken_ = true;
          if (status_.ok()) status_ = pg::Error(conn_, sync.get(), dsn_, "committing");
        }
      }
      return status_;
    }
    // Whether the connection is no longer usable (a result went missing).
    bool broken() const { return broken_; }

   private:
    void ReadResults(bool flush_request) {
      if (flush_request && (PQsendFlushRequest(conn_) == 0 || PQflush(conn_) != 0)) {
        broken_ = true;
        status_ = pg::Error(conn_, nullptr, dsn_, "sending writes");
        return;
      }
      for (; outstanding_ > 0; --outstanding_) {
        pg::ResultPtr result(PQgetResult(conn_));
        if (result == nullptr) {
          broken_ = true;
          if (status_.ok()) status_ = pg::Error(conn_, nullptr, dsn_, "writing");
          return;
        }
        const ExecStatusType s = PQresultStatus(result.get());
        if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_PIPELINE_ABORTED &&
            status_.ok()) {
          status_ = pg::Error(conn_, result.get(), dsn_, "writing");
        }
        pg::ResultPtr end(PQgetResult(conn_));  // Each statement's results end with a null.
      }
    }

    PGconn* conn_;
    const std::string& dsn_;
    int outstanding_ = 0;
    bool broken_ = false;
    absl::Status status_;
  };

  absl::Status CommitBatch(absl::Span<const Write> batch) override;
  // The write connection, reconnected and prepared after a failure; null with an error.
  absl::StatusOr<PGconn*> WriteConnection();
  absl::Status LoadBlobs(
      const char* sql, const std::function<void(absl::string_view, absl::string_view)>& fn) override
      ABSL_LOCKS_EXCLUDED(read_mu_);
  // Streams the rows of `sql` to `row`, one at a time (single-row mode), on the read connection.
  absl::Status Query(const char* sql, const std::function<void(const PGresult*)>& row)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_);

  const StoreOptions options_;

  // Used only by the writer thread while it runs, and by Close() after stopping it.
  pg::ConnPtr conn_;
  bool prepared_ = false;

  absl::Mutex close_mu_;  // Serialises Close() calls.
  bool closed_ ABSL_GUARDED_BY(close_mu_) = false;

  absl::Mutex read_mu_;
  pg::ConnPtr read_conn_ ABSL_GUARDED_BY(read_mu_);
  bool read_closed_ ABSL_GUARDED_BY(read_mu_) = false;
};

absl::StatusOr<PGconn*> PostgresHistoryStore::WriteConnection() {
  if (conn_ == nullptr || PQstatus(conn_.get()) != CONNECTION_OK) {
    conn_.reset();
    prepared_ = false;
    absl::StatusOr<pg::ConnPtr> conn = pg::Connect(options_.path, kStatementTimeout);
    if (!conn.ok()) return conn.status();
    conn_ = *std::move(conn);
  }
  if (!prepared_) {
    for (const auto& [name, sql] : kStatements) {
      pg::ResultPtr result(PQprepare(conn_.get(), name, sql, 0, nullptr));
      if (PQresultStatus(result.get()) != PGRES_COMMAND_OK) {
        absl::Status error =
            pg::Error(conn_.get(), result.get(), options_.path, absl::StrCat("preparing ", sql));
        conn_.reset();
        return error;
      }
    }
    prepared_ = true;
  }
  return conn_.get();
}

absl::Status PostgresHistoryStore::CommitBatch(absl::Span<const Write> batch) {
  absl::StatusOr<PGconn*> conn = WriteConnection();
  if (!conn.ok()) return conn.status();
  if (PQenterPipelineMode(*conn) == 0) {
    absl::Status error = pg::Error(*conn, nullptr, options_.path, "entering pipeline mode");
    conn_.reset();
    return error;
  }
  Pipeline pipeline(*conn, options_.path);
  // Checked first, under a share lock held to the commit: a new leader's epoch bump waits for
  // this transaction, and once it committed this check fails.
  pipeline.Send("check_fence", pg::Params().Int64(options_.fencing_epoch));
  // Keys to prune once, after all inserts (a key deleted later in the batch needs it no more).
  absl::flat_hash_set<std::pair<int, absl::string_view>> inserted;
  std::vector<std::pair<int, absl::string_view>> prune_order;
  for (const Write& write : batch) {
    const int kind = static_cast<int>(write.kind);
    switch (write.op) {
      case Op::kAppendObservation:
        pipeline.Send("insert_observation", pg::Params()
                                                .Int32(kind)
                                                .Bytes(write.key)
                                                .Double(write.value)
                                                .Int64(absl::ToUnixNanos(write.time)));
        if (inserted.insert({kind, write.key}).second) prune_order.push_back({kind, write.key});
        break;
      case Op::kDeleteObservations:
        pipeline.Send("delete_observations", pg::Params().Int32(kind).Bytes(write.key));
        break;
      case Op::kPutService:
        pipeline.Send("put_service", pg::Params().Bytes(write.key).Bytes(write.bytes));
        break;
      case Op::kDeleteService:
        pipeline.Send("delete_service", pg::Params().Bytes(write.key));
        break;
      case Op::kPutRun:
        pipeline.Send("put_run", pg::Params().Bytes(write.key).Bytes(write.bytes));
        break;
      case Op::kDeleteRun:  // The run's events go with it.
        pipeline.Send("delete_run_events", pg::Params().Bytes(write.key));
        pipeline.Send("delete_run", pg::Params().Bytes(write.key));
        break;
      case Op::kAppendRunEvent:
        pipeline.Send("append_run_event", pg::Params().Bytes(write.key).Bytes(write.bytes));
        break;
    }
  }
  for (const auto& [kind, key] : prune_order) {
    pipeline.Send("prune_observations",
                  pg::Params().Int32(kind).Bytes(key).Int64(options_.max_observations_per_key));
  }
  absl::Status status = pipeline.Finish();
  if (pipeline.broken() || PQexitPipelineMode(*conn) == 0) {
    conn_.reset();  // Reconnect for the next batch rather than reuse a confused connection.
  }
  return status;
}

absl::Status PostgresHistoryStore::Close() {
  PREWARM_CHECK(!OnWriterThread(), "HistoryStore::Close() called from a commit callback");
  absl::MutexLock close_lock(&close_mu_);
  if (closed_) return absl::OkStatus();
  closed_ = true;
  absl::Status status = StopWriter();
  conn_.reset();
  absl::MutexLock lock(&read_mu_);
  read_conn_.reset();
  read_closed_ = true;
  return status;
}

absl::Status PostgresHistoryStore::Query(const char* sql,
                                         const std::function<void(const PGresult*)>& row) {
  if (read_closed_) {
    return absl::FailedPreconditionError(absl::StrCat("prewarm store ", name(), " is closed"));
  }
  if (read_conn_ == nullptr || PQstatus(read_conn_.get()) != CONNECTION_OK) {
    read_conn_.reset();
    absl::StatusOr<pg::ConnPtr> conn = pg::Connect(options_.path, kStatementTimeout);
    if (!conn.ok()) return conn.status();
    read_conn_ = *std::move(conn);
  }
  PGconn* conn = read_conn_.get();
  if (PQsendQueryParams(conn, sql, 0, nullptr, nullptr, nullptr, nullptr, /*resultFormat=*/1) ==
          0 ||
      PQsetSingleRowMode(conn) == 0) {
    absl::Status error = pg::Error(conn, nullptr, options_.path, sql);
    read_conn_.reset();
    return error;
  }
  // One statement: one snapshot. Every result is read, even after an error, so that the
  // connection is ready for the next query.
  absl::Status status;
  while (pg::ResultPtr result{PQgetResult(conn)}) {
    const ExecStatusType s = PQresultStatus(result.get());
    if (s == PGRES_SINGLE_TUPLE) {
      if (status.ok()) row(result.get());
    } else if (s != PGRES_TUPLES_OK && status.ok()) {
      status = pg::Error(conn, result.get(), options_.path, sql);
    }
  }
  if (PQstatus(conn) != CONNECTION_OK) read_conn_.reset();
  return status;
}

absl::Status PostgresHistoryStore::LoadObservations(
    const std::function<void(const Observation&)>& fn) {
  absl::MutexLock lock(&read_mu_);
  NewestPerKey newest(options_.max_observations_per_key, fn, name());
  absl::Status status =
      Query("SELECT kind, key, value, time_unix_nanos FROM observations ORDER BY kind, key, seq",
            [&](const PGresult* r) {
              newest.Add({.kind = static_cast<Observation::Kind>(pg::GetInt32(r, 0, 0)),
                          .key = std::string(pg::GetBytes(r, 0, 1)),
                          .value = pg::GetDouble(r, 0, 2),
                          .time = absl::FromUnixNanos(pg::GetInt64(r, 0, 3))});
            });
  if (!status.ok()) return status;
  newest.Finish();
  return absl::OkStatus();
}

absl::Status PostgresHistoryStore::LoadBlobs(
    const char* sql, const std::function<void(absl::string_view, absl::string_view)>& fn) {
  absl::MutexLock lock(&read_mu_);
  return Query(sql, [&](const PGresult* r) { fn(pg::GetBytes(r, 0, 0), pg::GetBytes(r, 0, 1)); });
}

}  // namespace

absl::StatusOr<std::unique_ptr<HistoryStore>> HistoryStore::OpenPostgres(StoreOptions options) {
  const std::string name = pg::Describe(options.path);
  if (options.max_observations_per_key < 1 || options.max_batch < 1 ||
      options.max_batch_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prewarm store ", name, ": max_observations_per_key and max_batch must be >= 1 and ",
        "max_batch_delay >= 0"));
  }
  absl::StatusOr<pg::ConnPtr> conn = pg::Connect(options.path, kStatementTimeout);
  if (!conn.ok()) return conn.status();
  if (absl::Status migrated = MigratePostgresSchema(conn->get(), options.path); !migrated.ok()) {
    return migrated;
  }
  absl::StatusOr<pg::ConnPtr> read_conn = pg::Connect(options.path, kStatementTimeout);
  if (!read_conn.ok()) return read_conn.status();
  return std::make_unique<PostgresHistoryStore>(std::move(options), *std::move(conn),
                                                *std::move(read_conn));
}

absl::StatusOr<std::unique_ptr<HistoryStore>> HistoryStore::Open(StoreOptions options) {
  if (pg::IsPostgresUri(options.path)) return OpenPostgres(std::move(options));
  return OpenSqlite(std::move(options));
}

}  // namespace prewarm
