#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "predictor/bucket_sort.h"
#include "predictor/dag.h"
#include "predictor/random.h"
#include "predictor/run_model.h"
#include "predictor/warmup_optimizer.h"

namespace prewarm {

struct PlannerOptions {
  // Monte Carlo samples per task. More samples: smoother quantiles, proportionally slower plans.
  int sample_count = 128;
  // The most samples per task a configuration may ask for (config, benchmarks).
  static constexpr int kMaxSampleCount = 100'000;
  // alpha/beta: how many idle container-seconds one second of workflow delay is worth. The
  // default prices a container-second of a 256-1024 MiB service at about $1e-5 (Lambda, Cloud
  // Run, a Knative node) against about $0.002-0.003 for a second of an awaited pipeline's delay
  // (docs/planner.md, "Choosing delay_cost_ratio").
  double delay_cost_ratio = 200;
  // Whether the server refreshes a ready warm-up (sends it again) before the platform's keep-alive
  // would reclaim the container of a task that has not started yet. With refreshes a warm-up is
  // never lost to the keep-alive, so its idle cost grows with the wait and has no cliff; without,
  // firing more than keep_alive before the start wastes the warm-up (DESIGN §2).
  bool refresh_warmups = true;
  // Lazy planning: a pending task whose every sampled start lies beyond now + planning_horizon +
  // the largest cold start of the run's services gets no warm-up decision yet (kDeferred), nor do
  // its descendants (they start later still): no warm-up could fire before now + planning_horizon
  // (one fires no earlier than the earliest start minus the cold start). NextDeferredPlan() says
  // when to plan them (PlanDeferred). Off: every task is decided at every plan.
  bool lazy_planning = true;
  // How long before a deferred task's earliest possible firing time it is decided: slack for a
  // late timer and for showing the decision ahead. REQUIRES: > 0.
  absl::Duration planning_horizon = absl::Seconds(60);
};

enum class WarmupDecision {
  kWarm,             // fire at warmup_time
  kSkipAlreadyWarm,  // another task or run keeps the service warm
  kSkipUnlikely,     // the task rarely runs (or its branch was skipped); a warm-up would idle
  kSkipNoService,    // no service, or one prewarm cannot warm
  kSkipStarted,      // the task already started, finished or was skipped
  kSkipNotWorth,     // the idle cost outweighs the delay hidden at this delay_cost_ratio
  kSkipTooLate,      // the task starts before a warm-up fired now could help
  kDeferred,         // not decided yet: it starts too far ahead (lazy planning)
};

enum class Confidence { kHigh, kMedium, kLow };

enum class TaskState { kPending, kRunning, kSucceeded, kFailed, kSkipped };

// The plan of one task.
struct TaskPlan {
  WarmupDecision decision = WarmupDecision::kSkipNoService;
  // When to fire; InfiniteFuture unless decision == kWarm.
  absl::Time warmup_time = absl::InfiniteFuture();
  absl::Time expected_start;
  absl::Time start_p10;
  absl::Time start_p90;
  absl::Duration expected_cold_start;
  absl::Duration expected_delay;
  absl::Duration expected_idle;
  Confidence confidence = Confidence::kHigh;
  // Share of the samples in which the task runs, given what is known so far: 1 once it started,
  // 0 once it (or every path to it) was skipped. The start times above describe those samples.
  // kDeferred: not estimated yet (1); the start times describe all samples, or are only the
  // earliest start when an upstream task is deferred too (no samples drawn).
  double run_probability = 1;
  std::string reason;
};

// What is known of a task's execution so far.
struct TaskProgress {
  TaskState state = TaskState::kPending;
  absl::Time started = absl::InfinitePast();   // when it started (if it did)
  absl::Time finished = absl::InfinitePast();  // when it finished, failed or was skipped
  // How long its call waits for a container before its warm run time begins: zero when warm,
  // unset when cold with the length unknown (drawn from the service's cold starts).
  std::optional<absl::Duration> container_wait = absl::ZeroDuration();
};

// Plans one run: Monte Carlo start-time distributions over the DAG (DESIGN §2) and, per task, the
// warm-up time that minimises expected delay and idle cost, including the keep-alive cliff.
// Seeded: the same seed, model and events give the same plan. Task events condition the samples
// and re-plan only what they can move. Skips travel through the samples: a task runs in a sample
// only when it has no parents or one of them ran there, and then with its
// TaskModel::run_probability; except that a parent with learned joint outcomes of its children
// (RunModel::child_outcomes) draws one outcome per sample for all of them, so that exclusive
// branches stay exclusive (a task runs where such a parent ran and chose it). Lazy planning
// (PlannerOptions::lazy_planning) leaves tasks that start far ahead undecided (kDeferred) until
// NextDeferredPlan(), when PlanDeferred() decides them. Memory: 1 float (finish time) per planned
// (not deferred) task with children and sample, 1 bit (ran or not) per sample of a task that runs
// in some samples only.
// Not thread-safe: the server guards each run with its own lock.
//
// Example:
//   RunPlanner planner(dag, BuildRunModel(*dag, "etl", history, lookup), start,
//                      SeedFromString(run_id), {});
//   planner.PlanAll(clock.Now());
//   for (int v = 0; v < dag->size(); ++v) Schedule(v, planner.plan(v).warmup_time);
class RunPlanner {
 public:
  // REQUIRES: model.tasks.size() == dag->size(); options.sample_count > 0;
  // options.delay_cost_ratio > 0.
  RunPlanner(std::shared_ptr<const Dag> dag, RunModel model, absl::Time start, uint64_t seed,
             PlannerOptions options);

