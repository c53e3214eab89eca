#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "predictor/distribution.h"
#include "predictor/sample_window.h"

namespace prewarm {

// Sizes and priors of the history. The priors stand in for a quantity until it has been observed.
struct HistoryOptions {
  // Samples kept per key; older ones are dropped. 128 floats keep a key under 1 KiB.
  int window_size = 128;
  // Task duration assumed when neither the task nor its service has history.
  absl::Duration duration_prior = absl::Seconds(10);
  // Cold start assumed for a service with no observation and no prior of its own.
  absl::Duration cold_start_prior = absl::Seconds(2);
  // Gap between the last upstream finishing and a task starting, before any is observed.
  absl::Duration dispatch_gap_prior = absl::ZeroDuration();
  // How far a task's real durations may stray from a scheduler's duration hint: a hint (a median
  // of past runs, or a guess) stands in as a log-normal spread of this sigma around it, so that
  // a plan built on it keeps a margin for a faster or slower run. 0: the hint as a point value.
  double duration_hint_spread = 0.25;
  // Estimates from a window with a clear linear trend are projected to its newest observation
  // (ProjectTrendToNewest): durations that drift are planned at today's level.
  bool follow_trends = true;
  // Keys (windows and run records of every kind) held at most; adding a new key past it evicts
  // the key whose last observation is the oldest, so that an endless stream of new names (dynamic
  // DAG ids, mapped task ids, per-tenant services) cannot grow memory. 0: no cap. The default
  // keeps History near 100 MB with 128-sample windows (docs/store.md, "Sizing").
  int max_keys = 100'000;
};

// Where an estimate came from, from most to least specific: learned for the exact key (the task,
// the service's cold start, the workflow's gap), learned for a broader key (a task's duration from
// its service), or a configured prior.
enum class EstimateSource { kLearned, kFallback, kPrior };

// The kinds of window History keeps, for recording and replaying observations by key.
enum class HistoryWindow {
  kTaskDuration,     // key: TaskKey(workflow, task)
  kServiceDuration,  // key: service
  kColdStart,        // key: service
  kWarmLatency,      // key: service
  kDispatchGap,      // key: workflow
  kTaskRun,          // key: TaskKey(workflow, task); value 1 ran, 0 skipped
  // key: ChildOutcomeKey (predictor/branch_outcomes.h); value: which children of a task that ran
  // ran themselves, as a bit mask (see ChildOutcomesSettledBy).
  kChildOutcomes,
};

// An estimate: a distribution and where it came from.
struct Estimate {
  std::shared_ptr<const Distribution> distribution;
  EstimateSource source;
};

// What prewarm has learned: bounded windows of task durations per (workflow, task) and per
// service, cold-start costs and warm latencies per service, dispatch gaps per workflow, and how
// often each task ran. Pure data, no I/O; the server persists observations and replays them here.
// Bounded: at most options.max_keys keys, least recently observed evicted first (memory per key
// is bounded by the window size). Not thread-safe: callers synchronise writes; const methods may
// run concurrently with each other (estimates are snapshotted once per change of a window and
// shared, under an internal lock).
class History {
 public:
  explicit History(HistoryOptions options = {});
  // Movable, not copyable (the key index points into the recency list).
  History(History&&) = default;
  History& operator=(History&&) = default;
  History(const History&) = delete;
  History& operator=(const History&) = delete;

  // A task's warm run time; also counts for its service (when it has one).
  void AddTaskDuration(absl::string_view workflow, absl::string_view task,
                       absl::string_view service, absl::Duration duration);
  void AddColdStart(absl::string_view service, absl::Duration cold_start);
  // How long a warm service takes to answer a warm-up: tells cold warm-ups from warm ones.
  void AddWarmLatency(absl::string_view service, absl::Duration latency);
  void AddDispatchGap(absl::string_view workflow, absl::Duration gap);
  // Whether a task ran (true) or was skipped (false) when at least one of its upstream tasks ran
  // (or it has none): the server does not record skips that only followed skipped upstreams.
  void AddTaskRun(absl::string_view workflow, absl::string_view task, bool ran);
  // Adds one observation (seconds, or 1/0 for kTaskRun) to one window: what the Add* methods
  // above do, one window at a time, so that a store can record and replay them.
  void Add(HistoryWindow window, absl::string_view key, double value);
  // The key of a (workflow, task) window.
  static std::string TaskKey(absl::string_view workflow, absl::string_view task);

