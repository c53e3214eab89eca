#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "predictor/history.h"
#include "predictor/planner.h"
#include "prewarm/v1/prewarm.pb.h"
#include "server/run_state.h"

namespace prewarm {

// What the API shows of the registry's state: domain values in, v1 protos out. Pure functions:
// the caller holds whatever lock guards their arguments.

v1::WarmupDecision ToProto(WarmupDecision decision);
v1::Confidence ToProto(Confidence confidence);
v1::TaskState ToProto(TaskState state);

// The run's plan as GetPlan, Prewarm and a retired run show it: every task, in DAG order.
v1::RunPlan PlanProto(const Run& run);
// Task `task` of the run's plan: expected start and its spread, the warm-up decision and time
// (the planned one while it is to be sent, else when it fired), estimates, and what happened.
void TaskPlanProto(const Run& run, int task, v1::TaskPlan* out);

// A service's warm-up and task counters (GetServiceStats).
struct ServiceCounts {
  int64_t hits = 0, misses = 0, lates = 0, fired = 0, failed = 0;
};

// GetServiceStats for `service`: the summaries of its history windows (those it has), its
// counters when it has any (nullptr: none), and warm_until when that is after `now`.
v1::GetServiceStatsResponse ServiceStatsProto(absl::string_view service, const History& history,
                                              const ServiceCounts* counts, absl::Time warm_until,
                                              absl::Time now);

}  // namespace prewarm
