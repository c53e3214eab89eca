#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace prewarm {

// One learned observation. `key` identifies its history window; the server builds it, e.g.
// kind=kTaskDuration key="etl\x1fextract" (workflow \x1f task), kind=kColdStart key="svc-a".
// Keys are arbitrary bytes.
struct Observation {
  enum class Kind : int {
    kTaskDuration = 1,
    kServiceDuration = 2,
    kColdStart = 3,
    kWarmLatency = 4,
    kDispatchGap = 5,
    kTaskRun = 6,
    // Which children of a task ran together in one run (predictor/branch_outcomes.h): a bit mask.
    kChildOutcomes = 7,
  };
  Kind kind = Kind::kTaskDuration;
  std::string key;
  double value =
      0;  // Seconds (kTaskRun: 1 ran, 0 skipped; kChildOutcomes: a mask). NaN round-trips.
  absl::Time time;  // When observed; stored with nanosecond precision.
};

struct StoreOptions {
  // An SQLite file, or a PostgreSQL URI ("postgresql://user@host:5432/db?sslmode=require"; the
  // password may come from PGPASSWORD or ~/.pgpass instead). See HistoryStore::Open.
  std::string path = "prewarm.db";
  // Older rows of a (kind, key) are pruned so that at most this many remain. Must be >= 1.
  int max_observations_per_key = 128;
  // Writes per transaction. Must be >= 1.
  int max_batch = 4096;
  // How long the writer waits to fill a batch once it has one write. 0: commit at once. Batches
  // still form under load, while the previous commit runs, so a wait only saves commits under
  // light load, at the cost of that much latency per write. Measured on both databases, waiting
  // 2 ms cost a third of the throughput and 2 ms of every sequential call's latency
  // (docs/BENCHMARKS.md, "The group commit's wait").
  absl::Duration max_batch_delay = absl::ZeroDuration();
  // PRAGMA synchronous=FULL: every commit survives power loss. NORMAL (WAL): commits survive a
  // process crash; the last ones may be lost on power loss. See docs/store.md.
  bool synchronous_full = false;
  // An existing file at `path` that holds no store (0 bytes, or an SQLite database without a
  // single table) is refused with DATA_LOSS, since a store was expected there (a truncated or
  // replaced file would otherwise start as an empty store and forget every service and active
  // run). True: initialise a store in it, with a warning in the log.
  bool accept_empty = false;
  // PostgreSQL only: the fencing epoch this store writes at. Every write transaction first checks
  // that the database's epoch (prewarm_fence) still equals it, so that a replica that lost
  // leadership (and whose successor bumped the epoch, see PostgresLeader) cannot write: its
  // writes fail with UNAVAILABLE "fenced: ...". 0 is the epoch of a database no leader has
  // claimed (a single writer without leader election, e.g. tests).
  int64_t fencing_epoch = 0;
  // Runs on the writer thread after each transaction (group of writes) with whether it committed
  // and how long the round trip took: the store latency metric. May be empty.
  std::function<void(bool ok, absl::Duration latency)> on_commit;
};

struct StoreStats {
  int64_t commits = 0;       // Transactions committed.
  int64_t writes = 0;        // Writes committed.
  int64_t write_errors = 0;  // Writes lost: failed transactions and writes after Close.
  int64_t queued = 0;        // Writes accepted but not yet committed or failed.
};

// Runs once per write: OK after the transaction holding the write committed, otherwise the error
// (the write is lost). For both stores it runs on the writer thread, which it delays: keep it
// short, and never call Flush() or Close() from it (that would wait for itself).
using CommitCallback = std::function<void(absl::Status)>;

// Durable state of the server: learned observations (bounded per key), registered services and
// snapshots of active runs, so that a restarted server resumes where it stopped. Writes are
// asynchronous and acknowledged through a callback once durable, so that a caller can acknowledge
// its own client only then. Behind an interface so that a shared store (PostgreSQL) can serve
// several replicas later. Implementations are thread-safe.
//
// Example:
//   absl::StatusOr<std::unique_ptr<HistoryStore>> store =
//       HistoryStore::OpenSqlite({.path = "/var/lib/prewarm/prewarm.db"});
//   if (!store.ok()) return store.status();
//   absl::Status loaded = (*store)->LoadObservations([&](const Observation& o) { ... });
//   ...
//   // Acknowledge a ReportTiming only once its observation is durable.
//   (*store)->AppendObservation(std::move(obs), [reactor](absl::Status s) { reactor->Done(s); });
class HistoryStore {
 public:
  // Opens (creating if needed) the SQLite file `options.path` in WAL mode, migrates its schema and
  // starts the writer thread. An existing file is checked first, before anything writes to it:
  // its WAL must not hold committed transactions after a damaged frame (SQLite would drop them
  // silently), `PRAGMA quick_check` must pass, and it must be a store (see accept_empty).
  // Errors name the path: INVALID_ARGUMENT for bad options, FAILED_PRECONDITION for a schema
  // newer than this binary or an SQLite file that is not a prewarm store, DATA_LOSS for a file
  // that is not an SQLite database, is damaged, holds no store, or whose WAL lost commits (or
  // exists without its database), UNAVAILABLE when the file cannot be opened. The store must be
  // the file's only writer (one prewarmd per file); other processes may read it.
  static absl::StatusOr<std::unique_ptr<HistoryStore>> OpenSqlite(StoreOptions options);

