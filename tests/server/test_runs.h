#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "predictor/history.h"
#include "predictor/run_model.h"
#include "prewarm/v1/prewarm.pb.h"
#include "server/proto_time.h"
#include "server/run_request.h"
#include "server/run_state.h"

namespace prewarm::testing {

// Tests of the run registry's parts build runs as the registry does, with point priors (duration
// 10 s, cold start 2 s, dispatch gap 1 s) and every service warmable.

inline HistoryOptions TestHistoryOptions() {
  HistoryOptions options;
  options.duration_prior = absl::Seconds(10);
  options.cold_start_prior = absl::Seconds(2);
  options.dispatch_gap_prior = absl::Seconds(1);
  return options;
}

// A chain of tasks, each on service "svc-<task>" ("" for a task without a service when
// `services` is false), starting at `start`.
inline v1::PrewarmRequest ChainRequest(const std::string& run_id,
                                       const std::vector<std::string>& tasks, absl::Time start,
                                       bool services = true) {
  v1::PrewarmRequest r;
  r.set_run_id(run_id);
  r.set_workflow_id("wf");
  std::string previous;
  for (const std::string& task : tasks) {
    v1::Task* t = r.add_tasks();
    t->set_task_id(task);
    if (services) t->set_service("svc-" + task);
    if (!previous.empty()) t->add_upstream_task_ids(previous);
    previous = task;
  }
  *r.mutable_start_time() = ToProtoTimestamp(start);
  return r;
}

// The run the registry would build from `request` at `now` over `history`.
inline std::unique_ptr<Run> BuildTestRun(const v1::PrewarmRequest& request, absl::Time now,
                                         const History& history) {
  absl::StatusOr<RunRequest> checked = ParseRunRequest(request, now, {});
  EXPECT_TRUE(checked.ok()) << checked.status();
  if (!checked.ok()) return nullptr;
  PlannerOptions options;
  options.delay_cost_ratio = checked->delay_cost_ratio;
  options.lazy_planning = false;  // Every decision at once, as the tests read them.
  RunModel model = BuildRunModel(*checked->dag, request.workflow_id(), history,
                                 [](absl::string_view) { return ServiceInfo{.warmable = true}; });
  return NewPlannedRun(std::move(checked->request), std::move(checked->dag), std::move(model),
                       checked->start, options, now);
}

// A ReportTimingRequest as ParseTaskEvent returns it (event_time set).
inline v1::ReportTimingRequest TaskEvent(const Run& run, const std::string& task,
                                         v1::TaskEventType type, absl::Time at) {
  v1::ReportTimingRequest r;
  r.set_run_id(run.request.run_id());
  r.set_task_id(task);
  r.set_event(type);
  *r.mutable_event_time() = ToProtoTimestamp(at);
  return r;
}

}  // namespace prewarm::testing
