#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "predictor/clock.h"
#include "prewarm/v1/prewarm.pb.h"
#include "server/delegated_warmups.h"
#include "server/history_store.h"
#include "server/http_warmer.h"
#include "server/metrics.h"
#include "server/run_journal.h"
#include "server/run_state.h"
#include "server/service_registry.h"
#include "server/timer_queue.h"

namespace prewarm {

// Schedules callbacks on a TimerQueue so that none runs once Close() has returned: the queue may
// keep (and even start) a callback after its owner is gone, and TimerQueue::Cancel cannot stop
// one that is running. Thread-safe; its lock is taken last and never held while a callback runs.
class GuardedTimers {
 public:
  // `timers` is not owned and must outlive this object's callbacks' scheduling.
  explicit GuardedTimers(TimerQueue* timers) : timers_(timers) {}

  TimerQueue::TimerId Schedule(absl::Time deadline, TimerQueue::Callback fn)
      ABSL_LOCKS_EXCLUDED(state_->mu);
  bool Cancel(TimerQueue::TimerId id) { return timers_->Cancel(id); }
  // Waits for the callbacks that are running and makes those still queued do nothing.
  // REQUIRES: not called from a callback (it would wait for itself), nor holding a lock a callback
  // takes.
  void Close() ABSL_LOCKS_EXCLUDED(state_->mu);

 private:
  // Shared with the callbacks, which the TimerQueue may keep after this object is gone.
  struct State {
    absl::Mutex mu;
    int running ABSL_GUARDED_BY(mu) = 0;
    bool closed ABSL_GUARDED_BY(mu) = false;
  };
  TimerQueue* const timers_;
  const std::shared_ptr<State> state_ = std::make_shared<State>();
};

// A warm-up that was sent and whose result has not come back.
struct InFlight {
  std::string run_id;
  int task;
  std::string service;
  absl::Time fired_at;
  bool refresh = false;  // a refresh of a ready warm-up, not its first firing
  // A first firing sent while another first firing of the service was in flight, to a service
  // whose containers serve more than one request at once: it may have joined that container's
  // start (see WarmupLesson).
  bool joined_start = false;
};

// A warm-up request ready to leave, built under the registry's lock and sent after releasing it.
struct OutgoingWarmup {
  v1::Service service;
  WarmupRequest http;                    // managed services
  v1::WatchWarmupsResponse instruction;  // delegated services
};

// Sends `warmup`: a managed one through `warmer`, a delegated one to the WatchWarmups watchers
// (failed at once when there is none). `result(id, success, latency, shut_down)` gets the outcome
// (`shut_down`: the warmer is going down with the process). Call with no lock held: `result` may
// run on this thread.
void SendWarmup(OutgoingWarmup warmup, HttpWarmer& warmer, DelegatedWarmups& delegated,
                const std::function<void(uint64_t id, bool success, absl::Duration latency,
                                         bool shut_down)>& result);

// The warm-up lifecycle of the active runs: the timers that follow each task's planned warm-up
// time, firing (or claiming a free warm container instead), refreshing a ready warm-up before the
// keep-alive reclaims its container, warming again a task whose container another call took, and
// the warm-ups in flight until their results come back.
//
// Not thread-safe: the registry owns it and calls it only under its mutex (RunRegistry::mu_),
// which therefore guards every member. Timer callbacks go through `hooks`, which take that mutex
// and call back in; they run with no lock held.
class WarmupDispatcher {
 public:
  struct Options {
    int warmup_attempts = 3;
    int max_warmup_refreshes = 60;
  };
  // Not owned; all must outlive the dispatcher.
  struct Deps {
    Clock* clock;
    ServiceRegistry* services;
    GuardedTimers* timers;
    Metrics* metrics;
    RunJournal* journal;
  };
  // Called by the timers (with no lock held): task `task` of run `run_id` is due to be warmed
  // (`generation` tells a stale timer), or its ready warm-up `warmup_id` is due for a refresh.
  struct Hooks {
    std::function<void(const std::string& run_id, int task, uint64_t generation,
                       absl::Duration lateness)>
        due;
    std::function<void(const std::string& run_id, int task, uint64_t warmup_id)> refresh_due;
    // The run's deferred tasks are due to be decided (PlanDeferred).
    std::function<void(const std::string& run_id, uint64_t generation)> deferred_due;
  };

