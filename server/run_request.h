#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "predictor/dag.h"
#include "predictor/planner.h"
#include "prewarm/v1/prewarm.pb.h"

namespace prewarm {

// The checking of requests: a v1 proto in, validated domain values out, or the INVALID_ARGUMENT
// (or RESOURCE_EXHAUSTED, NOT_FOUND) status that names what is wrong. Pure functions of their
// arguments: they read no registry state, so the registry calls them under its lock or not.

// The longest cold start or warm-up latency a report may carry.
inline constexpr absl::Duration kMaxColdStart = absl::Minutes(10);
// The largest delay_cost_ratio (α/β) a Prewarm request may ask for.
inline constexpr double kMaxDelayCostRatio = 1e6;
// The longest duration hint (v1.Task.expected_duration) a Prewarm request may carry.
inline constexpr absl::Duration kMaxExpectedDuration = absl::Hours(24 * 7);

// What ParseRunRequest enforces (see RunRegistryOptions).
struct RunRequestLimits {
  DagLimits dag;
  // How far in the future a run may start.
  absl::Duration max_future_start = absl::Hours(24 * 7);
  // How far in the past a run may have started (a run idle longer would expire at once).
  absl::Duration max_past_start = absl::Hours(24);
  // delay_cost_ratio when the request leaves it 0.
  double default_delay_cost_ratio = PlannerOptions{}.delay_cost_ratio;
};

// A Prewarm request that passed every check.
struct RunRequest {
  // As accepted: start_time (now when unset) and delay_cost_ratio (the default when 0) filled in.
  v1::PrewarmRequest request;
  std::shared_ptr<const Dag> dag;
  absl::Time start;
  double delay_cost_ratio = 0;
};

// Checks a Prewarm request as of `now`: run_id and workflow_id are ids, the DAG has at most
// limits.dag.max_tasks tasks (RESOURCE_EXHAUSTED), start_time lies within
// [now - max_past_start, now + max_future_start], delay_cost_ratio is 0 or in
// (0, kMaxDelayCostRatio], every expected_duration set lies in (0, kMaxExpectedDuration], and
// the tasks form a DAG (Dag::Build's errors). Checked in that
// order; the first failure is returned. Nothing about other runs (ALREADY_EXISTS, the limit of
// active runs) is checked here.
absl::StatusOr<RunRequest> ParseRunRequest(const v1::PrewarmRequest& request, absl::Time now,
                                           const RunRequestLimits& limits);

// Checks ReportTimingRequest.view: INVALID_ARGUMENT naming the field for a value that is not a
// ReportTimingView. Checked first, whatever the run's state, so that a bad view never passes.
absl::Status CheckReportView(const v1::ReportTimingRequest& request);

// Checks the fields of a ReportTiming request whose run and task are known: the event type,
// event_time (at most `max_clock_skew` ahead of `now`) and cold_start (in [0, kMaxColdStart]).
// Returns the event to apply and store: event_time filled in (now when unset), view cleared (it
// says what to answer, not what happened).
absl::StatusOr<v1::ReportTimingRequest> ParseTaskEvent(const v1::ReportTimingRequest& request,
                                                       absl::Time now,
                                                       absl::Duration max_clock_skew);

// The answer for a run id that names no active run: INVALID_ARGUMENT when it is not an id at all,
// else NOT_FOUND "run '<id>' is not active".
absl::Status RunNotActiveError(absl::string_view run_id);
// The answer for a task id the run does not have: INVALID_ARGUMENT when it is not an id at all,
// else NOT_FOUND naming the run and (the first 250 bytes of) the task.
absl::Status TaskNotFoundError(absl::string_view run_id, absl::string_view task_id);

// A ReportWarmup request that passed every check.
struct WarmupReport {
  uint64_t id = 0;
  bool success = false;
  absl::Duration latency;  // Zero for a failure that gave none.
  std::optional<bool> cold;
};

// Checks a ReportWarmup request: warmup_id is a number WatchWarmups gave, latency is in
// [0, kMaxColdStart] and is present when the warm-up succeeded. Whether the id is in flight is
// the registry's business (NOT_FOUND there).
absl::StatusOr<WarmupReport> ParseWarmupReport(const v1::ReportWarmupRequest& request);

}  // namespace prewarm
