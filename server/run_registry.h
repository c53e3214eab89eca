#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "predictor/clock.h"
#include "predictor/dag.h"
#include "predictor/history.h"
#include "predictor/planner.h"
#include "prewarm/store/v1/store.pb.h"
#include "prewarm/v1/prewarm.pb.h"
#include "server/delegated_warmups.h"
#include "server/history_store.h"
#include "server/http_warmer.h"
#include "server/metrics.h"
#include "server/plan_proto.h"
#include "server/run_journal.h"
#include "server/run_state.h"
#include "server/service_registry.h"
#include "server/timer_queue.h"
#include "server/warmup_dispatcher.h"

namespace prewarm {

// Limits and defaults of the run registry; all configurable.
struct RunRegistryOptions {
  DagLimits dag;
  int max_active_runs = 10'000;
  // Finished or cancelled runs whose final plans GetPlan can still return.
  int max_retired_runs = 1'000;
  // A run with no event for this long is retired as expired.
  absl::Duration run_idle_timeout = absl::Hours(24);
  // How far in the future a run may start, and how far ahead of the server's clock an event may
  // be stamped.
  absl::Duration max_future_start = absl::Hours(24 * 7);
  absl::Duration max_clock_skew = absl::Minutes(5);
  // A delegated warm-up not reported within this is counted as failed (its watcher is gone), so
  // unreported warm-ups cannot pile up. Managed ones always report (the warmer times out).
  absl::Duration warmup_report_timeout = absl::Minutes(10);
  // planner.refresh_warmups is derived from max_warmup_refreshes.
  PlannerOptions planner;
  HistoryOptions history;
  int warmup_attempts = 3;
  // A ready warm-up whose task has not started is sent again just before the service's keep-alive
  // would reclaim the container, at most this many times (0: never, and plans then obey the
  // keep-alive cliff). Bounds what a stalled run costs: about this many keep-alives of idle.
  int max_warmup_refreshes = 60;
  // Hit/miss counters (GetServiceStats) are kept for at most (registered services + this many)
  // services, since task reports may name any service; past it the least recently updated
  // counters of an unregistered service go. Registered services' counters are never evicted.
  int max_unregistered_service_counters = 10'000;
  // Task events a run may store (and replay at every restart); past it ReportTiming answers
  // RESOURCE_EXHAUSTED. Repeats of an event already applied are acknowledged without counting.
  int max_events_per_run = 100'000;
};

// Everything the registry works with. Not owned; all must outlive the registry. The store may
// be closed before or after the registry is destroyed: the destructor waits for the store to run
// every callback of the registry's writes (see ~RunRegistry).
struct RunRegistryDeps {
  Clock* clock;
  ServiceRegistry* services;
  TimerQueue* timers;
  HttpWarmer* warmer;
  DelegatedWarmups* delegated;
  HistoryStore* store;
  Metrics* metrics;
};

// The heart of prewarmd: active runs with their planners, the learned history, and the warm-up
// timers that follow the plans. Every task event is an observation (made durable before the
// caller is answered) and a re-plan of the task's descendants; warm-ups whose deadlines move are
// rescheduled, those whose deadlines passed fire at once, those of skipped tasks are cancelled.
// Finished runs are retired to a bounded list of final plans.
//
// The registry orchestrates; each job has its own part: run_request.h checks requests,
// event_learning.h says what an event teaches, warmup_dispatcher.h runs the warm-up timers and the
// warm-ups in flight, run_journal.h stores and restores runs and history, plan_proto.h shows plans
// and stats, run_state.h holds a run's state.
//
// One mutex guards runs, history and the dispatcher: every operation is short (no I/O under the
// lock; store writes and HTTP warm-ups are asynchronous). Thread-safe.
//
// Lock order: mu_ is held while calling into the ServiceRegistry, TimerQueue, Metrics, the
// HistoryStore's queue, the RunJournal and GuardedTimers, so their locks come after mu_, and none
// of them calls back into the registry while holding its own (timer and commit callbacks, which
// take mu_, run with no lock held).
class RunRegistry {
 public:
  using PlanCallback = std::function<void(absl::StatusOr<v1::RunPlan>)>;