  WarmupDispatcher(Options options, Deps deps, Hooks hooks);

  WarmupDispatcher(const WarmupDispatcher&) = delete;
  WarmupDispatcher& operator=(const WarmupDispatcher&) = delete;

  // Makes the timers of `tasks` follow their plans: schedules, moves or cancels their pending
  // warm-ups (a passed deadline fires at once). Those already fired stay as they are. Also sets
  // the run's timer for its deferred tasks (RunPlanner::NextDeferredPlan): call after every plan.
  void Sync(Run& run, const std::vector<int>& tasks);
  // The run's deferred-task timer with `generation` is due: decides the deferred tasks due by now
  // (RunPlanner::PlanDeferred) and syncs their timers. Returns the tasks re-planned (none for a
  // stale timer).
  std::vector<int> PlanDeferred(Run& run, uint64_t generation);
  // Cancels the task's pending warm-up, if it has one.
  void Cancel(TaskRuntime& task);
  // Cancels every timer of the run (pending warm-ups, refreshes and its deferred-task timer),
  // counting none: for a run whose registry goes away.
  void CancelTimers(Run& run);
  // Cancels the run's deferred-task timer (a retired run decides nothing more).
  void CancelDeferred(Run& run);

  // What Fire did with a due warm-up.
  enum class FireResult {
    kStale,         // the timer was superseded (moved, cancelled, run gone): nothing happened
    kUnregistered,  // the service was unregistered since the plan: nothing to send
    kClaimed,       // a free warm container is held for the task instead
    kFired,         // `out` is to be sent (SendWarmup) once the registry's lock is released
  };
  // The timer of task v's warm-up with `generation` is due: fires it, unless another run left a
  // container free that stays warm until the task starts (then holds that one for the task).
  FireResult Fire(Run& run, int v, uint64_t generation, absl::Duration lateness,
                  OutgoingWarmup* out);
  // Task v's ready warm-up `warmup_id` is due for a refresh: true and `out` to send when it
  // still is (ready, task pending, service registered).
  bool Refresh(Run& run, int v, uint64_t warmup_id, OutgoingWarmup* out);
  // Task v (pending) lost the container its warm-up held: plans it again as cold, so that a
  // passed deadline fires at once.
  void Rewarm(Run& run, int v);

  // What a warm-up's result changed, for the registry to count and learn.
  struct Answer {
    std::optional<Observation> lesson;  // What it teaches (first firings that succeeded).
    bool failed = false;                // A first firing that failed.
  };
  // Records the result of warm-up `flight` (already taken from the in-flight table with
  // TakeInFlight) in the container pools, its run (`run`: null when the run is gone or reused
  // the id), its log and the metrics.
  Answer Answered(Run* run, const InFlight& flight, uint64_t warmup_id, bool success,
                  absl::Duration latency, std::optional<bool> cold, bool shut_down);
  // Removes warm-up `id` from the in-flight table; nullopt when it is not there (unknown or
  // already answered).
  std::optional<InFlight> TakeInFlight(uint64_t id);
  // Warm-ups in flight for longer than `timeout` at `now`.
  std::vector<uint64_t> Overdue(absl::Time now, absl::Duration timeout) const;

  // Schedules the next refresh of task v's ready warm-up, if the task is pending and refreshes
  // are left; `answered`: when the service last answered a warm-up for it.
  void ScheduleRefresh(Run& run, int v, absl::Time answered);
  void CancelRefresh(TaskRuntime& task);
  // A new warm-up id (ids are never reused while the process runs).
  uint64_t NextId() { return next_warmup_id_++; }
  // Warm-ups scheduled and not yet fired, over all runs.
  int pending() const { return pending_warmups_; }

 private:
  // Registers warm-up `id` of task v as in flight and builds its request.
  OutgoingWarmup Prepare(const Run& run, int v, const v1::Service& service, uint64_t id,
                         bool refresh);

  const Options options_;
  const Deps deps_;
  const Hooks hooks_;
  absl::flat_hash_map<uint64_t, InFlight> in_flight_;
  // First firings in flight per service (refreshes go to warm containers and start nothing).
  absl::flat_hash_map<std::string, int> starting_;
  uint64_t next_warmup_id_ = 1;
  // Generations of deferred-task timers, unique over all runs (a run id may be reused).
  uint64_t deferred_generations_ = 0;
  int pending_warmups_ = 0;
};

}  // namespace prewarm
