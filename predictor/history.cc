#include "predictor/history.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "predictor/trend.h"

namespace prewarm {
namespace {

std::shared_ptr<const Distribution> PointOf(absl::Duration d) {
  return std::make_shared<const Distribution>(Distribution::Point(absl::ToDoubleSeconds(d)));
}

std::shared_ptr<const Distribution> SnapshotOf(const SampleWindow& window, bool follow_trends) {
  std::vector<float> samples = window.InOrder();
  if (follow_trends) ProjectTrendToNewest(samples);
  return std::make_shared<const Distribution>(Distribution::FromSamples(std::move(samples)));
}

}  // namespace

History::History(HistoryOptions options)
    : options_(std::move(options)),
      duration_prior_(PointOf(options_.duration_prior)),
      cold_start_prior_(PointOf(options_.cold_start_prior)),
      dispatch_gap_prior_(PointOf(options_.dispatch_gap_prior)) {}

std::string History::TaskKey(absl::string_view workflow, absl::string_view task) {
  // '\x1f' (unit separator) cannot occur in ids, which reject control characters.
  return absl::StrCat(workflow, "\x1f", task);
}

void History::AddTo(Windows& windows, absl::string_view key, double seconds) {
  auto it = windows.find(key);
  if (it == windows.end()) {
    it = windows.emplace(std::string(key), SampleWindow(options_.window_size)).first;
  }
  // NaN and negative spans (clock skew between reporters) count as zero.
  it->second.Add(seconds > 0 ? seconds : 0.0);
}

void History::Add(HistoryWindow window, absl::string_view key, double value) {
  switch (window) {
    case HistoryWindow::kTaskDuration:
      return AddTo(task_durations_, key, value);
    case HistoryWindow::kServiceDuration:
      return AddTo(service_durations_, key, value);
    case HistoryWindow::kColdStart:
      return AddTo(cold_starts_, key, value);
    case HistoryWindow::kWarmLatency:
      return AddTo(warm_latencies_, key, value);
    case HistoryWindow::kDispatchGap:
      return AddTo(dispatch_gaps_, key, value);
    case HistoryWindow::kTaskRun: {
      auto it = task_runs_.find(key);
      if (it == task_runs_.end()) it = task_runs_.emplace(std::string(key), RunRecord()).first;
      it->second.Add(value > 0.5);
      return;
    }
  }
}

const SampleWindow* History::Lookup(const Windows& windows, absl::string_view key) {
  auto it = windows.find(key);
  return it == windows.end() ? nullptr : &it->second;
}

void History::AddTaskDuration(absl::string_view workflow, absl::string_view task,
                              absl::string_view service, absl::Duration duration) {
  AddTo(task_durations_, TaskKey(workflow, task), absl::ToDoubleSeconds(duration));
  if (!service.empty()) AddTo(service_durations_, service, absl::ToDoubleSeconds(duration));
}

void History::AddColdStart(absl::string_view service, absl::Duration cold_start) {
  AddTo(cold_starts_, service, absl::ToDoubleSeconds(cold_start));
}

void History::AddWarmLatency(absl::string_view service, absl::Duration latency) {
  AddTo(warm_latencies_, service, absl::ToDoubleSeconds(latency));
}

void History::AddDispatchGap(absl::string_view workflow, absl::Duration gap) {
  AddTo(dispatch_gaps_, workflow, absl::ToDoubleSeconds(gap));
}

void History::AddTaskRun(absl::string_view workflow, absl::string_view task, bool ran) {
  Add(HistoryWindow::kTaskRun, TaskKey(workflow, task), ran ? 1 : 0);
}

const SampleWindow* History::TaskDurations(absl::string_view workflow,
                                           absl::string_view task) const {
  return Lookup(task_durations_, TaskKey(workflow, task));
}
const SampleWindow* History::ServiceDurations(absl::string_view service) const {
  return Lookup(service_durations_, service);
}
const SampleWindow* History::ColdStarts(absl::string_view service) const {
  return Lookup(cold_starts_, service);
}
const SampleWindow* History::WarmLatencies(absl::string_view service) const {
  return Lookup(warm_latencies_, service);
}
const SampleWindow* History::DispatchGaps(absl::string_view workflow) const {
  return Lookup(dispatch_gaps_, workflow);
}

Estimate History::TaskDuration(absl::string_view workflow, absl::string_view task,
                               absl::string_view service) const {
  if (const SampleWindow* w = TaskDurations(workflow, task)) {
    return {SnapshotOf(*w, options_.follow_trends), EstimateSource::kLearned};
  }
  if (!service.empty()) {
    if (const SampleWindow* w = ServiceDurations(service)) {
      return {SnapshotOf(*w, options_.follow_trends), EstimateSource::kFallback};
    }
  }
  return {duration_prior_, EstimateSource::kPrior};
}

Estimate History::ColdStart(absl::string_view service,
                            std::optional<absl::Duration> service_prior) const {
  if (const SampleWindow* w = ColdStarts(service)) {
    return {SnapshotOf(*w, options_.follow_trends), EstimateSource::kLearned};
  }
  if (service_prior.has_value()) return {PointOf(*service_prior), EstimateSource::kPrior};
  return {cold_start_prior_, EstimateSource::kPrior};
}

Estimate History::DispatchGap(absl::string_view workflow) const {
  if (const SampleWindow* w = DispatchGaps(workflow)) {
    return {SnapshotOf(*w, options_.follow_trends), EstimateSource::kLearned};
  }
  return {dispatch_gap_prior_, EstimateSource::kPrior};
}

double History::RunProbability(absl::string_view workflow, absl::string_view task) const {
  auto it = task_runs_.find(TaskKey(workflow, task));
  return it == task_runs_.end() ? 1.0 : it->second.RunProbability();
}

size_t History::key_count() const {
  return task_durations_.size() + service_durations_.size() + cold_starts_.size() +
         warm_latencies_.size() + dispatch_gaps_.size() + task_runs_.size();
}

}  // namespace prewarm