  // Plans every task as of `now` (no firing before `now`).
  void PlanAll(absl::Time now);

  // Task events at time `at`, re-planned as of `now`. Each returns the tasks whose plans were
  // recomputed, in topological order: the task, its siblings under a parent with joint outcomes
  // (whose outcomes depend on the task's), and the descendants of those. FAILED_PRECONDITION when
  // the event contradicts what is known (e.g. finishing a task twice); a failed task may start
  // again (a retry). `container_wait`: see TaskProgress (a task that started cold finishes that
  // much later).
  absl::StatusOr<std::vector<int>> Started(
      int task, absl::Time at, absl::Time now,
      std::optional<absl::Duration> container_wait = absl::ZeroDuration());
  absl::StatusOr<std::vector<int>> Finished(int task, absl::Time at, absl::Time now);
  absl::StatusOr<std::vector<int>> Failed(int task, absl::Time at, absl::Time now);
  absl::StatusOr<std::vector<int>> Skipped(int task, absl::Time at, absl::Time now);

  // Records that a container of the task's service is warm for it until `warm_until` (its own
  // warm-up, or one another run left free); takes effect at the next re-plan of the task (see
  // Replan).
  void SetTaskWarmUntil(int task, absl::Time warm_until);

  // Re-plans the task and what depends on it (as for task events) as of `now`, after what is
  // known of its service changed (SetTaskWarmUntil). Returns them in topological order.
  std::vector<int> Replan(int task, absl::Time now);

  const Dag& dag() const { return *dag_; }
  absl::Time start() const { return start_; }
  // The task's plan, its reason formatted on each call (a plan keeps it as a code and numbers),
  // and its start quantiles found on each call when its starts are spread (from its start samples
  // drawn again: about the cost of sampling it once more).
  TaskPlan plan(int task) const;
  // plan(task).decision and .warmup_time, without building the rest: what warm-up timers need
  // after every re-plan.
  WarmupDecision decision(int task) const { return plans_[task].decision; }
  absl::Time warmup_time(int task) const {
    return plans_[task].decision == WarmupDecision::kWarm ? Abs(plans_[task].warmup_time)
                                                          : absl::InfiniteFuture();
  }
  // plan(task).expected_start and .expected_cold_start, likewise for the server's bookkeeping.
  absl::Time expected_start(int task) const {
    return progress_[task].state == TaskState::kPending ? Abs(plans_[task].expected_start)
                                                        : progress_[task].started;
  }
  absl::Duration expected_cold_start(int task) const { return ExpectedColdStart(task); }
  const TaskProgress& progress(int task) const { return progress_[task]; }
  // Whether the plans made from now on find their start quantiles at once, while their samples
  // are at hand, or when read (plan(), from the samples drawn again): the same values either way.
  // At once suits a caller about to show the plans it makes (an answer that holds them); when
  // read, the default, spares the re-plans whose plans no one reads.
  void set_start_quantiles_at_once(bool at_once) { quantiles_at_once_ = at_once; }
  // Start-time samples of a task as of its last plan, in seconds after start() (for tests and
  // diagnostics; drawn again on each call, since a plan keeps only the finish samples).
  std::vector<float> start_samples(int task) const;
  // Bytes held by the samples and plans (not the model).
  size_t MemoryBytes() const;

