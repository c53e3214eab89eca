#include "server/plan_proto.h"

#include <string>

#include "predictor/distribution.h"
#include "server/proto_time.h"

namespace prewarm {
namespace {

void Summarize(const SampleWindow* window, v1::DistributionSummary* out) {
  if (window == nullptr || window->empty()) return;
  const Distribution d = Distribution::FromSamples(window->InOrder());
  out->set_sample_count(window->size());
  *out->mutable_mean() = ToProtoDuration(absl::Seconds(d.Mean()));
  *out->mutable_p50() = ToProtoDuration(absl::Seconds(d.Quantile(0.5)));
  *out->mutable_p90() = ToProtoDuration(absl::Seconds(d.Quantile(0.9)));
  *out->mutable_p99() = ToProtoDuration(absl::Seconds(d.Quantile(0.99)));
}

}  // namespace

v1::WarmupDecision ToProto(WarmupDecision d) {
  switch (d) {
    case WarmupDecision::kWarm:
      return v1::WARMUP_DECISION_WARM;
    case WarmupDecision::kSkipAlreadyWarm:
      return v1::WARMUP_DECISION_SKIP_ALREADY_WARM;
    case WarmupDecision::kSkipUnlikely:
      return v1::WARMUP_DECISION_SKIP_UNLIKELY;
    case WarmupDecision::kSkipNoService:
      return v1::WARMUP_DECISION_SKIP_NO_SERVICE;
    case WarmupDecision::kSkipStarted:
      return v1::WARMUP_DECISION_SKIP_STARTED;
    case WarmupDecision::kSkipNotWorth:
      return v1::WARMUP_DECISION_SKIP_NOT_WORTH;
    case WarmupDecision::kSkipTooLate:
      return v1::WARMUP_DECISION_SKIP_TOO_LATE;
    case WarmupDecision::kDeferred:
      return v1::WARMUP_DECISION_DEFERRED;
  }
  return v1::WARMUP_DECISION_UNSPECIFIED;
}

v1::Confidence ToProto(Confidence c) {
  switch (c) {
    case Confidence::kHigh:
      return v1::CONFIDENCE_HIGH;
    case Confidence::kMedium:
      return v1::CONFIDENCE_MEDIUM;
    case Confidence::kLow:
      return v1::CONFIDENCE_LOW;
  }
  return v1::CONFIDENCE_UNSPECIFIED;
}

v1::TaskState ToProto(TaskState s) {
  switch (s) {
    case TaskState::kPending:
      return v1::TASK_STATE_PENDING;
    case TaskState::kRunning:
      return v1::TASK_STATE_RUNNING;
    case TaskState::kSucceeded:
      return v1::TASK_STATE_SUCCEEDED;
    case TaskState::kFailed:
      return v1::TASK_STATE_FAILED;
    case TaskState::kSkipped:
      return v1::TASK_STATE_SKIPPED;
  }
  return v1::TASK_STATE_UNSPECIFIED;
}

v1::RunPlan PlanProto(const Run& run) {
  v1::RunPlan out;
  out.set_run_id(run.request.run_id());
  out.set_workflow_id(run.request.workflow_id());
  *out.mutable_start_time() = run.request.start_time();
  *out.mutable_plan_time() = ToProtoTimestamp(run.plan_time);
  out.set_replan_count(run.replans);
  for (int v = 0; v < run.dag->size(); ++v) TaskPlanProto(run, v, out.add_tasks());
  return out;
}

void TaskPlanProto(const Run& run, int v, v1::TaskPlan* t) {
  const TaskPlan& p = run.planner->plan(v);
  const TaskProgress& progress = run.planner->progress(v);
  const TaskRuntime& rt = run.tasks[v];
  t->set_task_id(run.dag->task(v).task_id);
  t->set_service(run.dag->task(v).service);
  *t->mutable_expected_start_time() = ToProtoTimestamp(p.expected_start);
  *t->mutable_start_time_p10() = ToProtoTimestamp(p.start_p10);
  *t->mutable_start_time_p90() = ToProtoTimestamp(p.start_p90);
  if (p.decision == WarmupDecision::kWarm) {
    *t->mutable_warmup_time() = ToProtoTimestamp(p.warmup_time);
  } else if (rt.fired_at != absl::InfinitePast()) {
    *t->mutable_warmup_time() = ToProtoTimestamp(rt.fired_at);
  }
  *t->mutable_expected_cold_start() = ToProtoDuration(p.expected_cold_start);
  t->set_decision(ToProto(p.decision));
  t->set_reason(p.reason);
  t->set_confidence(ToProto(p.confidence));
  t->set_run_probability(p.run_probability);
  *t->mutable_expected_delay() = ToProtoDuration(p.expected_delay);
  *t->mutable_expected_idle() = ToProtoDuration(p.expected_idle);
  t->set_warmup_state(rt.warmup);
  t->set_task_state(ToProto(progress.state));
  t->set_outcome(rt.outcome);
  if (rt.actual_start != absl::InfinitePast()) {
    *t->mutable_actual_start_time() = ToProtoTimestamp(rt.actual_start);
  }
}

v1::GetServiceStatsResponse ServiceStatsProto(absl::string_view service, const History& history,
                                              const ServiceCounts* counts, absl::Time warm_until,
                                              absl::Time now) {
  v1::GetServiceStatsResponse out;
  out.set_service(std::string(service));
  Summarize(history.ServiceDurations(service), out.mutable_duration());
  Summarize(history.ColdStarts(service), out.mutable_cold_start());
  Summarize(history.WarmLatencies(service), out.mutable_warm_latency());
  if (counts != nullptr) {
    out.set_hit_count(counts->hits);
    out.set_miss_count(counts->misses);
    out.set_late_count(counts->lates);
    out.set_warmups_fired(counts->fired);
    out.set_warmups_failed(counts->failed);
  }
  if (warm_until > now) *out.mutable_warm_until() = ToProtoTimestamp(warm_until);
  return out;
}

}  // namespace prewarm
