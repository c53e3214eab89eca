#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "predictor/dag.h"
#include "predictor/planner.h"
#include "predictor/random.h"
#include "predictor/run_model.h"
#include "prewarm/store/v1/store.pb.h"
#include "prewarm/v1/prewarm.pb.h"
#include "server/timer_queue.h"

namespace prewarm {

// The state of one active workflow run, shared by the parts of the run registry: the request
// checking (run_request.h) builds it, the registry orchestrates it, what an event teaches is read
// from it (event_learning.h), the warm-up dispatcher schedules its warm-ups
// (warmup_dispatcher.h), the journal stores and replays it (run_journal.h), and plan_proto.h
// shows it. Plain data: not thread-safe; RunRegistry guards every Run with its mutex.

// What happened to one task of a run beyond its planner's view: its warm-up and its outcome.
struct TaskRuntime {
  v1::WarmupState warmup = v1::WARMUP_STATE_NONE;
  TimerQueue::TimerId timer = 0;
  absl::Time scheduled_for = absl::InfiniteFuture();
  absl::Time fired_at = absl::InfinitePast();
  absl::Time ready_at = absl::InfinitePast();
  uint64_t warmup_id = 0;
  uint64_t generation = 0;  // Bumped at every (re)schedule: a stale timer finds a mismatch.
  // While READY and the task pending: the timer of the next refresh (0: none), and how many
  // refreshes were sent.
  TimerQueue::TimerId refresh_timer = 0;
  int refreshes = 0;
  // When the service last answered a warm-up (or refresh) for the task.
  absl::Time answered = absl::InfinitePast();
  v1::TaskOutcome outcome = v1::TASK_OUTCOME_UNSPECIFIED;
  // The task's last applied event (what a repeat is compared with).
  v1::TaskEventType last_event = v1::TASK_EVENT_TYPE_UNSPECIFIED;
  bool outcome_counted = false;
  absl::Time actual_start = absl::InfinitePast();
  // Whether a warm container took the task's (first) call, as far as the container pool
  // knows: what decides hit or miss when nobody reports whether the call was cold.
  std::optional<bool> found_warm;
  // The cold start a task event reported for this task's call (learned once; its FINISHED
  // subtracts it to learn the warm duration).
  std::optional<absl::Duration> reported_cold_start;
};

// An active run: its request, DAG, planner and the runtime of every task (indexed as the DAG).
struct Run {
  v1::PrewarmRequest request;  // as accepted, start_time and delay_cost_ratio filled in
  std::shared_ptr<const Dag> dag;
  std::unique_ptr<RunPlanner> planner;
  std::vector<TaskRuntime> tasks;
  absl::Time plan_time;
  absl::Time last_event;
  int64_t replans = 0;
  int64_t events = 0;  // Task events in the run's stored log (max_events_per_run).
  // The timer that decides the planner's deferred tasks (lazy planning), set for
  // planner->NextDeferredPlan() (InfiniteFuture: none); `deferred_generation` tells a stale one.
  TimerQueue::TimerId deferred_timer = 0;
  absl::Time deferred_at = absl::InfiniteFuture();
  uint64_t deferred_generation = 0;
  absl::Time submitted;  // When Prewarm accepted it: its first plan is as of this time.
  // The model the run was planned with, kept only until its snapshot is written.
  store::v1::RunModel model;
};

// The task's name in the service registry's container pools: "run_id#index".
inline std::string TaskKey(const Run& run, int task) {
  return absl::StrCat(run.request.run_id(), "#", task);
}

// A run of `request` (as accepted) over `dag`, planned with `model` from `start` as of `now`
// (the planner's samples are seeded by the run id), its tasks' runtimes fresh. `shown`: its plans
// are about to be shown (a Prewarm answer), so their start quantiles are found at once.
inline std::unique_ptr<Run> NewPlannedRun(v1::PrewarmRequest request,
                                          std::shared_ptr<const Dag> dag, RunModel model,
                                          absl::Time start, const PlannerOptions& options,
                                          absl::Time now, bool shown = false) {
  auto run = std::make_unique<Run>();
  run->request = std::move(request);
  run->dag = std::move(dag);
  run->planner = std::make_unique<RunPlanner>(run->dag, std::move(model), start,
                                              SeedFromString(run->request.run_id()), options);
  run->planner->set_start_quantiles_at_once(shown);
  run->planner->PlanAll(now);
  run->planner->set_start_quantiles_at_once(false);
  run->tasks.resize(run->dag->size());
  run->plan_time = now;
  run->last_event = now;
  run->submitted = now;
  return run;
}

// Whether a task in `state` is done for good (succeeded, failed or skipped).
inline bool Terminal(TaskState state) {
  return state == TaskState::kSucceeded || state == TaskState::kFailed ||
         state == TaskState::kSkipped;
}

}  // namespace prewarm
