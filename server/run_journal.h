#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "predictor/clock.h"
#include "predictor/history.h"
#include "predictor/planner.h"
#include "prewarm/store/v1/store.pb.h"
#include "server/history_store.h"
#include "server/metrics.h"
#include "server/run_state.h"
#include "server/service_registry.h"

namespace prewarm {

// What a change of a run writes to the store.
struct RunWrite {
  enum class Kind { kNone, kSnapshot, kEvent, kDelete };
  Kind kind = Kind::kNone;
  std::string run_id;
  std::string bytes;  // kSnapshot: a store.v1.RunSnapshot; kEvent: a store.v1.RunEvent.
};

// A change of a service's container pool, collected while replaying run logs at a restart and
// applied to the pools in the order the server first made them (ApplyPoolOps).
struct PoolOp {
  absl::Time applied;  // Sort key: when the server made the change.
  std::string run_id;
  int64_t seq;  // Tie-break: the record's place in its run's log.
  enum class Kind { kAcquire, kRelease, kForget, kAnswered, kClaim } kind;
  std::string service;
  std::string task_key;
  absl::Time at;
  bool cold = false;          // kAnswered
  bool forget_after = false;  // kAnswered: the task no longer waited for it
  absl::Time needed;          // kClaim
};

// The active runs and history as the store holds them at a start (RunJournal::LoadRuns).
struct StoredRuns {
  absl::flat_hash_map<std::string, store::v1::RunSnapshot> snapshots;
  // Each run's log, in the order it was written.
  absl::flat_hash_map<std::string, std::vector<store::v1::RunEvent>> logs;
  // Runs to delete from the store: unreadable snapshots, and logs without a snapshot (of runs
  // retired while their last events were queued).
  std::vector<std::string> unreadable;
};

// The run registry's durable side: the snapshot and event log of every active run (see
// store.proto), the history's observations, and the restore of both at a start. Every write is
// queued on the HistoryStore with a tracked commit callback, so that the owner can wait until the
// store ran them all (WaitForCallbacks) before it goes.
//
// Thread-safe; its only lock guards the count of outstanding callbacks and is taken last (the
// registry calls in holding its own mutex, so that writes of a run reach the store in the order
// of the run's changes).
class RunJournal {
 public:
  // Not owned; all must outlive the journal and its queued callbacks.
  RunJournal(HistoryStore* store, Metrics* metrics, Clock* clock);

  RunJournal(const RunJournal&) = delete;
  RunJournal& operator=(const RunJournal&) = delete;

  // A commit callback that counts as outstanding from now until `fn` (may be empty) has returned.
  CommitCallback Tracked(CommitCallback fn) ABSL_LOCKS_EXCLUDED(callbacks_->mu);
  // Blocks until every tracked callback has returned.
  // REQUIRES: not called from a tracked callback (it would wait for itself).
  void WaitForCallbacks() ABSL_LOCKS_EXCLUDED(callbacks_->mu);

  // Queues `evicted` history keys for deletion (first), then `observations` and `run_write`.
  // `done` runs once all are durable (UNAVAILABLE naming the store's first error otherwise) and
  // the returned function has been called: call it after releasing the lock under which this was
  // called, so that `done` never runs under it. `history_keys`: the history's key count now.
  [[nodiscard]] std::function<void()> Write(
      std::vector<std::pair<HistoryWindow, std::string>> evicted, size_t history_keys,
      std::vector<Observation> observations, RunWrite run_write,
      std::function<void(absl::Status)> done);

  // Appends to the run's log that its due deferred tasks were decided as of `at` (no one waits
  // for it): a restart replays that decision at the same time.
  void LogDeferredPlan(const Run& run, absl::Time at);
  // Appends a record of what happened to task `v`'s warm-up to the run's log (no one waits for
  // it). `warm_until`: what the run's planner was told (SetTaskWarmUntil), InfinitePast for
  // nothing; `needed`: when a claimed container is needed (KIND_CLAIMED).
  void LogWarmup(const Run& run, int v, store::v1::WarmupRecord::Kind kind, absl::Time at,
                 absl::Time warm_until, bool cold = false,
                 absl::Time needed = absl::InfinitePast());

  // The snapshot Prewarm stores for a new run: its request, when it was accepted, and its model.
  static std::string Snapshot(const Run& run);

  // Loads every observation into `history` so that eviction order survives the restart, then
  // evicts down to `max_keys` (those leave the store too). Returns how many observations it read.
  absl::StatusOr<int64_t> LoadHistory(History& history, int max_keys);
  // Reads the stored runs and their logs.
  absl::StatusOr<StoredRuns> LoadRuns();

 private:
  // Counts the store callbacks that have not finished yet. Shared with the callbacks, so that the
  // last one can still unlock it while the owner of the journal returns.
  struct Callbacks {
    absl::Mutex mu;
    int64_t outstanding ABSL_GUARDED_BY(mu) = 0;
  };

  HistoryStore* const store_;
  Metrics* const metrics_;
  Clock* const clock_;
  const std::shared_ptr<Callbacks> callbacks_ = std::make_shared<Callbacks>();
};

// The run's model as stored: distributions once each (tasks share their services' cold starts).
store::v1::RunModel ModelToProto(const RunModel& model);
// The inverse of ModelToProto; nullopt when `stored` does not fit a DAG of `tasks` tasks.
std::optional<RunModel> ModelFromProto(const store::v1::RunModel& stored, int tasks);

// Applies record `seq` of a restored run's log (see store.proto RunEvent) to `run`: a warm-up
// record here, a task event through `apply_event` (the registry's ApplyEvent in replay mode;
// false when the run refuses the event), counting it and its outcome as applied before. Appends
// the container pool changes it implies to `pool_ops`.
void ReplayRecord(
    Run& run, const store::v1::RunEvent& record, int64_t seq, absl::Time now,
    const std::function<bool(Run&, const v1::ReportTimingRequest&, absl::Time as_of)>& apply_event,
    std::vector<PoolOp>* pool_ops);

// Applies `ops` to the container pools, in the order the server first made them. (Containers only
// retired runs used are not known.)
void ApplyPoolOps(std::vector<PoolOp> ops, ServiceRegistry& services);

}  // namespace prewarm