  // The raw windows; null when nothing was observed for the key.
  const SampleWindow* TaskDurations(absl::string_view workflow, absl::string_view task) const;
  const SampleWindow* ServiceDurations(absl::string_view service) const;
  const SampleWindow* ColdStarts(absl::string_view service) const;
  const SampleWindow* WarmLatencies(absl::string_view service) const;
  const SampleWindow* DispatchGaps(absl::string_view workflow) const;
  // Recent joint outcomes of a task's children (key: ChildOutcomeKey), oldest first.
  const SampleWindow* ChildOutcomes(absl::string_view key) const;

  // Estimates with fallback. Duration: the task's history, else the scheduler's `hint` for the
  // task (its median, spread by duration_hint_spread; source kFallback), else its service's
  // history, else the prior. The hint
  // outranks the service's history because it is about this very task.
  Estimate TaskDuration(absl::string_view workflow, absl::string_view task,
                        absl::string_view service,
                        std::optional<absl::Duration> hint = std::nullopt) const;
  // Cold start: the service's history, else `service_prior` when given, else the global prior.
  Estimate ColdStart(absl::string_view service,
                     std::optional<absl::Duration> service_prior = std::nullopt) const;
  Estimate DispatchGap(absl::string_view workflow) const;
  // P(the task runs | an upstream ran, or it has none) from its recent runs; 1 without history.
  double RunProbability(absl::string_view workflow, absl::string_view task) const;

  const HistoryOptions& options() const { return options_; }
  // Number of keys (windows and run records) held.
  size_t key_count() const { return recency_.size(); }

  // Keys evicted by max_keys since the previous call, oldest first, so that a store can delete
  // them too. A caller that persists keys should take them after every Add.
  std::vector<std::pair<HistoryWindow, std::string>> TakeEvicted();
  // Keys evicted since construction.
  int64_t evictions() const { return evictions_; }
  // Makes `key` the most recently used, as if just observed, without adding a value (a restore
  // replays keys in the order they were last observed). No-op for an absent key.
  void Touch(HistoryWindow window, absl::string_view key);
  // Changes options().max_keys (0: no cap), evicting at once down to a lower cap.
  void SetMaxKeys(int max_keys);

 private:
  // Every key, least recently observed first.
  using Recency = std::list<std::pair<HistoryWindow, std::string>>;
  struct Window {
    SampleWindow samples;
    Recency::iterator recency;
    // The estimate of the current samples, built at the first request after a change and shared
    // by every run planned until the next one (so runs of a workflow do not each hold a copy).
    // Read and filled under snapshot_mu_ (const lookups); reset by writers, who hold History.
    mutable std::shared_ptr<const Distribution> snapshot;
  };
  struct Runs {
    RunRecord record;
    Recency::iterator recency;
  };
  using Windows = absl::flat_hash_map<std::string, Window>;
  void AddTo(Windows& windows, HistoryWindow kind, absl::string_view key, double seconds);
  static const SampleWindow* Lookup(const Windows& windows, absl::string_view key);
  // The (cached) estimate of a window; null when the key has none.
  std::shared_ptr<const Distribution> Snapshot(const Windows& windows, absl::string_view key) const
      ABSL_LOCKS_EXCLUDED(snapshot_mu_);
  // The map holding keys of `kind` (nullptr for kTaskRun, which has its own).
  Windows* WindowsOf(HistoryWindow kind);
  // Evicts least recent keys while more than max_keys are held.
  void EvictOverCap();

  HistoryOptions options_;
  // Guards only the cached snapshots, so that const lookups may run concurrently (a pointer, so
  // that History stays movable).
  std::unique_ptr<absl::Mutex> snapshot_mu_;
  Recency recency_;
  std::vector<std::pair<HistoryWindow, std::string>> evicted_;
  int64_t evictions_ = 0;
  Windows task_durations_;
  Windows service_durations_;
  Windows cold_starts_;
  Windows warm_latencies_;
  Windows dispatch_gaps_;
  Windows child_outcomes_;  // Masks below 2^24: exact as the windows' floats.
  absl::flat_hash_map<std::string, Runs> task_runs_;
  // Priors are shared by every plan that falls back to them.
  std::shared_ptr<const Distribution> duration_prior_;
  std::shared_ptr<const Distribution> cold_start_prior_;
  std::shared_ptr<const Distribution> dispatch_gap_prior_;
};

}  // namespace prewarm
