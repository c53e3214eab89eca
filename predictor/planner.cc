#include "predictor/planner.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "predictor/bucket_sort.h"
#include "predictor/check.h"
#include "predictor/random.h"

namespace prewarm {
namespace {

// Independent random streams per task, one per kind of draw.
enum Stream : uint64_t { kGapAndDuration = 0, kConditioned = 1, kColdStart = 2, kChildOutcome = 3 };

// A task whose every sampled start is this close to now cannot be helped by a warm-up.
constexpr double kTooLateSlack = 1e-3;

// A task's start p10 and p90 from its start samples: two ranks only, selected rather than sorted
// (the same values a sort would put there).
RankPair StartRanks(std::span<const float> starts, std::vector<float>& scratch,
                    std::vector<uint32_t>& counts) {
  const size_t last = starts.size() - 1;
  return SelectRanks(starts, static_cast<size_t>(0.1 * last), static_cast<size_t>(0.9 * last),
                     scratch, counts);
}

uint64_t StreamSeed(uint64_t seed, int task, Stream stream) {
  return MixSeed(seed, static_cast<uint64_t>(task) * 4 + stream);
}

Confidence ConfidenceOf(EstimateSource source) {
  switch (source) {
    case EstimateSource::kLearned:
      return Confidence::kHigh;
    case EstimateSource::kFallback:
      return Confidence::kMedium;
    case EstimateSource::kPrior:
      return Confidence::kLow;
  }
  return Confidence::kLow;
}

// kHigh < kMedium < kLow: a chain is as weak as its weakest estimate.
Confidence Weakest(Confidence a, Confidence b) { return std::max(a, b); }

absl::Status AlreadyDone(const TaskSpec& spec, TaskState state) {
  return absl::FailedPreconditionError(
      absl::StrCat("task '", spec.task_id, "' is already ", TaskStateName(state)));
}

}  // namespace

const char* WarmupDecisionName(WarmupDecision d) {
  switch (d) {
    case WarmupDecision::kWarm:
      return "warm";
    case WarmupDecision::kSkipAlreadyWarm:
      return "skip_already_warm";
    case WarmupDecision::kSkipUnlikely:
      return "skip_unlikely";
    case WarmupDecision::kSkipNoService:
      return "skip_no_service";
    case WarmupDecision::kSkipStarted:
      return "skip_started";
    case WarmupDecision::kSkipNotWorth:
      return "skip_not_worth";
    case WarmupDecision::kSkipTooLate:
      return "skip_too_late";
    case WarmupDecision::kDeferred:
      return "deferred";
  }
  return "unknown";
}

const char* TaskStateName(TaskState s) {
  switch (s) {
    case TaskState::kPending:
      return "pending";
    case TaskState::kRunning:
      return "running";
    case TaskState::kSucceeded:
      return "finished";
    case TaskState::kFailed:
      return "failed";
    case TaskState::kSkipped:
      return "skipped";
  }
  return "unknown";
}

RunPlanner::RunPlanner(std::shared_ptr<const Dag> dag, RunModel model, absl::Time start,
                       uint64_t seed, PlannerOptions options)
    : dag_(std::move(dag)),
      model_(std::move(model)),
      start_(start),
      seed_(seed),
      options_(options),
      m_(options.sample_count),
      words_((options.sample_count + 63) / 64) {
  PREWARM_CHECK(static_cast<int>(model_.tasks.size()) == dag_->size(), "one model per task");
  PREWARM_CHECK(m_ > 0, "sample_count > 0");
  PREWARM_CHECK(options_.delay_cost_ratio > 0, "delay_cost_ratio > 0");
  PREWARM_CHECK(!options_.lazy_planning || options_.planning_horizon > absl::ZeroDuration(),
                "planning_horizon > 0");
  const int n = dag_->size();
  // Only planned tasks with children keep their finish samples: nothing reads a leaf's, nor a
  // deferred task's (its children are deferred too).
  finish_.resize(n);
  leaf_finish_.assign(m_, 0);
  // No warm-up fires before the earliest start minus the cold start (earlier only idles longer),
  // so a task starting later than horizon + the largest cold start can wait.
  defer_margin_ = std::numeric_limits<double>::infinity();
  if (options_.lazy_planning) {
    double cold_max = 0;
    for (const TaskModel& t : model_.tasks) {
      if (t.cold_start.distribution != nullptr) {
        cold_max = std::max(cold_max, t.cold_start.distribution->Quantile(1));
      }
    }
    defer_margin_ = absl::ToDoubleSeconds(options_.planning_horizon) + cold_max;
  }
  ran_row_.assign(n, -1);
  starts_.assign(m_, 0);
  ran_now_.assign(m_, 0);
  run_count_.assign(n, 0);
  sampled_at_.assign(n, 0);
  finish_confidence_.assign(n, Confidence::kHigh);
  progress_.resize(n);
  plans_.resize(n);
}

size_t RunPlanner::MemoryBytes() const {
  size_t bytes = (starts_.capacity() + leaf_finish_.capacity()) * sizeof(float) +
                 finish_.capacity() * sizeof(finish_[0]) + ran_now_.capacity() +
                 ran_bits_.capacity() * sizeof(uint64_t) + ran_row_.capacity() * sizeof(int) +
                 run_count_.capacity() * sizeof(int) + sampled_at_.capacity() * sizeof(float) +
                 finish_confidence_.capacity() * sizeof(Confidence) +
                 plans_.capacity() * sizeof(StoredPlan) +
                 progress_.capacity() * sizeof(TaskProgress) + waiting_.capacity() * sizeof(int);
  for (const auto& row : finish_) bytes += row == nullptr ? 0 : m_ * sizeof(float);
  return bytes;
}

void RunPlanner::PlanAll(absl::Time now) {
  const double now_rel = Rel(now);
  for (int v = 0; v < dag_->size(); ++v) PlanTask(v, now_rel, true);
}

void RunPlanner::PlanTask(int v, double now_rel, bool may_defer) {
  const bool was_waiting = Waiting(v);
  if (Sample(v, now_rel, may_defer)) Evaluate(v, now_rel);
  const bool waiting = Waiting(v);
  if (waiting && !was_waiting) {
    waiting_.push_back(v);
  } else if (!waiting && was_waiting) {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), v));
  }
}