  // Lazy planning (PlannerOptions::lazy_planning): when the earliest deferred task is due to be
  // decided (InfiniteFuture when none is deferred). Events and Replan re-plan deferred tasks too,
  // and may decide them earlier or defer them further.
  absl::Time NextDeferredPlan() const;
  // Plans, as of `now`, the deferred tasks due by `now`, and the children of those it decides, and
  // so on (those that still start far enough ahead stay deferred). Returns them in topological
  // order. A deferred
  // task decided here gets the plan it would have got when it was deferred, as long as nothing
  // it starts after moved and `now` is before its warm-up time.
  std::vector<int> PlanDeferred(absl::Time now);

 private:
  double Rel(absl::Time t) const { return absl::ToDoubleSeconds(t - start_); }
  absl::Time Abs(double rel) const { return start_ + absl::Seconds(rel); }
  // Plans one task as of `now_rel`: samples it and evaluates its warm-up, or defers it (lazy
  // planning; `may_defer` false: only when an upstream task is deferred).
  void PlanTask(int task, double now_rel, bool may_defer);
  // Returns false when it deferred the task instead (see PlanTask).
  bool Sample(int task, double now_rel, bool may_defer);
  // Sample(): records the task as deferred, with its start samples (or none) in starts_.
  void Defer(int task, double now_rel, bool sampled, double earliest);
  // A deferred task's chance to run, before its own samples exist (see Defer).
  float DeferredRunProbability(int task, bool sampled) const;
  // The learned joint outcomes of the parent's children (null: none), and those of them that
  // agree with the children's known outcomes (valid until the next call).
  const std::vector<uint32_t>* MasksOf(int parent) const;
  std::span<const uint32_t> ConsistentMasks(int parent);
  // Sample(): which samples a pending task with a jointly sampled parent runs in, and their
  // finish times.
  void SampleJointRuns(int task, Rng& rng);
  // What an event of `task` re-plans (see Replan).
  std::vector<int> Affected(int task) const;
  // Of a task's start samples, over all of them: what Sample() and Evaluate() need, found while
  // they are drawn rather than in passes of their own.
  struct StartSummary {
    float earliest = std::numeric_limits<float>::infinity();
    float latest = -std::numeric_limits<float>::infinity();
    double sum = 0;  // Added in sample order, as a pass over them would.
  };
  // The start samples of a pending task as of `now_rel`, from its parents' finish samples and
  // gap draws from `rng` (its kGapAndDuration stream, which then goes on to its durations).
  StartSummary PendingStarts(int task, double now_rel, Rng& rng, float* starts) const;
  void Evaluate(int task, double now_rel);
  // Why a task got its decision; plan() turns it into TaskPlan::reason.
  enum class Reason : uint8_t {
    kStarted,
    kNoService,
    kNotRegistered,
    kRunsInNone,
    kBranchSkipped,
    kWarmUntil,
    kUpstreamWarm,
    kStartsNow,
    kUnlikely,
    kNotWorth,
    kDeadlinePassed,
    kFires,
    kDeferred,          // kDeferred with start samples: decided at warm_until_ns
    kDeferredUpstream,  // kDeferred as an upstream task is: decided after it
  };
  // What a plan keeps of a TaskPlan (about a quarter of its size, no string): times in seconds
  // after start_; what can be derived (run probability, cold start, the reason's text) is derived
  // in plan().
  struct StoredPlan {
    double expected_start = 0;  // of a pending task (else progress.started)
    double warmup_time = 0;     // when decision == kWarm
    double expected_delay = 0;  // seconds
    double expected_idle = 0;   // seconds
    // kWarmUntil: until when the service is warm; kDeferred: when to decide it (after start_).
    int64_t warm_until_ns = 0;
    // kDeferred: the earliest start (all samples, or a lower bound when upstream is deferred).
    float earliest_start = 0;
    float start_p10 = 0;
    float start_p90 = 0;
    // kDeferred: the chance that it runs, estimated from its parents' (DeferredRunProbability).
    float run_probability = 1;
    int late_samples = 0;  // kFires: WarmupChoice::late_samples (of run_count_ samples)
    WarmupDecision decision = WarmupDecision::kSkipNoService;
    Confidence confidence = Confidence::kHigh;
    Reason reason = Reason::kNoService;
    bool delay_is_cold_start = false;  // kSkipTooLate: the whole expected cold start
    // start_p10 and start_p90 are left to plan() (StartQuantiles; see set_start_quantiles_at_once),
    // over the samples in which the task runs when `quantiles_over_runs`.
    bool quantiles_on_read = false;
    bool quantiles_over_runs = false;
  };
  void EvaluateWarmup(int task, double now_rel, bool starts_now, StoredPlan& plan);
  // The plan's start_p10 and start_p90 of the start samples Sample() left in starts_ (only those
  // in which the task runs when `some_skip`), whose earliest and latest `summary` holds: set when
  // all are one time or quantiles_at_once_, else left to StartQuantiles.
  void SetStartQuantiles(bool some_skip, const StartSummary& summary, StoredPlan& plan);
  // start_p10 and start_p90 (seconds after start_) of a plan with quantiles_on_read, from the
  // task's start samples drawn again (start_samples(): the same draws, as nothing it starts after
  // was re-sampled without re-planning it) and its run flags.
  RankPair StartQuantiles(int task) const;
  absl::Duration ExpectedColdStart(int task) const;
  Confidence StartConfidence(int task) const;
  // Adds to the task's finish samples the cold-start delay it pays when warmed at `fire_at`
  // (infinity: not warmed). Uses the draws of the last EvaluateWarmup.
  void AddColdStartDelays(int task, double fire_at, double keep_alive);