  // Connects to the PostgreSQL database `options.path` (a postgres:// or postgresql:// URI),
  // migrates its schema (once, under an advisory lock, when several replicas start together) and
  // starts the writer thread. Each batch of writes is one transaction sent as one pipeline (one
  // round trip) that first checks options.fencing_epoch. A failed batch reconnects for the next
  // one. Errors name the database without its password: UNAVAILABLE when it cannot be reached
  // (and for fenced writes), FAILED_PRECONDITION for a schema newer than this binary,
  // INVALID_ARGUMENT for bad options. synchronous_full and accept_empty do not apply: durability
  // is the server's synchronous_commit (and its replicas').
  static absl::StatusOr<std::unique_ptr<HistoryStore>> OpenPostgres(StoreOptions options);

  // OpenPostgres for a postgres:// or postgresql:// URI, OpenSqlite for anything else (a path).
  static absl::StatusOr<std::unique_ptr<HistoryStore>> Open(StoreOptions options);

  // Flushes and closes, like Close().
  virtual ~HistoryStore() = default;

  // Asynchronous durable writes, committed in the order they were called (per calling thread) and
  // group-committed by the implementation. `done` may be empty; otherwise it runs exactly once:
  // OK when the write is durable, else the error (the write is lost and counted in
  // write_errors). A write that is refused outright runs `done` at once, on the caller's thread:
  // FAILED_PRECONDITION after Close(), INVALID_ARGUMENT when the key and bytes exceed 256 MiB.
  virtual void AppendObservation(Observation obs, CommitCallback done) = 0;
  // Deletes every observation of (kind, key): the key was evicted from the history, so that a
  // restart does not load it again.
  virtual void DeleteObservations(Observation::Kind kind, std::string key, CommitCallback done) = 0;
  // Upsert of a service's registration; `serialized` is opaque (a serialized proto).
  virtual void PutService(std::string name, std::string serialized, CommitCallback done) = 0;
  virtual void DeleteService(std::string name, CommitCallback done) = 0;
  // Upsert of an active run's snapshot (its DAG, timings and plan).
  virtual void PutRun(std::string run_id, std::string serialized, CommitCallback done) = 0;
  // Deletes the run's snapshot and its events.
  virtual void DeleteRun(std::string run_id, CommitCallback done) = 0;
  // Appends one event to an active run's log (opaque bytes), so that recording an event costs
  // O(event) rather than a whole new snapshot. Replayed after the snapshot at start-up.
  virtual void AppendRunEvent(std::string run_id, std::string serialized, CommitCallback done) = 0;

  // Reading, meant for start-up. Each call sees one consistent snapshot of committed writes (call
  // Flush() first to include writes still queued). `fn` may write, but must not call the store's
  // Load methods or Close().
  //
  // Observations grouped by (kind, key), each group oldest first and holding at most the newest
  // max_observations_per_key, so that replaying them into bounded windows reproduces them.
  virtual absl::Status LoadObservations(const std::function<void(const Observation&)>& fn) = 0;
  // Services in name order.
  virtual absl::Status LoadServices(
      const std::function<void(absl::string_view name, absl::string_view serialized)>& fn) = 0;
  // Runs in run id order.
  virtual absl::Status LoadRuns(
      const std::function<void(absl::string_view run_id, absl::string_view serialized)>& fn) = 0;
  // Run events, each run's in the order appended. Runs may interleave (both databases pass every
  // event in the order appended).
  virtual absl::Status LoadRunEvents(
      const std::function<void(absl::string_view run_id, absl::string_view serialized)>& fn) = 0;

  // Blocks until every write queued before the call is committed or failed and its callback has
  // run; returns the first write error since the previous Flush() (or Close()).
  virtual absl::Status Flush() = 0;

  // Flushes, stops the writer, closes the database and returns what Flush() would, or the error
  // from closing. Idempotent: later calls return OK. Loads after Close() return
  // FAILED_PRECONDITION.
  virtual absl::Status Close() = 0;

  virtual StoreStats stats() const = 0;
};

}  // namespace prewarm