absl::Time RunPlanner::NextDeferredPlan() const {
  int64_t next = std::numeric_limits<int64_t>::max();
  for (int v : waiting_) next = std::min(next, plans_[v].warm_until_ns);
  return next == std::numeric_limits<int64_t>::max() ? absl::InfiniteFuture()
                                                     : start_ + absl::Nanoseconds(next);
}

std::vector<int> RunPlanner::PlanDeferred(absl::Time now) {
  const double now_rel = Rel(now);
  const auto due = [&](int v) {
    return Waiting(v) && start_ + absl::Nanoseconds(plans_[v].warm_until_ns) <= now;
  };
  // In topological (index) order: the due tasks, then the children of those decided (a child of
  // a task still deferred stays deferred, its earliest start still a lower bound).
  std::vector<int> heap;
  for (int v : waiting_) {
    if (due(v)) heap.push_back(v);
  }
  std::vector<bool> queued(dag_->size(), false);
  for (int v : heap) queued[v] = true;
  std::make_heap(heap.begin(), heap.end(), std::greater<>());
  std::vector<int> touched;
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const int v = heap.back();
    heap.pop_back();
    touched.push_back(v);
    // A due task is decided even if rounding left its earliest start a hair beyond the margin.
    PlanTask(v, now_rel, !due(v));
    if (Deferred(v)) continue;
    for (int c : dag_->children(v)) {
      if (queued[c]) continue;
      queued[c] = true;
      heap.push_back(c);
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  }
  return touched;
}

const std::vector<uint32_t>* RunPlanner::MasksOf(int parent) const {
  const std::vector<ChildOutcomes>& all = model_.child_outcomes;
  auto it = std::lower_bound(all.begin(), all.end(), parent,
                             [](const ChildOutcomes& c, int p) { return c.parent < p; });
  return it == all.end() || it->parent != parent ? nullptr : &it->masks;
}

std::span<const uint32_t> RunPlanner::ConsistentMasks(int parent) {
  const std::vector<uint32_t>* masks = MasksOf(parent);
  if (masks == nullptr || dag_->children(parent).size() > 32) return {};
  // Children whose outcome is known rule out the masks that disagree with it.
  uint32_t known = 0;
  uint32_t ran = 0;
  const std::vector<int>& children = dag_->children(parent);
  for (size_t j = 0; j < children.size(); ++j) {
    const TaskState state = progress_[children[j]].state;
    if (state == TaskState::kPending) continue;
    known |= uint32_t{1} << j;
    if (state != TaskState::kSkipped) ran |= uint32_t{1} << j;
  }
  consistent_masks_.clear();
  for (uint32_t mask : *masks) {
    if ((mask & known) == ran) consistent_masks_.push_back(mask);
  }
  return consistent_masks_;
}

void RunPlanner::SampleJointRuns(int v, Rng& rng) {
  // A child runs in a sample when a parent that ran there chose it: by the mask drawn for that
  // parent (the same draw for all of its children, from the parent's own stream), or, for a
  // parent without learned outcomes, by the child's own run_probability as usual.
  const TaskModel& model = model_.tasks[v];
  const float* s = starts_.data();
  float* f = Finish(v);
  uint8_t* r = ran_now_.data();
  std::vector<uint8_t>& chosen = chosen_now_;
  chosen.assign(m_, 0);
  std::fill(r, r + m_, 0);
  for (int u : dag_->parents(v)) {
    const std::span<const uint32_t> masks = ConsistentMasks(u);
    if (masks.empty()) {
      for (int i = 0; i < m_; ++i) r[i] |= static_cast<uint8_t>(Ran(u, i));
      continue;
    }
    const std::vector<int>& siblings = dag_->children(u);
    const int bit =
        static_cast<int>(std::find(siblings.begin(), siblings.end(), v) - siblings.begin());
    Rng pick(StreamSeed(seed_, u, kChildOutcome));
    const auto count = static_cast<uint32_t>(masks.size());
    for (int i = 0; i < m_; ++i) {
      const uint32_t mask = masks[pick.Below(count)];
      chosen[i] |= static_cast<uint8_t>(Ran(u, i) && ((mask >> bit) & 1));
    }
  }
  const Distribution& duration = *model.duration.distribution;
  const double p_run = model.run_probability;
  int runs = 0;
  for (int i = 0; i < m_; ++i) {
    const bool own = p_run >= 1 || rng.Uniform() < p_run;
    r[i] = chosen[i] | (r[i] & static_cast<uint8_t>(own));
    f[i] = s[i] + (r[i] ? static_cast<float>(duration.Draw(rng)) : 0.0f);
    runs += r[i];
  }
  run_count_[v] = runs;
}