  std::shared_ptr<const Dag> dag_;
  RunModel model_;
  absl::Time start_;
  uint64_t seed_;
  PlannerOptions options_;
  bool Ran(int task, int i) const {
    const int row = ran_row_[task];
    if (row < 0) return run_count_[task] == m_;
    return (ran_bits_[static_cast<size_t>(row) * words_ + i / 64] >> (i % 64)) & 1;
  }

  int m_;      // samples per task
  int words_;  // 64-bit words of run flags per task
  // The finish samples S + D of a task (seconds after start_): what a re-plan of its children
  // reads. A leaf's, and a deferred task's, are scratch, valid only while it is sampled and
  // evaluated.
  float* Finish(int task) {
    float* row = finish_[task].get();
    return row == nullptr ? leaf_finish_.data() : row;
  }
  const float* Finish(int task) const { return const_cast<RunPlanner*>(this)->Finish(task); }
  bool Deferred(int task) const { return plans_[task].decision == WarmupDecision::kDeferred; }
  // Deferred with samples, so with a time to be decided (Reason::kDeferred).
  bool Waiting(int task) const {
    return Deferred(task) && plans_[task].reason == Reason::kDeferred;
  }

  // Finish samples (m_ floats) of the tasks with children that were sampled and not deferred
  // (null: a leaf, or never planned). The start samples S are needed only while the task itself is
  // evaluated (starts_).
  std::vector<std::unique_ptr<float[]>> finish_;
  std::vector<float> leaf_finish_;
  // Lazy planning: a task is deferred while its earliest start is beyond now + this (seconds);
  // infinity when lazy planning is off.
  double defer_margin_ = 0;
  // The tasks for which Waiting() holds (few: the front of the deferred part of the DAG).
  std::vector<int> waiting_;
  // Bit i of words [row * words_, (row + 1) * words_): whether the task of ran_row_[task] == row
  // runs in sample i. Only tasks that ever ran in some samples and not others have a row (-1:
  // none; it runs in all samples or in none, as run_count_ says).
  std::vector<uint64_t> ran_bits_;
  std::vector<int> ran_row_;
  std::vector<int> run_count_;     // per task: samples in which it runs
  std::vector<float> sampled_at_;  // per task: now_rel of its last Sample()
  std::vector<Confidence> finish_confidence_;
  std::vector<TaskProgress> progress_;
  std::vector<StoredPlan> plans_;
  std::vector<int> warm_parents_;           // EvaluateWarmup: parents on the task's service
  std::vector<uint32_t> consistent_masks_;  // ConsistentMasks
  std::vector<uint8_t> chosen_now_;         // SampleJointRuns
  // Scratch, reused across tasks. Sample() leaves the task's start samples S (seconds after
  // start_) and run flags here for Evaluate() of the same task, and the summary of S when it drew
  // them for a pending task (else none).
  std::vector<float> starts_;
  std::optional<StartSummary> starts_summary_;
  std::vector<uint8_t> ran_now_;
  std::vector<float> scratch_a_;
  std::vector<float> scratch_b_;
  std::vector<uint32_t> bucket_counts_;
  bool quantiles_at_once_ = false;
  std::vector<float> cold_draws_;      // EvaluateWarmup: the cold start of each sample
  std::vector<uint8_t> needs_warmup_;  // EvaluateWarmup: the task runs, its service cold
  // Evaluate(): the optimizer holds every start of the samples in which the task runs, sorted.
  bool sorted_by_optimizer_ = false;
  WarmupOptimizer optimizer_;
};

const char* WarmupDecisionName(WarmupDecision d);
const char* TaskStateName(TaskState s);

}  // namespace prewarm