  RunRegistry(RunRegistryOptions options, RunRegistryDeps deps);
  // Waits for a timer callback of the registry that is running (TimerQueue::Cancel cannot stop
  // one), makes those still queued do nothing, then waits until the store has run the commit
  // callback of every write the registry queued (they use the registry), so that destroying the
  // registry before stopping the timers or closing the store is safe: a store's writer always
  // completes what it accepted, committed or failed. Warm-up results still call in: shut the
  // HttpWarmer down first.
  // REQUIRES: not called from a store commit callback or a timer callback (it would wait for
  // itself).
  ~RunRegistry();

  // Loads services, history and active runs from the store and schedules the runs' pending
  // warm-ups (those whose deadline passed while the server was down fire at once).
  absl::Status Restore() ABSL_LOCKS_EXCLUDED(mu_);

  // RegisterService: validated by the ServiceRegistry, durable before `done`.
  void RegisterService(const v1::Service& service,
                       std::function<void(absl::StatusOr<v1::RegisterServiceResponse>)> done);

  // Prewarm: validates the request (INVALID_ARGUMENT naming the field or task, ALREADY_EXISTS for
  // an active run id, RESOURCE_EXHAUSTED past the limits), plans, schedules the warm-ups and
  // persists the run; `done` gets the plan once durable. A dry run only plans.
  void Prewarm(const v1::PrewarmRequest& request, PlanCallback done) ABSL_LOCKS_EXCLUDED(mu_);