std::vector<int> RunPlanner::Affected(int task) const {
  // The task, its siblings under a parent with joint outcomes (what is known of the task changes
  // which outcomes they can have), and the descendants of all of them, in topological order.
  // Walks the children of what it reached only (not every later task), then sorts: indices are
  // topological.
  std::vector<bool> reached(dag_->size(), false);
  std::vector<int> out = {task};
  reached[task] = true;
  for (int u : dag_->parents(task)) {
    if (MasksOf(u) == nullptr) continue;
    for (int c : dag_->children(u)) {
      if (reached[c]) continue;
      reached[c] = true;
      out.push_back(c);
    }
  }
  for (size_t k = 0; k < out.size(); ++k) {
    for (int c : dag_->children(out[k])) {
      if (reached[c]) continue;
      reached[c] = true;
      out.push_back(c);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int> RunPlanner::Replan(int task, absl::Time now) {
  const double now_rel = Rel(now);
  std::vector<int> touched = Affected(task);
  for (int v : touched) PlanTask(v, now_rel, true);
  return touched;
}

absl::StatusOr<std::vector<int>> RunPlanner::Started(int task, absl::Time at, absl::Time now,
                                                     std::optional<absl::Duration> container_wait) {
  TaskProgress& p = progress_[task];
  if (p.state == TaskState::kSucceeded || p.state == TaskState::kSkipped) {
    return AlreadyDone(dag_->task(task), p.state);
  }
  p.state = TaskState::kRunning;  // A failed task starting again is a retry.
  p.started = at;
  p.container_wait = container_wait;
  p.finished = absl::InfinitePast();
  return Replan(task, now);
}

absl::StatusOr<std::vector<int>> RunPlanner::Finished(int task, absl::Time at, absl::Time now) {
  TaskProgress& p = progress_[task];
  if (p.state != TaskState::kPending && p.state != TaskState::kRunning) {
    return AlreadyDone(dag_->task(task), p.state);
  }
  if (p.state == TaskState::kPending) p.started = at;  // Its start was never reported.
  if (at < p.started) {
    return absl::InvalidArgumentError(
        absl::StrCat("task '", dag_->task(task).task_id, "' finishes at ", absl::FormatTime(at),
                     ", before it started at ", absl::FormatTime(p.started)));
  }
  p.state = TaskState::kSucceeded;
  p.finished = at;
  return Replan(task, now);
}

absl::StatusOr<std::vector<int>> RunPlanner::Failed(int task, absl::Time at, absl::Time now) {
  TaskProgress& p = progress_[task];
  if (p.state == TaskState::kSucceeded || p.state == TaskState::kSkipped ||
      p.state == TaskState::kFailed) {
    return AlreadyDone(dag_->task(task), p.state);
  }
  if (p.state == TaskState::kPending || at < p.started) p.started = at;
  p.state = TaskState::kFailed;
  p.finished = at;
  return Replan(task, now);
}

absl::StatusOr<std::vector<int>> RunPlanner::Skipped(int task, absl::Time at, absl::Time now) {
  TaskProgress& p = progress_[task];
  if (p.state != TaskState::kPending) return AlreadyDone(dag_->task(task), p.state);
  p.state = TaskState::kSkipped;
  p.started = at;
  p.finished = at;
  return Replan(task, now);
}

void RunPlanner::SetTaskWarmUntil(int task, absl::Time warm_until) {
  model_.tasks[task].service.warm_until = warm_until;
}

RunPlanner::StartSummary RunPlanner::PendingStarts(int v, double now_rel, Rng& rng,
                                                   float* s) const {
  // It has not started by now, so it starts no earlier than now.
  const float floor = static_cast<float>(now_rel);
  StartSummary summary;
  const auto add = [&summary](float start) {
    summary.earliest = std::min(summary.earliest, start);
    summary.latest = std::max(summary.latest, start);
    summary.sum += start;
  };
  const std::vector<int>& parents = dag_->parents(v);
  if (parents.empty()) {
    const float start = std::max(0.0f, floor);
    std::fill(s, s + m_, start);
    for (int i = 0; i < m_; ++i) add(start);
    return summary;
  }
  // Parent by parent, so the inner loop runs over contiguous samples; the first one sets them.
  constexpr float kNone = -std::numeric_limits<float>::infinity();
  const float* first = Finish(parents[0]);
  for (int i = 0; i < m_; ++i) s[i] = std::max(kNone, first[i]);
  for (size_t k = 1; k < parents.size(); ++k) {
    const float* fu = Finish(parents[k]);
    for (int i = 0; i < m_; ++i) s[i] = std::max(s[i], fu[i]);
  }
  // Then the gap, the floor and the summary in one pass. A gap of one value (the prior, or a
  // constant history) needs no hashing: its draws only move the stream on.
  const Distribution& gap = *model_.dispatch_gap.distribution;
  if (gap.constant()) {
    const float g = gap.samples().front();
    rng.Skip(static_cast<uint64_t>(m_));
    for (int i = 0; i < m_; ++i) {
      s[i] = std::max(s[i] + g, floor);
      add(s[i]);
    }
  } else {
    for (int i = 0; i < m_; ++i) {
      s[i] = std::max(s[i] + static_cast<float>(gap.Draw(rng)), floor);
      add(s[i]);
    }
  }
  return summary;
}

std::vector<float> RunPlanner::start_samples(int task) const {
  std::vector<float> s(m_);
  const TaskProgress& progress = progress_[task];
  if (Deferred(task) && plans_[task].reason == Reason::kDeferredUpstream) return {};
  if (progress.state == TaskState::kPending) {
    // Drawn again from the same stream: the parents have not been re-sampled since (a re-plan
    // of a task re-samples its descendants).
    Rng rng(StreamSeed(seed_, task, kGapAndDuration));
    PendingStarts(task, sampled_at_[task], rng, s.data());
  } else {
    std::fill(s.begin(), s.end(), static_cast<float>(Rel(progress.started)));
  }
  return s;
}

void RunPlanner::Defer(int v, double now_rel, bool sampled, double earliest) {
  StoredPlan& plan = plans_[v];
  plan = StoredPlan{};
  plan.decision = WarmupDecision::kDeferred;
  plan.confidence = Confidence::kLow;
  plan.earliest_start = static_cast<float>(earliest);
  plan.run_probability = DeferredRunProbability(v, sampled);
  if (!sampled) {
    plan.reason = Reason::kDeferredUpstream;
    plan.warm_until_ns = std::numeric_limits<int64_t>::max();
    plan.expected_start = plan.start_p10 = plan.start_p90 = plan.earliest_start;
    return;
  }
  plan.reason = Reason::kDeferred;
  // Decided once its earliest start is within the margin; at least 1 ns ahead, so that a timer
  // set for it finds it due.
  plan.warm_until_ns = std::max(absl::ToInt64Nanoseconds(absl::Seconds(earliest - defer_margin_)),
                                absl::ToInt64Nanoseconds(absl::Seconds(now_rel)) + 1);
  // Over all its start samples, which Sample() has just drawn and summarised.
  plan.expected_start = starts_summary_->sum / m_;
  SetStartQuantiles(/*some_skip=*/false, *starts_summary_, plan);
}

void RunPlanner::SetStartQuantiles(bool some_skip, const StartSummary& summary, StoredPlan& plan) {
  if (summary.earliest == summary.latest) {
    // One start in every sample (e.g. a run planned from priors alone): nothing to select.
    plan.start_p10 = plan.start_p90 = summary.latest;
    return;
  }
  if (!quantiles_at_once_) {
    plan.quantiles_on_read = true;
    plan.quantiles_over_runs = some_skip;
    return;
  }
  std::span<const float> starts(starts_.data(), static_cast<size_t>(m_));
  if (some_skip) {
    scratch_a_.clear();
    for (int i = 0; i < m_; ++i) {
      if (ran_now_[i]) scratch_a_.push_back(starts[i]);
    }
    starts = scratch_a_;
  }
  const RankPair q = StartRanks(starts, scratch_b_, bucket_counts_);
  plan.start_p10 = q.low;
  plan.start_p90 = q.high;
}

RankPair RunPlanner::StartQuantiles(int v) const {
  std::vector<float> starts = start_samples(v);
  if (plans_[v].quantiles_over_runs) {
    size_t kept = 0;
    for (int i = 0; i < m_; ++i) {
      if (Ran(v, i)) starts[kept++] = starts[i];
    }
    starts.resize(kept);
  }
  std::vector<float> scratch;
  std::vector<uint32_t> counts;
  return StartRanks(starts, scratch, counts);
}

float RunPlanner::DeferredRunProbability(int v, bool sampled) const {
  // It runs where one of its parents ran (or it has none), and then as often as it ran before.
  // Sampled: its parents' run flags say where one ran (exclusive branches joining again run in
  // every sample between them). Deferred behind a parent: that parent has no flags, only its own
  // estimate, and parents count as independent. The task's own share ignores joint outcomes of
  // its siblings: an estimate until it is sampled.
  const std::vector<int>& parents = dag_->parents(v);
  double any_ran = 1;
  if (sampled && !parents.empty()) {
    // A parent that runs in every sample settles it; else count the samples in the union of the
    // parents' run flags, a word at a time (a parent without a row runs in none).
    bool always = false;
    for (int u : parents) always = always || run_count_[u] == m_;
    if (!always) {
      int samples = 0;
      for (int w = 0; w < words_; ++w) {
        uint64_t ran = 0;
        for (int u : parents) {
          if (ran_row_[u] >= 0) ran |= ran_bits_[static_cast<size_t>(ran_row_[u]) * words_ + w];
        }
        samples += std::popcount(ran);
      }
      any_ran = static_cast<double>(samples) / m_;
    }
  } else if (!parents.empty()) {
    double none_ran = 1;
    for (int u : parents) {
      const double share =
          Deferred(u) ? plans_[u].run_probability : static_cast<double>(run_count_[u]) / m_;
      none_ran *= 1 - share;
    }
    any_ran = 1 - none_ran;
  }
  return static_cast<float>(any_ran * std::min(1.0, model_.tasks[v].run_probability));
}

bool RunPlanner::Sample(int v, double now_rel, bool may_defer) {
  sampled_at_[v] = static_cast<float>(now_rel);  // PendingStarts floors at the float anyway.
  starts_summary_.reset();
  float* s = starts_.data();
  uint8_t* r = ran_now_.data();
  const TaskModel& model = model_.tasks[v];
  const TaskProgress& progress = progress_[v];
  if (progress.state == TaskState::kPending && options_.lazy_planning) {
    // A deferred parent's samples are not kept, and it starts no earlier than its earliest start
    // (durations, gaps and cold starts are >= 0): the task waits for it.
    bool upstream_deferred = false;
    double earliest = -std::numeric_limits<double>::infinity();
    for (int u : dag_->parents(v)) {
      if (!Deferred(u)) continue;
      upstream_deferred = true;
      earliest = std::max(earliest, static_cast<double>(plans_[u].earliest_start));
    }
    if (upstream_deferred) {
      Defer(v, now_rel, false, earliest);
      return false;
    }
  }
  // Planned tasks with children keep their finish samples (allocated once, when first needed).
  const auto own_finish = [&] {
    if (finish_[v] == nullptr && !dag_->children(v).empty()) {
      finish_[v] = std::make_unique<float[]>(m_);
    }
    return Finish(v);
  };
  switch (progress.state) {
    case TaskState::kPending: {
      const std::vector<int>& parents = dag_->parents(v);
      Rng rng(StreamSeed(seed_, v, kGapAndDuration));
      starts_summary_ = PendingStarts(v, now_rel, rng, s);
      if (may_defer && options_.lazy_planning) {
        const float earliest = starts_summary_->earliest;
        if (earliest > now_rel + defer_margin_) {
          Defer(v, now_rel, true, earliest);
          return false;
        }
      }
      float* f = own_finish();
      Confidence confidence = Confidence::kHigh;
      for (int u : parents) confidence = Weakest(confidence, finish_confidence_[u]);
      // It may run where it has no parents or one of them ran (run_probability is conditional on
      // that). A parent that runs in every sample settles it without a pass over the flags.
      bool may_always = parents.empty();
      for (int u : parents) may_always = may_always || run_count_[u] == m_;
      const Distribution& duration = *model.duration.distribution;
      const double p_run = model.run_probability;
      bool chosen_jointly = false;
      for (int u : parents) chosen_jointly = chosen_jointly || !ConsistentMasks(u).empty();
      if (chosen_jointly) {
        SampleJointRuns(v, rng);
      } else if (may_always && p_run >= 1) {
        if (duration.constant()) {
          const float d = duration.samples().front();
          rng.Skip(static_cast<uint64_t>(m_));
          for (int i = 0; i < m_; ++i) f[i] = s[i] + d;
        } else {
          for (int i = 0; i < m_; ++i) f[i] = s[i] + static_cast<float>(duration.Draw(rng));
        }
        std::fill(r, r + m_, 1);
        run_count_[v] = m_;
      } else {
        std::fill(r, r + m_, may_always ? 1 : 0);
        if (!may_always) {
          for (int u : parents) {
            for (int i = 0; i < m_; ++i) r[i] |= static_cast<uint8_t>(Ran(u, i));
          }
        }
        int runs = 0;
        for (int i = 0; i < m_; ++i) {
          // Its own draws do not depend on the parents' flags, so every sample keeps its place in
          // the stream whatever happened upstream.
          const bool own = p_run >= 1 || rng.Uniform() < p_run;
          const float d = own ? static_cast<float>(duration.Draw(rng)) : 0.0f;
          r[i] &= static_cast<uint8_t>(own);
          // A task that does not run takes no time; its children follow at once.
          f[i] = s[i] + (r[i] ? d : 0.0f);
          runs += r[i];
        }
        run_count_[v] = runs;
      }
      finish_confidence_[v] = Weakest(confidence, ConfidenceOf(model.duration.source));
      break;
    }
    case TaskState::kRunning: {
      float* f = own_finish();
      // Condition on having run for at least the elapsed time, after waiting for its container
      // (a cold call's run time begins once the container is up).
      Rng rng(StreamSeed(seed_, v, kConditioned));
      Rng cold_rng(StreamSeed(seed_, v, kColdStart));
      const double started = Rel(progress.started);
      const double elapsed = std::max(0.0, now_rel - started);
      const Distribution& duration = *model.duration.distribution;
      const Distribution* cold_start =
          progress.container_wait.has_value() ? nullptr : model.cold_start.distribution.get();
      const double known_wait =
          absl::ToDoubleSeconds(progress.container_wait.value_or(absl::ZeroDuration()));
      std::fill(s, s + m_, static_cast<float>(started));
      if (cold_start == nullptr) {
        // One wait for every sample: the samples that long are found once.
        const double at_least = std::max(0.0, elapsed - known_wait);
        const std::span<const float> tail = duration.AtLeast(at_least);
        for (int i = 0; i < m_; ++i) {
          f[i] = static_cast<float>(started + known_wait +
                                    Distribution::DrawFrom(tail, at_least, rng));
        }
      } else {
        for (int i = 0; i < m_; ++i) {
          const double wait = cold_start->Draw(cold_rng);
          f[i] = static_cast<float>(started + wait +
                                    duration.DrawAtLeast(std::max(0.0, elapsed - wait), rng));
        }
      }
      std::fill(r, r + m_, 1);
      run_count_[v] = m_;
      finish_confidence_[v] = ConfidenceOf(model.duration.source);
      break;
    }
    case TaskState::kSucceeded:
    case TaskState::kFailed:
    case TaskState::kSkipped: {
      float* f = own_finish();
      std::fill(s, s + m_, static_cast<float>(Rel(progress.started)));
      std::fill(f, f + m_, static_cast<float>(Rel(progress.finished)));
      const bool ran = progress.state != TaskState::kSkipped;
      std::fill(r, r + m_, ran ? 1 : 0);
      run_count_[v] = ran ? m_ : 0;
      finish_confidence_[v] = Confidence::kHigh;
      break;
    }
  }
  // Kept as bits: the children's samples read them at every re-plan.
  const int runs = run_count_[v];
  if (ran_row_[v] < 0) {
    if (runs == 0 || runs == m_) return true;  // Ran() answers from run_count_.
    ran_row_[v] = static_cast<int>(ran_bits_.size() / words_);
    ran_bits_.resize(ran_bits_.size() + words_);
  }
  uint64_t* bits = ran_bits_.data() + static_cast<size_t>(ran_row_[v]) * words_;
  std::fill(bits, bits + words_, 0);
  for (int i = 0; i < m_; ++i) bits[i / 64] |= static_cast<uint64_t>(r[i]) << (i % 64);
  return true;
}

Confidence RunPlanner::StartConfidence(int v) const {
  if (progress_[v].state != TaskState::kPending) return Confidence::kHigh;
  Confidence c = Confidence::kHigh;
  for (int u : dag_->parents(v)) c = Weakest(c, finish_confidence_[u]);
  return c;
}

void RunPlanner::Evaluate(int v, double now_rel) {
  const TaskSpec& spec = dag_->task(v);
  const TaskModel& model = model_.tasks[v];
  const TaskProgress& progress = progress_[v];
  StoredPlan& plan = plans_[v];
  plan = StoredPlan{};
  const int runs = run_count_[v];
  sorted_by_optimizer_ = false;

  // Start-time summary: mean and latest here; quantiles once the samples are sorted below. Over
  // the samples in which the task runs (when it starts if it runs), or all when it runs in none.
  const float* s = starts_.data();
  const uint8_t* r = ran_now_.data();
  const bool some_skip = runs > 0 && runs < m_;
  StartSummary summary;
  if (!some_skip && starts_summary_.has_value()) {
    summary = *starts_summary_;  // Over all samples, found by Sample().
  } else {
    for (int i = 0; i < m_; ++i) {
      if (some_skip && !r[i]) continue;
      summary.earliest = std::min(summary.earliest, s[i]);
      summary.latest = std::max(summary.latest, s[i]);
      summary.sum += s[i];
    }
  }
  const float latest = summary.latest;
  plan.expected_start = summary.sum / (some_skip ? runs : m_);
  const bool starts_now = latest <= now_rel + kTooLateSlack;
  Confidence confidence = StartConfidence(v);
  if (model.cold_start.distribution != nullptr) {
    confidence = Weakest(confidence, ConfidenceOf(model.cold_start.source));
  }
  plan.confidence = confidence;

  if (progress.state != TaskState::kPending) {
    plan.decision = WarmupDecision::kSkipStarted;
    plan.reason = Reason::kStarted;
  } else if (spec.service.empty()) {
    plan.decision = WarmupDecision::kSkipNoService;
    plan.reason = Reason::kNoService;
  } else if (!model.service.warmable) {
    plan.decision = WarmupDecision::kSkipNoService;
    plan.reason = Reason::kNotRegistered;
  } else {
    EvaluateWarmup(v, now_rel, starts_now, plan);
  }

  // The optimizer sorted every start already when no running sample was warm anyway; else sort
  // here.
  if (!sorted_by_optimizer_) {
    SetStartQuantiles(some_skip, summary, plan);
    return;
  }
  const std::span<const float> sorted = optimizer_.sorted_starts();
  plan.start_p10 = sorted[static_cast<size_t>(0.1 * (sorted.size() - 1))];
  plan.start_p90 = sorted[static_cast<size_t>(0.9 * (sorted.size() - 1))];
}

void RunPlanner::EvaluateWarmup(int v, double now_rel, bool starts_now, StoredPlan& plan) {
  const TaskModel& model = model_.tasks[v];
  const float* s = starts_.data();
  const double keep_alive = std::max(0.0, absl::ToDoubleSeconds(model.service.keep_alive));
  const double warm_until = model.service.warm_until == absl::InfinitePast()
                                ? -std::numeric_limits<double>::infinity()
                                : Rel(model.service.warm_until);
  const Distribution& cold_start = *model.cold_start.distribution;
  // Its parents that call the same service leave it warm. Found here rather than kept: a plan is
  // held by every active run, and this costs a string comparison per parent.
  std::vector<int>& warm_parents = warm_parents_;
  warm_parents.clear();
  for (int u : dag_->parents(v)) {
    if (dag_->task(u).service == dag_->task(v).service) warm_parents.push_back(u);
  }
  const uint8_t* r = ran_now_.data();
  const int runs = run_count_[v];

  needs_warmup_.assign(m_, 0);
  if (runs == 0) {
    plan.decision = WarmupDecision::kSkipUnlikely;
    bool parent_runs = dag_->parents(v).empty();
    for (int u : dag_->parents(v)) parent_runs = parent_runs || run_count_[u] > 0;
    plan.reason = parent_runs ? Reason::kRunsInNone : Reason::kBranchSkipped;
    return;
  }

  // Samples in which the task runs and its service is cold when it starts: (latest firing time,
  // cold start). A warm-up matters in those only.
  Rng rng(StreamSeed(seed_, v, kColdStart));
  scratch_a_.resize(m_);
  scratch_b_.resize(m_);
  cold_draws_.resize(m_);
  int need = 0;
  int warm_by_other_run = 0;
  for (int i = 0; i < m_; ++i) {
    // Drawn in every sample, so that each keeps its draw whichever samples run.
    const double c = cold_start.Draw(rng);
    cold_draws_[i] = static_cast<float>(c);
    if (!r[i]) continue;
    if (s[i] <= warm_until) {
      ++warm_by_other_run;
      continue;
    }
    bool warm_by_parent = false;
    for (int u : warm_parents) {
      // A parent that did not run in this sample warmed nothing.
      if (Ran(u, i) && (keep_alive <= 0 || s[i] - Finish(u)[i] <= keep_alive)) {
        warm_by_parent = true;
        break;
      }
    }
    if (warm_by_parent) continue;
    needs_warmup_[i] = 1;
    scratch_a_[need] = static_cast<float>(s[i] - c);
    scratch_b_[need] = static_cast<float>(c);
    ++need;
  }
  scratch_a_.resize(need);
  scratch_b_.resize(need);

  if (scratch_a_.empty()) {
    plan.decision = WarmupDecision::kSkipAlreadyWarm;
    if (warm_by_other_run == runs) {
      plan.reason = Reason::kWarmUntil;
      plan.warm_until_ns = absl::ToInt64Nanoseconds(model.service.warm_until - start_);
    } else {
      plan.reason = Reason::kUpstreamWarm;
    }
    return;
  }

  if (starts_now) {
    plan.decision = WarmupDecision::kSkipTooLate;
    plan.reason = Reason::kStartsNow;
    plan.delay_is_cold_start = true;
    AddColdStartDelays(v, std::numeric_limits<double>::infinity(), keep_alive);
    return;
  }

  const double alpha = options_.delay_cost_ratio;
  // Refreshed warm-ups outlive the keep-alive: no cliff (0 means never reclaimed).
  const double cliff = options_.refresh_warmups ? 0 : keep_alive;
  // One request per container: a late warm-up's container also leaves a spare that idles K.
  const double late_idle = model.service.container_concurrency == 1 ? keep_alive : 0;
  // Priced over the samples in which the task runs; p weighs that against a skip.
  const WarmupChoice choice =
      optimizer_.Choose(scratch_a_, scratch_b_, runs, cliff, now_rel, alpha, 1.0, late_idle);
  sorted_by_optimizer_ = static_cast<int>(scratch_a_.size()) == runs;
  const double p = static_cast<double>(runs) / m_;
  // A skipped task leaves a fired warm-up idle until the container is reclaimed: keep_alive
  // after it was fired (or last refreshed, about when the task was due).
  const double until_due =
      std::max(0.0, absl::ToDoubleSeconds(Abs(plan.expected_start) - start_) - choice.fire_at);
  const double wasted_if_skipped = keep_alive <= 0            ? until_due
                                   : options_.refresh_warmups ? until_due + keep_alive
                                                              : keep_alive;
  const double cost_warm = p * choice.expected_cost + (1 - p) * wasted_if_skipped;
  const double cost_none = p * choice.cost_without;

  if (!choice.warm || cost_warm >= cost_none) {
    plan.expected_delay = p * choice.cost_without / alpha;
    AddColdStartDelays(v, std::numeric_limits<double>::infinity(), keep_alive);
    if (choice.warm && p < 1) {
      plan.decision = WarmupDecision::kSkipUnlikely;
      plan.reason = Reason::kUnlikely;
    } else {
      plan.decision = WarmupDecision::kSkipNotWorth;
      plan.reason = Reason::kNotWorth;
    }
    return;
  }

  plan.decision = WarmupDecision::kWarm;
  plan.warmup_time = choice.fire_at;
  AddColdStartDelays(v, choice.fire_at, cliff);
  plan.expected_delay = p * choice.expected_delay;
  plan.expected_idle = p * choice.expected_idle + (1 - p) * wasted_if_skipped;
  plan.reason = choice.fire_at <= now_rel ? Reason::kDeadlinePassed : Reason::kFires;
  plan.late_samples = choice.late_samples;
}

absl::Duration RunPlanner::ExpectedColdStart(int v) const {
  const Distribution* cold_start = model_.tasks[v].cold_start.distribution.get();
  return cold_start == nullptr ? absl::ZeroDuration() : absl::Seconds(cold_start->Mean());
}

TaskPlan RunPlanner::plan(int task) const {
  const StoredPlan& stored = plans_[task];
  const TaskProgress& progress = progress_[task];
  const TaskSpec& spec = dag_->task(task);
  TaskPlan plan;
  plan.decision = stored.decision;
  plan.warmup_time =
      stored.decision == WarmupDecision::kWarm ? Abs(stored.warmup_time) : absl::InfiniteFuture();
  plan.expected_start = expected_start(task);
  if (stored.quantiles_on_read) {
    const RankPair q = StartQuantiles(task);
    plan.start_p10 = Abs(q.low);
    plan.start_p90 = Abs(q.high);
  } else {
    plan.start_p10 = Abs(stored.start_p10);
    plan.start_p90 = Abs(stored.start_p90);
  }
  plan.expected_cold_start = ExpectedColdStart(task);
  plan.expected_delay =
      stored.delay_is_cold_start ? plan.expected_cold_start : absl::Seconds(stored.expected_delay);
  plan.expected_idle = absl::Seconds(stored.expected_idle);
  plan.confidence = stored.confidence;
  plan.run_probability = stored.decision == WarmupDecision::kDeferred
                             ? static_cast<double>(stored.run_probability)
                             : static_cast<double>(run_count_[task]) / m_;
  const double cold = absl::ToDoubleSeconds(plan.expected_cold_start);
  switch (stored.reason) {
    case Reason::kStarted:
      plan.reason = absl::StrCat("task is ", TaskStateName(progress.state));
      break;
    case Reason::kNoService:
      plan.reason = "task calls no service";
      break;
    case Reason::kNotRegistered:
      plan.reason = absl::StrCat("service '", spec.service, "' is not registered for warm-ups");
      break;
    case Reason::kRunsInNone:
      plan.reason = absl::StrFormat("runs in none of %d sampled runs", m_);
      break;
    case Reason::kBranchSkipped:
      plan.reason = "no upstream task runs: its branch is skipped";
      break;
    case Reason::kWarmUntil:
      plan.reason = absl::StrCat(
          "service is warm until ",
          absl::FormatTime("%H:%M:%E3S", start_ + absl::Nanoseconds(stored.warm_until_ns),
                           absl::UTCTimeZone()),
          " (another warm-up or call)");
      break;
    case Reason::kUpstreamWarm:
      plan.reason = "an upstream task on the same service leaves it warm";
      break;
    case Reason::kStartsNow:
      plan.reason = absl::StrFormat(
          "starts now: too late to hide its %.2fs cold start (submit the run before it starts to "
          "warm it)",
          cold);
      break;
    case Reason::kUnlikely:
      plan.reason = absl::StrFormat(
          "runs in %.0f%% of runs; a warm-up would idle more than the %.2fs it hides",
          100 * plan.run_probability, cold);
      break;
    case Reason::kNotWorth:
      plan.reason = absl::StrFormat(
          "a warm-up would cost more idle time than the delay it hides at delay_cost_ratio %g",
          options_.delay_cost_ratio);
      break;
    case Reason::kDeferred:
      plan.reason = absl::StrFormat(
          "decided at %s, when its earliest start (%s) is within %.1fs (planning horizon + cold "
          "start)",
          absl::FormatTime("%H:%M:%E3S", start_ + absl::Nanoseconds(stored.warm_until_ns),
                           absl::UTCTimeZone()),
          absl::FormatTime("%H:%M:%E3S", Abs(stored.earliest_start), absl::UTCTimeZone()),
          defer_margin_);
      break;
    case Reason::kDeferredUpstream: {
      std::string upstream;
      for (int u : dag_->parents(task)) {
        if (Deferred(u)) {
          upstream = dag_->task(u).task_id;
          break;
        }
      }
      plan.reason = absl::StrCat(
          "decided after upstream task '", upstream, "' (deferred): starts after ",
          absl::FormatTime("%H:%M:%E3S", Abs(stored.earliest_start), absl::UTCTimeZone()));
      break;
    }
    case Reason::kDeadlinePassed:
    case Reason::kFires: {
      const double lead = absl::ToDoubleSeconds(plan.expected_start - plan.warmup_time);
      plan.reason =
          stored.reason == Reason::kDeadlinePassed
              ? absl::StrFormat(
                    "deadline passed: fires now, %.2fs before the expected start (cold start "
                    "%.2fs)",
                    lead, cold)
              : absl::StrFormat(
                    "fires %.2fs before the expected start (cold start %.2fs); %.0f%% chance the "
                    "task waits",
                    lead, cold,
                    // As WarmupChoice::late_probability computes it, for the same digits.
                    100 * (stored.late_samples * (1.0 / run_count_[task])));
      break;
    }
  }
  return plan;
}

void RunPlanner::AddColdStartDelays(int v, double fire_at, double keep_alive) {
  // The task's own cold start (or the part a late warm-up leaves) delays its finish, and so its
  // descendants: a cold root runs C longer than its warm history says.
  const float* s = starts_.data();
  float* f = Finish(v);
  // Without branches on the samples (they are unpredictable): the task waits the part of the
  // cold start the warm-up leaves, min((w - x)+, C); all of C with no warm-up (w infinite) or
  // one reclaimed before use.
  const bool reclaims = keep_alive > 0;
  for (int i = 0; i < m_; ++i) {
    const double c = cold_draws_[i];
    const double x = s[i] - c;
    const double lead = x - fire_at;
    double delay = std::min(std::max(-lead, 0.0), c);
    delay = reclaims && lead > keep_alive ? c : delay;
    f[i] += needs_warmup_[i] ? static_cast<float>(delay) : 0.0f;
  }
}

}  // namespace prewarm
