#include "server/run_request.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "predictor/names.h"
#include "server/proto_time.h"

namespace prewarm {
namespace {

// `d` (the field `field`) as a duration in [0, kMaxColdStart].
absl::StatusOr<absl::Duration> StartDuration(const google::protobuf::Duration& d,
                                             absl::string_view field) {
  absl::StatusOr<absl::Duration> out = FromProto(d, field);
  if (!out.ok()) return out.status();
  if (*out < absl::ZeroDuration() || *out > kMaxColdStart) {
    return absl::InvalidArgumentError(absl::StrCat(field, " ", absl::FormatDuration(*out),
                                                   " must be in [0, ",
                                                   absl::FormatDuration(kMaxColdStart), "]"));
  }
  return out;
}

// The task's duration hint: in (0, kMaxExpectedDuration].
absl::StatusOr<absl::Duration> ExpectedDuration(const v1::Task& task) {
  const std::string field = absl::StrCat("task '", task.task_id(), "': expected_duration");
  absl::StatusOr<absl::Duration> d = FromProto(task.expected_duration(), field);
  if (!d.ok()) return d.status();
  if (*d <= absl::ZeroDuration() || *d > kMaxExpectedDuration) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " ", absl::FormatDuration(*d), " must be in (0, ",
                     absl::FormatDuration(kMaxExpectedDuration), "]"));
  }
  return d;
}

}  // namespace

absl::StatusOr<RunRequest> ParseRunRequest(const v1::PrewarmRequest& request, absl::Time now,
                                           const RunRequestLimits& limits) {
  if (absl::Status s = ValidateId(request.run_id(), "run_id"); !s.ok()) return s;
  if (absl::Status s = ValidateId(request.workflow_id(), "workflow_id"); !s.ok()) return s;
  if (request.tasks_size() > limits.dag.max_tasks) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the DAG has ", request.tasks_size(), " tasks; the limit is ", limits.dag.max_tasks));
  }
  RunRequest out;
  out.request = request;
  out.start = now;
  if (request.has_start_time()) {
    absl::StatusOr<absl::Time> t = FromProto(request.start_time(), "start_time");
    if (!t.ok()) return t.status();
    if (*t > now + limits.max_future_start) {
      return absl::InvalidArgumentError(
          absl::StrCat("start_time ", absl::FormatTime(*t), " is more than ",
                       absl::FormatDuration(limits.max_future_start), " in the future"));
    }
    if (*t < now - limits.max_past_start) {
      return absl::InvalidArgumentError(
          absl::StrCat("start_time ", absl::FormatTime(*t), " is more than ",
                       absl::FormatDuration(limits.max_past_start), " in the past"));
    }
    out.start = *t;
  }
  *out.request.mutable_start_time() = ToProtoTimestamp(out.start);
  out.delay_cost_ratio = limits.default_delay_cost_ratio;
  const double ratio = request.delay_cost_ratio();
  if (ratio != 0) {
    if (!std::isfinite(ratio) || ratio < 0 || ratio > kMaxDelayCostRatio) {
      return absl::InvalidArgumentError(
          absl::StrCat("delay_cost_ratio ", ratio, " must be in (0, ", kMaxDelayCostRatio, "]"));
    }
    out.delay_cost_ratio = ratio;
  }
  out.request.set_delay_cost_ratio(out.delay_cost_ratio);

  std::vector<TaskSpec> specs;
  specs.reserve(request.tasks_size());
  for (const v1::Task& t : request.tasks()) {
    TaskSpec& spec = specs.emplace_back(TaskSpec{
        t.task_id(), t.service(), {t.upstream_task_ids().begin(), t.upstream_task_ids().end()}});
    if (t.has_expected_duration()) {
      absl::StatusOr<absl::Duration> d = ExpectedDuration(t);
      if (!d.ok()) return d.status();
      spec.expected_duration = *d;
    }
  }
  absl::StatusOr<Dag> dag = Dag::Build(std::move(specs), limits.dag);
  if (!dag.ok()) return dag.status();
  out.dag = std::make_shared<const Dag>(*std::move(dag));
  return out;
}

absl::Status CheckReportView(const v1::ReportTimingRequest& request) {
  if (v1::ReportTimingView_IsValid(request.view())) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "view ", request.view(),
      " is not a ReportTimingView (REPORT_TIMING_VIEW_FULL or REPORT_TIMING_VIEW_SUMMARY)"));
}

absl::StatusOr<v1::ReportTimingRequest> ParseTaskEvent(const v1::ReportTimingRequest& request,
                                                       absl::Time now,
                                                       absl::Duration max_clock_skew) {
  if (request.event() == v1::TASK_EVENT_TYPE_UNSPECIFIED ||
      !v1::TaskEventType_IsValid(request.event())) {
    return absl::InvalidArgumentError(
        absl::StrCat("event ", request.event(), " is not a task event type"));
  }
  v1::ReportTimingRequest event = request;
  absl::Time at = now;
  if (request.has_event_time()) {
    absl::StatusOr<absl::Time> t = FromProto(request.event_time(), "event_time");
    if (!t.ok()) return t.status();
    if (*t > now + max_clock_skew) {
      return absl::InvalidArgumentError(absl::StrCat("event_time ", absl::FormatTime(*t), " is ",
                                                     absl::FormatDuration(*t - now),
                                                     " ahead of the server's clock"));
    }
    at = *t;
  }
  *event.mutable_event_time() = ToProtoTimestamp(at);
  event.clear_view();
  if (request.has_cold_start()) {
    if (absl::Status c = StartDuration(request.cold_start(), "cold_start").status(); !c.ok()) {
      return c;
    }
  }
  return event;
}

absl::Status RunNotActiveError(absl::string_view run_id) {
  if (absl::Status s = ValidateId(run_id, "run_id"); !s.ok()) return s;
  return absl::NotFoundError(absl::StrCat("run '", run_id, "' is not active"));
}

absl::Status TaskNotFoundError(absl::string_view run_id, absl::string_view task_id) {
  if (absl::Status s = ValidateId(task_id, "task_id"); !s.ok()) return s;
  return absl::NotFoundError(
      absl::StrCat("run '", run_id, "' has no task '", task_id.substr(0, 250), "'"));
}

absl::StatusOr<WarmupReport> ParseWarmupReport(const v1::ReportWarmupRequest& request) {
  WarmupReport out;
  if (request.warmup_id().empty() || !absl::SimpleAtoi(request.warmup_id(), &out.id)) {
    return absl::InvalidArgumentError(absl::StrCat("warmup_id '", request.warmup_id().substr(0, 40),
                                                   "' is not an id from WatchWarmups"));
  }
  if (request.has_latency()) {
    absl::StatusOr<absl::Duration> d = StartDuration(request.latency(), "latency");
    if (!d.ok()) return d.status();
    out.latency = *d;
  } else if (request.success()) {
    return absl::InvalidArgumentError("latency is required for a successful warm-up");
  }
  out.success = request.success();
  if (request.has_cold()) out.cold = request.cold();
  return out;
}

}  // namespace prewarm
