#include "server/event_learning.h"

#include <algorithm>
#include <utility>

#include "server/proto_time.h"

namespace prewarm {
namespace {

// Whether an upstream of `v` started (ran, whatever its result).
bool AnyParentRan(const RunPlanner& planner, int v) {
  for (int u : planner.dag().parents(v)) {
    const TaskState state = planner.progress(u).state;
    if (state != TaskState::kPending && state != TaskState::kSkipped) return true;
  }
  return false;
}

std::optional<bool> ReportedCold(const v1::ReportTimingRequest& event) {
  return event.has_cold() ? std::optional<bool>(event.cold()) : std::nullopt;
}

}  // namespace

HistoryWindow WindowOf(Observation::Kind kind) {
  switch (kind) {
    case Observation::Kind::kTaskDuration:
      return HistoryWindow::kTaskDuration;
    case Observation::Kind::kServiceDuration:
      return HistoryWindow::kServiceDuration;
    case Observation::Kind::kColdStart:
      return HistoryWindow::kColdStart;
    case Observation::Kind::kWarmLatency:
      return HistoryWindow::kWarmLatency;
    case Observation::Kind::kDispatchGap:
      return HistoryWindow::kDispatchGap;
    case Observation::Kind::kTaskRun:
      return HistoryWindow::kTaskRun;
    case Observation::Kind::kChildOutcomes:
      return HistoryWindow::kChildOutcomes;
  }
  return HistoryWindow::kTaskDuration;
}

Observation::Kind KindOf(HistoryWindow window) {
  switch (window) {
    case HistoryWindow::kTaskDuration:
      return Observation::Kind::kTaskDuration;
    case HistoryWindow::kServiceDuration:
      return Observation::Kind::kServiceDuration;
    case HistoryWindow::kColdStart:
      return Observation::Kind::kColdStart;
    case HistoryWindow::kWarmLatency:
      return Observation::Kind::kWarmLatency;
    case HistoryWindow::kDispatchGap:
      return Observation::Kind::kDispatchGap;
    case HistoryWindow::kTaskRun:
      return Observation::Kind::kTaskRun;
    case HistoryWindow::kChildOutcomes:
      return Observation::Kind::kChildOutcomes;
  }
  return Observation::Kind::kTaskDuration;
}

const char* KindName(Observation::Kind kind) {
  switch (kind) {
    case Observation::Kind::kTaskDuration:
      return "task_duration";
    case Observation::Kind::kServiceDuration:
      return "service_duration";
    case Observation::Kind::kColdStart:
      return "cold_start";
    case Observation::Kind::kWarmLatency:
      return "warm_latency";
    case Observation::Kind::kDispatchGap:
      return "dispatch_gap";
    case Observation::Kind::kTaskRun:
      return "task_run";
    case Observation::Kind::kChildOutcomes:
      return "child_outcomes";
  }
  return "unknown";
}

Observation MakeObservation(Observation::Kind kind, std::string key, double value, absl::Time at) {
  Observation o;
  o.kind = kind;
  o.key = std::move(key);
  o.value = value;
  o.time = at;
  return o;
}

bool IsRepeat(const Run& run, int v, const v1::ReportTimingRequest& event) {
  const TaskRuntime& rt = run.tasks[v];
  const TaskState state = run.planner->progress(v).state;
  // What a repeat of a call's report may still teach.
  const bool news = (event.has_cold() && !rt.outcome_counted) ||
                    (event.has_cold_start() && !rt.reported_cold_start.has_value());
  switch (event.event()) {
    case v1::TASK_EVENT_TYPE_STARTED:
      return state == TaskState::kRunning && !news;
    case v1::TASK_EVENT_TYPE_SERVICE_INVOKED:
      return rt.last_event == v1::TASK_EVENT_TYPE_SERVICE_INVOKED && !news;
    case v1::TASK_EVENT_TYPE_FINISHED:
      return state == TaskState::kSucceeded;
    case v1::TASK_EVENT_TYPE_FAILED:
      return state == TaskState::kFailed;
    case v1::TASK_EVENT_TYPE_SKIPPED:
      return state == TaskState::kSkipped;
    default:
      return false;
  }
}

std::optional<absl::Duration> ContainerWait(const Run& run, int v,
                                            const v1::ReportTimingRequest& event, absl::Time at) {
  if (run.dag->task(v).service.empty()) return absl::ZeroDuration();
  if (event.has_cold()) {
    if (!event.cold()) return absl::ZeroDuration();
    if (event.has_cold_start()) {
      return FromProto(event.cold_start(), "").value_or(absl::ZeroDuration());
    }
    return std::nullopt;
  }
  const TaskRuntime& rt = run.tasks[v];
  switch (rt.warmup) {
    case v1::WARMUP_STATE_READY:
      return absl::ZeroDuration();
    case v1::WARMUP_STATE_FIRED:  // Late: the rest of the warm-up's cold start.
      return std::max(absl::ZeroDuration(), rt.fired_at + run.planner->expected_cold_start(v) - at);
    default:
      if (rt.found_warm.has_value()) {
        return *rt.found_warm ? std::optional<absl::Duration>(absl::ZeroDuration()) : std::nullopt;
      }
      return absl::ZeroDuration();  // Nothing known (a replay): as its history says.
  }
}

v1::TaskOutcome DecideOutcome(const TaskRuntime& rt, std::optional<bool> reported_cold,
                              absl::Time at) {
  if (reported_cold.has_value()) {
    // A cold call made while this task's warm-up was starting the service only waited for the
    // rest of that start (the report usually arrives after the call, when the warm-up is READY).
    const bool warmup_in_flight =
        rt.warmup == v1::WARMUP_STATE_FIRED ||
        (rt.warmup == v1::WARMUP_STATE_READY && rt.fired_at <= at && at < rt.ready_at);
    return !*reported_cold    ? v1::TASK_OUTCOME_HIT
           : warmup_in_flight ? v1::TASK_OUTCOME_LATE
                              : v1::TASK_OUTCOME_MISS;
  }
  if (rt.warmup == v1::WARMUP_STATE_READY) return v1::TASK_OUTCOME_HIT;
  if (rt.warmup == v1::WARMUP_STATE_FIRED) return v1::TASK_OUTCOME_LATE;
  // What the container pool saw when the call arrived.
  return rt.found_warm.value_or(false) ? v1::TASK_OUTCOME_HIT : v1::TASK_OUTCOME_MISS;
}

std::optional<Observation> DispatchGapLesson(const Run& run, int v, absl::Time at, absl::Time now) {
  absl::Time last_parent = absl::InfinitePast();
  bool parents_done = !run.dag->parents(v).empty();
  for (int u : run.dag->parents(v)) {
    const TaskProgress& p = run.planner->progress(u);
    parents_done = parents_done && Terminal(p.state);
    last_parent = std::max(last_parent, p.finished);
  }
  if (!parents_done || at < last_parent) return std::nullopt;
  return MakeObservation(Observation::Kind::kDispatchGap, run.request.workflow_id(),
                         absl::ToDoubleSeconds(at - last_parent), now);
}

absl::Duration ColdPenalty(const Run& run, int v, const v1::ReportTimingRequest& event,
                           absl::Time started) {
  const TaskRuntime& rt = run.tasks[v];
  if (event.has_cold_start() && event.cold()) {
    return FromProto(event.cold_start(), "").value_or(absl::ZeroDuration());
  }
  if (rt.reported_cold_start.has_value()) return *rt.reported_cold_start;  // e.g. by its INVOKED
  if (rt.outcome == v1::TASK_OUTCOME_MISS) return run.planner->expected_cold_start(v);
  if (rt.outcome == v1::TASK_OUTCOME_LATE && rt.fired_at != absl::InfinitePast()) {
    return std::max(absl::ZeroDuration(),
                    rt.fired_at + run.planner->expected_cold_start(v) - started);
  }
  return absl::ZeroDuration();
}

std::vector<Observation> FinishedLessons(const Run& run, int v,
                                         const v1::ReportTimingRequest& event, absl::Time started,
                                         absl::Time at, absl::Time now) {
  const TaskSpec& spec = run.dag->task(v);
  const absl::Duration cold_penalty =
      spec.service.empty() ? absl::ZeroDuration() : ColdPenalty(run, v, event, started);
  // The warm run time: what the task took minus the cold start it paid.
  const double seconds = std::max(0.0, absl::ToDoubleSeconds(at - started - cold_penalty));
  const std::string task_key = History::TaskKey(run.request.workflow_id(), spec.task_id);
  std::vector<Observation> out;
  out.push_back(MakeObservation(Observation::Kind::kTaskDuration, task_key, seconds, now));
  if (!spec.service.empty()) {
    out.push_back(MakeObservation(Observation::Kind::kServiceDuration, spec.service, seconds, now));
  }
  out.push_back(MakeObservation(Observation::Kind::kTaskRun, task_key, 1, now));
  return out;
}

std::optional<Observation> SkippedLesson(const Run& run, int v, absl::Time now) {
  if (!run.dag->parents(v).empty() && !AnyParentRan(*run.planner, v)) return std::nullopt;
  return MakeObservation(Observation::Kind::kTaskRun,
                         History::TaskKey(run.request.workflow_id(), run.dag->task(v).task_id), 0,
                         now);
}

std::optional<absl::Duration> NewReportedColdStart(const Run& run, int v,
                                                   const v1::ReportTimingRequest& event) {
  if (!event.has_cold_start() || !ReportedCold(event).value_or(true) ||
      run.dag->task(v).service.empty() || run.tasks[v].reported_cold_start.has_value()) {
    return std::nullopt;
  }
  return FromProto(event.cold_start(), "").value_or(absl::ZeroDuration());
}

bool ReportedColdStartIsWhole(const TaskRuntime& rt) { return rt.outcome != v1::TASK_OUTCOME_LATE; }

std::optional<Observation> WarmupLesson(absl::string_view service, absl::Duration latency,
                                        bool cold, bool joined_start, absl::Time now) {
  if (cold && joined_start) return std::nullopt;
  return MakeObservation(cold ? Observation::Kind::kColdStart : Observation::Kind::kWarmLatency,
                         std::string(service), absl::ToDoubleSeconds(latency), now);
}

}  // namespace prewarm