  // ReportTiming: NOT_FOUND for an unknown run or task, INVALID_ARGUMENT for bad fields,
  // FAILED_PRECONDITION for an event that contradicts the task's state, RESOURCE_EXHAUSTED once
  // the run stored max_events_per_run events. `done` runs once the observation and the run's new
  // state are durable. The answer holds the re-planned tasks' plans unless the request asks for
  // REPORT_TIMING_VIEW_SUMMARY; the event is applied and stored the same in every view.
  //
  // Delivery may be at least once: a repeat of what the task already did (STARTED while it runs,
  // SERVICE_INVOKED after SERVICE_INVOKED, FINISHED / FAILED / SKIPPED of a task that ended so,
  // also of a run that ended with it) is answered OK with no replanned tasks and changes, stores
  // and re-plans nothing; the first report wins. A repeat that carries news (the call's coldness
  // before the task's outcome is known, a first cold start) is applied.
  void ReportTiming(const v1::ReportTimingRequest& request,
                    std::function<void(absl::StatusOr<v1::ReportTimingResponse>)> done)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The same, answering into `*response` (for the gRPC adapter, whose response may live on the
  // call's arena: building it there saves a copy and a heap allocation per field). `done` gets
  // OK once `*response` is complete and durable; on an error `*response` is left empty.
  // REQUIRES: `*response` stays alive, and untouched by the caller, until `done` has run.
  void ReportTiming(const v1::ReportTimingRequest& request, v1::ReportTimingResponse* response,
                    std::function<void(absl::Status)> done) ABSL_LOCKS_EXCLUDED(mu_);

  absl::StatusOr<v1::RunPlan> GetPlan(absl::string_view run_id) const ABSL_LOCKS_EXCLUDED(mu_);
  // Cancels the run's pending warm-ups and retires it. Returns at once how many warm-ups were
  // cancelled (or why not); `committed`, when given, runs with the same count once the retirement
  // is in the store, or with the store's error: acknowledge a cancel there, not before (a kill
  // before the commit would bring the run back). Never called under mu_.
  absl::StatusOr<int> CancelRun(absl::string_view run_id,
                                std::function<void(absl::StatusOr<int>)> committed = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The result of a delegated warm-up (NOT_FOUND for an unknown or already reported id).
  absl::Status ReportWarmup(const v1::ReportWarmupRequest& request) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::GetServiceStatsResponse> GetServiceStats(absl::string_view service) const
      ABSL_LOCKS_EXCLUDED(mu_);

  int active_runs() const ABSL_LOCKS_EXCLUDED(mu_);
  int pending_warmups() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct ServiceCounters : ServiceCounts {
    std::list<std::string>::iterator recency;  // In counters_recency_.
  };

  // Prewarm's work under mu_: an error or a dry run's plan to answer at once, or (`persisted` set)
  // the run started, whose answer `persisted` gives `done` once durable (`done` is then moved
  // from and the returned plan is empty). Call `persisted` after releasing mu_.
  absl::StatusOr<v1::RunPlan> StartRun(const v1::PrewarmRequest& request, PlanCallback& done,
                                       std::function<void()>* persisted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ReportTiming's work under mu_, answering as StartRun does: fills `*response` and returns an
  // error or OK to answer at once, or (`persisted` set) OK, and `persisted` gives `done` the
  // outcome once durable (`done` is then moved from).
  absl::Status ApplyReport(const v1::ReportTimingRequest& request,
                           v1::ReportTimingResponse* response,
                           std::function<void(absl::Status)>& done,
                           std::function<void()>* persisted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Builds a run from a request (checked by ParseRunRequest), planned as of `now`.
  // `stored`: the model of a restored run (else one is taken from the history).
  absl::StatusOr<std::unique_ptr<Run>> BuildRun(const v1::PrewarmRequest& request, absl::Time now,
                                                const store::v1::RunModel* stored = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies one event to a run; appends the observations it teaches to `learned` (null: a
  // replay at Restore, which learns, counts and schedules nothing).
  // `replanned` (optional) receives the tasks whose plans were recomputed.
  absl::Status ApplyEvent(Run& run, const v1::ReportTimingRequest& event, absl::Time now,
                          std::vector<Observation>* learned, std::vector<int>* replanned = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Timer hooks of the WarmupDispatcher.
  void Fire(const std::string& run_id, int task, uint64_t generation, absl::Duration lateness)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Refresh(const std::string& run_id, int task, uint64_t warmup_id) ABSL_LOCKS_EXCLUDED(mu_);
  // The run's deferred tasks are due to be decided (lazy planning; see WarmupDispatcher).
  void PlanDeferred(const std::string& run_id, uint64_t generation) ABSL_LOCKS_EXCLUDED(mu_);
  // Counts the warm-ups that `tasks`' new plans skip (already warm, unlikely).
  void CountSkips(const Run& run, const std::vector<int>& tasks) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends a warm-up built under mu_. REQUIRES: mu_ not held.
  void Send(OutgoingWarmup warmup) ABSL_LOCKS_EXCLUDED(mu_);
  // The task's call reached its service: takes a container, and warms again for the task whose
  // held container the call took.
  void AcquireContainer(Run& run, int task, absl::Time at) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fires at once a new warm-up for a pending task (by TaskKey) that lost its warm container.
  void Rewarm(absl::string_view task_key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `shut_down`: failed because the warmer is shutting down with the process; not recorded in
  // the run's log, so that a restart takes the warm-up for answered, as after a kill.
  absl::Status OnWarmupResult(uint64_t warmup_id, bool success, absl::Duration latency,
                              std::optional<bool> cold, bool shut_down = false)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Decides (once) whether the task found its service warm, and counts it.
  void SettleOutcome(Run& run, int task, std::optional<bool> reported_cold, absl::Time at)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Learn(Observation observation, std::vector<Observation>* learned)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The service's counters, made the most recently used; evicts unregistered services' counters
  // past max_unregistered_service_counters.
  ServiceCounters& CountersOf(absl::string_view service) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Retire(const std::string& run_id, absl::string_view outcome)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireIdleRuns() ABSL_LOCKS_EXCLUDED(mu_);
  void UpdateGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues `observations` and `run_write` for the store (RunJournal::Write), with the history
  // keys evicted since the last call. Under mu_, so that a run's writes reach the store in the
  // order of its updates (a snapshot queued after the run's deletion would bring a retired run
  // back at the next start); call the returned function after releasing mu_, so that `done`
  // never runs under it.
  [[nodiscard]] std::function<void()> Persist(std::vector<Observation> observations,
                                              RunWrite run_write,
                                              std::function<void(absl::Status)> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const RunRegistryOptions options_;
  const RunRegistryDeps deps_;
  // Thread-safe parts (their locks come after mu_).
  RunJournal journal_;
  GuardedTimers timers_;
  mutable absl::Mutex mu_;
  WarmupDispatcher warmups_ ABSL_GUARDED_BY(mu_);
  History history_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<Run>> runs_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, v1::RunPlan> retired_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> retired_order_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, ServiceCounters> counters_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> counters_recency_ ABSL_GUARDED_BY(mu_);  // Least recent first.
  TimerQueue::TimerId expiry_timer_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace prewarm
