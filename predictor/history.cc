#include "predictor/history.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "predictor/trend.h"

namespace prewarm {
namespace {

std::shared_ptr<const Distribution> PointOf(absl::Duration d) {
  return std::make_shared<const Distribution>(Distribution::Point(absl::ToDoubleSeconds(d)));
}

// `median` spread log-normally with `sigma`: the values at the 1/18, 3/18, ..., 17/18 quantiles.
std::shared_ptr<const Distribution> HintOf(absl::Duration median, double sigma) {
  // Standard normal quantiles of (2i + 1) / 18, i = 0..8.
  static constexpr double kZ[] = {-1.5932, -0.9674, -0.5895, -0.2822, 0,
                                  0.2822,  0.5895,  0.9674,  1.5932};
  std::vector<float> samples;
  for (double z : kZ) {
    samples.push_back(static_cast<float>(absl::ToDoubleSeconds(median) * std::exp(sigma * z)));
  }
  return std::make_shared<const Distribution>(Distribution::FromSamples(std::move(samples)));
}

std::shared_ptr<const Distribution> SnapshotOf(const SampleWindow& window, bool follow_trends) {
  std::vector<float> samples = window.InOrder();
  if (follow_trends) ProjectTrendToNewest(samples);
  return std::make_shared<const Distribution>(Distribution::FromSamples(std::move(samples)));
}

}  // namespace

History::History(HistoryOptions options)
    : options_(std::move(options)),
      snapshot_mu_(std::make_unique<absl::Mutex>()),
      duration_prior_(PointOf(options_.duration_prior)),
      cold_start_prior_(PointOf(options_.cold_start_prior)),
      dispatch_gap_prior_(PointOf(options_.dispatch_gap_prior)) {}

std::string History::TaskKey(absl::string_view workflow, absl::string_view task) {
  // '\x1f' (unit separator) cannot occur in ids, which reject control characters.
  return absl::StrCat(workflow, "\x1f", task);
}

History::Windows* History::WindowsOf(HistoryWindow kind) {
  switch (kind) {
    case HistoryWindow::kTaskDuration:
      return &task_durations_;
    case HistoryWindow::kServiceDuration:
      return &service_durations_;
    case HistoryWindow::kColdStart:
      return &cold_starts_;
    case HistoryWindow::kWarmLatency:
      return &warm_latencies_;
    case HistoryWindow::kDispatchGap:
      return &dispatch_gaps_;
    case HistoryWindow::kChildOutcomes:
      return &child_outcomes_;
    case HistoryWindow::kTaskRun:
      return nullptr;
  }
  return nullptr;
}

void History::AddTo(Windows& windows, HistoryWindow kind, absl::string_view key, double seconds) {
  // NaN and negative spans (clock skew between reporters) count as zero.
  seconds = seconds > 0 ? seconds : 0.0;
  auto it = windows.find(key);
  if (it != windows.end()) {
    recency_.splice(recency_.end(), recency_, it->second.recency);
    it->second.samples.Add(seconds);
    it->second.snapshot.reset();
    return;
  }
  recency_.emplace_back(kind, std::string(key));
  it = windows
           .emplace(std::string(key),
                    Window{SampleWindow(options_.window_size), std::prev(recency_.end())})
           .first;
  it->second.samples.Add(seconds);
  EvictOverCap();  // Never the new key: it is the most recent.
}

void History::EvictOverCap() {
  if (options_.max_keys <= 0) return;
  while (recency_.size() > static_cast<size_t>(options_.max_keys)) {
    auto& [kind, key] = recency_.front();
    if (Windows* windows = WindowsOf(kind)) {
      windows->erase(key);
    } else {
      task_runs_.erase(key);
    }
    evicted_.emplace_back(kind, std::move(key));
    recency_.pop_front();
    ++evictions_;
  }
}

std::vector<std::pair<HistoryWindow, std::string>> History::TakeEvicted() {
  return std::exchange(evicted_, {});
}

void History::SetMaxKeys(int max_keys) {
  options_.max_keys = max_keys;
  EvictOverCap();
}

void History::Touch(HistoryWindow window, absl::string_view key) {
  if (Windows* windows = WindowsOf(window)) {
    if (auto it = windows->find(key); it != windows->end()) {
      recency_.splice(recency_.end(), recency_, it->second.recency);
    }
  } else if (auto it = task_runs_.find(key); it != task_runs_.end()) {
    recency_.splice(recency_.end(), recency_, it->second.recency);
  }
}

void History::Add(HistoryWindow window, absl::string_view key, double value) {
  if (Windows* windows = WindowsOf(window)) return AddTo(*windows, window, key, value);
  // kTaskRun.
  auto it = task_runs_.find(key);
  if (it != task_runs_.end()) {
    recency_.splice(recency_.end(), recency_, it->second.recency);
    it->second.record.Add(value > 0.5);
    return;
  }
  recency_.emplace_back(window, std::string(key));
  it = task_runs_.emplace(std::string(key), Runs{RunRecord(), std::prev(recency_.end())}).first;
  it->second.record.Add(value > 0.5);
  EvictOverCap();
}

const SampleWindow* History::Lookup(const Windows& windows, absl::string_view key) {
  auto it = windows.find(key);
  return it == windows.end() ? nullptr : &it->second.samples;
}

void History::AddTaskDuration(absl::string_view workflow, absl::string_view task,
                              absl::string_view service, absl::Duration duration) {
  Add(HistoryWindow::kTaskDuration, TaskKey(workflow, task), absl::ToDoubleSeconds(duration));
  if (!service.empty()) {
    Add(HistoryWindow::kServiceDuration, service, absl::ToDoubleSeconds(duration));
  }
}

void History::AddColdStart(absl::string_view service, absl::Duration cold_start) {
  Add(HistoryWindow::kColdStart, service, absl::ToDoubleSeconds(cold_start));
}

void History::AddWarmLatency(absl::string_view service, absl::Duration latency) {
  Add(HistoryWindow::kWarmLatency, service, absl::ToDoubleSeconds(latency));
}

void History::AddDispatchGap(absl::string_view workflow, absl::Duration gap) {
  Add(HistoryWindow::kDispatchGap, workflow, absl::ToDoubleSeconds(gap));
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
const SampleWindow* History::ChildOutcomes(absl::string_view key) const {
  return Lookup(child_outcomes_, key);
}

std::shared_ptr<const Distribution> History::Snapshot(const Windows& windows,
                                                      absl::string_view key) const {
  auto it = windows.find(key);
  if (it == windows.end()) return nullptr;
  absl::MutexLock lock(snapshot_mu_.get());
  std::shared_ptr<const Distribution>& snapshot = it->second.snapshot;
  if (snapshot == nullptr) snapshot = SnapshotOf(it->second.samples, options_.follow_trends);
  return snapshot;
}

Estimate History::TaskDuration(absl::string_view workflow, absl::string_view task,
                               absl::string_view service,
                               std::optional<absl::Duration> hint) const {
  if (auto d = Snapshot(task_durations_, TaskKey(workflow, task))) {
    return {std::move(d), EstimateSource::kLearned};
  }
  if (hint.has_value()) {
    return {HintOf(*hint, options_.duration_hint_spread), EstimateSource::kFallback};
  }
  if (!service.empty()) {
    if (auto d = Snapshot(service_durations_, service)) {
      return {std::move(d), EstimateSource::kFallback};
    }
  }
  return {duration_prior_, EstimateSource::kPrior};
}

Estimate History::ColdStart(absl::string_view service,
                            std::optional<absl::Duration> service_prior) const {
  if (auto d = Snapshot(cold_starts_, service)) return {std::move(d), EstimateSource::kLearned};
  if (service_prior.has_value()) return {PointOf(*service_prior), EstimateSource::kPrior};
  return {cold_start_prior_, EstimateSource::kPrior};
}

Estimate History::DispatchGap(absl::string_view workflow) const {
  if (auto d = Snapshot(dispatch_gaps_, workflow)) return {std::move(d), EstimateSource::kLearned};
  return {dispatch_gap_prior_, EstimateSource::kPrior};
}

double History::RunProbability(absl::string_view workflow, absl::string_view task) const {
  auto it = task_runs_.find(TaskKey(workflow, task));
  return it == task_runs_.end() ? 1.0 : it->second.record.RunProbability();
}

}  // namespace prewarm
