#include "predictor/planner.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "predictor/branch_outcomes.h"
#include "predictor/random.h"
#include "tests/fakes/fake_clock.h"

namespace prewarm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::Duration kTolerance = absl::Milliseconds(1);

TaskSpec T(std::string id, std::vector<std::string> up = {}, std::string service = "") {
  if (service.empty()) service = "svc-" + id;
  return TaskSpec{std::move(id), std::move(service), std::move(up)};
}

#define EXPECT_TIME_NEAR(actual, expected, tolerance)              \
  EXPECT_LE(absl::AbsDuration((actual) - (expected)), (tolerance)) \
      << "actual " << absl::FormatTime(actual) << " expected " << absl::FormatTime(expected)

// Builds plans from a history and a set of registered services, on a fake clock.
class PlannerTest : public ::testing::Test {
 protected:
  // Every service is warmable with this keep-alive unless registered otherwise.
  absl::Duration keep_alive_ = absl::Seconds(60);
  absl::flat_hash_map<std::string, ServiceInfo> services_;
  History history_;
  FakeClock clock_{absl::FromUnixSeconds(1'800'000'000)};
  const absl::Time t0_ = clock_.Now();
  PlannerOptions options_;
  bool quantiles_at_once_ = false;  // RunPlanner::set_start_quantiles_at_once of Plan()'s planners

  // `n` identical observations make a deterministic duration.
  void Learn(absl::string_view task, absl::string_view service, double seconds, int n = 5) {
    for (int i = 0; i < n; ++i) {
      history_.AddTaskDuration("wf", task, service, absl::Seconds(seconds));
    }
  }
  void LearnColdStart(absl::string_view service, double seconds, int n = 5) {
    for (int i = 0; i < n; ++i) history_.AddColdStart(service, absl::Seconds(seconds));
  }
  // P(run) = (ran + 1) / (ran + skipped + 1): RunRecord counts one imaginary run.
  void LearnRuns(absl::string_view task, int ran, int skipped) {
    for (int i = 0; i < ran; ++i) history_.AddTaskRun("wf", task, true);
    for (int i = 0; i < skipped; ++i) history_.AddTaskRun("wf", task, false);
  }

  std::unique_ptr<RunPlanner> Plan(std::vector<TaskSpec> tasks, absl::Time start,
                                   absl::string_view run_id = "run-1") {
    absl::StatusOr<Dag> dag = Dag::Build(std::move(tasks));
    EXPECT_TRUE(dag.ok()) << dag.status();
    auto shared = std::make_shared<const Dag>(*std::move(dag));
    ServiceLookup lookup = [this](absl::string_view name) {
      auto it = services_.find(name);
      if (it != services_.end()) return it->second;
      return ServiceInfo{.warmable = true, .keep_alive = keep_alive_};
    };
    auto planner =
        std::make_unique<RunPlanner>(shared, BuildRunModel(*shared, "wf", history_, lookup), start,
                                     SeedFromString(run_id), options_);
    planner->set_start_quantiles_at_once(quantiles_at_once_);
    planner->PlanAll(clock_.Now());
    return planner;
  }

  // Decides the deferred tasks at the times they ask for (as the server's timer does).
  static void DecideDeferred(RunPlanner& p) {
    for (absl::Time t = p.NextDeferredPlan(); t != absl::InfiniteFuture();
         t = p.NextDeferredPlan()) {
      p.PlanDeferred(t);
    }
  }

  static TaskPlan PlanOf(const RunPlanner& p, absl::string_view task) {
    return p.plan(*p.dag().Find(task));
  }
  static int Index(const RunPlanner& p, absl::string_view task) { return *p.dag().Find(task); }

  // The service is known warm for the next hour (another run keeps it warm).
  void KeepWarm(const std::string& service) {
    services_[service] = ServiceInfo{
        .warmable = true, .keep_alive = keep_alive_, .warm_until = t0_ + absl::Hours(1)};
  }

  // The seed paper's workflow: three tasks in a chain, 3 s, 7 s and 5 s, 1 s cold starts.
  std::vector<TaskSpec> SeedChain() {
    Learn("task1", "svc-task1", 3);
    Learn("task2", "svc-task2", 7);
    Learn("task3", "svc-task3", 5);
    for (const char* s : {"svc-task1", "svc-task2", "svc-task3"}) LearnColdStart(s, 1);
    return {T("task1"), T("task2", {"task1"}), T("task3", {"task2"})};
  }
};

TEST_F(PlannerTest, DeterministicChainWarmsExactlyColdStartBeforeEachStart) {
  KeepWarm("svc-task1");  // task1 starts warm, so task2 starts right after its 3 s.
  auto p = Plan(SeedChain(), t0_);
  // S = t0 + 3 and t0 + 10; deadlines S - C.
  EXPECT_TIME_NEAR(PlanOf(*p, "task2").expected_start, t0_ + absl::Seconds(3), kTolerance);
  EXPECT_TIME_NEAR(PlanOf(*p, "task3").expected_start, t0_ + absl::Seconds(10), kTolerance);
  EXPECT_EQ(PlanOf(*p, "task2").decision, WarmupDecision::kWarm);
  EXPECT_TIME_NEAR(PlanOf(*p, "task2").warmup_time, t0_ + absl::Seconds(2), kTolerance);
  EXPECT_TIME_NEAR(PlanOf(*p, "task3").warmup_time, t0_ + absl::Seconds(9), kTolerance);
  EXPECT_EQ(PlanOf(*p, "task2").expected_delay, absl::ZeroDuration());
  EXPECT_EQ(PlanOf(*p, "task3").expected_idle, absl::ZeroDuration());
  EXPECT_EQ(PlanOf(*p, "task2").confidence, Confidence::kHigh);
  EXPECT_EQ(PlanOf(*p, "task1").decision, WarmupDecision::kSkipAlreadyWarm);
}

TEST_F(PlannerTest, ColdRootDelaysItsDescendantsByItsColdStart) {
  auto p = Plan(SeedChain(), t0_);
  // The first task of a run that starts now cannot be warmed (the seed paper's limit too)...
  EXPECT_EQ(PlanOf(*p, "task1").decision, WarmupDecision::kSkipTooLate);
  EXPECT_THAT(PlanOf(*p, "task1").reason, HasSubstr("too late"));
  EXPECT_EQ(PlanOf(*p, "task1").expected_delay, absl::Seconds(1));
  // ...and its cold start pushes everything after it: task2 starts at 1 + 3 s.
  EXPECT_TIME_NEAR(PlanOf(*p, "task2").expected_start, t0_ + absl::Seconds(4), kTolerance);
  EXPECT_TIME_NEAR(PlanOf(*p, "task2").warmup_time, t0_ + absl::Seconds(3), kTolerance);
  EXPECT_TIME_NEAR(PlanOf(*p, "task3").warmup_time, t0_ + absl::Seconds(10), kTolerance);
}

// The seed experiment submitted ahead of its start (as a scheduler knows a scheduled run): every
// task is warmed, the first before the start.
TEST_F(PlannerTest, SeedChainWithJitterWarmsAboutTwoAndNineSecondsAfterStart) {
  // Observed durations jitter by +-50 ms around 3, 7 and 5 s; cold starts 0.9-1.1 s.
  Rng rng(11);
  for (int i = 0; i < 20; ++i) {
    history_.AddTaskDuration("wf", "task1", "svc-task1", absl::Seconds(2.95 + 0.1 * rng.Uniform()));
    history_.AddTaskDuration("wf", "task2", "svc-task2", absl::Seconds(6.95 + 0.1 * rng.Uniform()));
    history_.AddTaskDuration("wf", "task3", "svc-task3", absl::Seconds(4.95 + 0.1 * rng.Uniform()));
    for (const char* s : {"svc-task1", "svc-task2", "svc-task3"}) {
      history_.AddColdStart(s, absl::Seconds(0.9 + 0.2 * rng.Uniform()));
    }
  }
  const absl::Time start = t0_ + absl::Seconds(30);
  auto p = Plan({T("task1"), T("task2", {"task1"}), T("task3", {"task2"})}, start);
  EXPECT_EQ(PlanOf(*p, "task1").decision, WarmupDecision::kWarm);
  EXPECT_TIME_NEAR(PlanOf(*p, "task1").warmup_time, start - absl::Seconds(1),
                   absl::Milliseconds(150));
  EXPECT_TIME_NEAR(PlanOf(*p, "task2").warmup_time, start + absl::Seconds(2),
                   absl::Milliseconds(200));
  EXPECT_TIME_NEAR(PlanOf(*p, "task3").warmup_time, start + absl::Seconds(9),
                   absl::Milliseconds(250));
  // Just in time, leaning early: at most a small chance of waiting.
  EXPECT_LT(PlanOf(*p, "task2").expected_delay, absl::Milliseconds(20));
  EXPECT_LT(PlanOf(*p, "task2").expected_idle, absl::Milliseconds(300));
}

TEST_F(PlannerTest, ScheduledRunWarmsItsRootsBeforeTheStart) {
  LearnColdStart("svc-a", 1.5);
  Learn("a", "svc-a", 4);
  auto p = Plan({T("a"), T("b", {"a"})}, t0_ + absl::Minutes(5));
  EXPECT_EQ(PlanOf(*p, "a").decision, WarmupDecision::kDeferred);  // 5 minutes ahead
  DecideDeferred(*p);
  EXPECT_EQ(PlanOf(*p, "a").decision, WarmupDecision::kWarm);
  EXPECT_TIME_NEAR(PlanOf(*p, "a").warmup_time, t0_ + absl::Minutes(5) - absl::Seconds(1.5),
                   kTolerance);
}

TEST_F(PlannerTest, LongUpstreamIsNotWarmedBeforeStartMinusColdStartMinusKeepAlive) {
  // b starts 10 minutes after the run; its container lives 60 s idle. Eager pre-warming (at t0)
  // would see it reclaimed before use.
  Learn("a", "", 600);
  LearnColdStart("svc-b", 1);
  auto p = Plan({TaskSpec{"a", "", {}}, T("b", {"a"})}, t0_);
  DecideDeferred(*p);
  const TaskPlan& b = PlanOf(*p, "b");
  ASSERT_EQ(b.decision, WarmupDecision::kWarm);
  EXPECT_GE(b.warmup_time, b.expected_start - absl::Seconds(1) - absl::Seconds(60));
  EXPECT_TIME_NEAR(b.warmup_time, t0_ + absl::Seconds(599), kTolerance);
}

TEST_F(PlannerTest, UncertainLongUpstreamStillRespectsTheKeepAlive) {
  // a lasts 500-700 s: no single warm-up covers every outcome, and warming early risks a reclaim.
  Rng rng(5);
  for (int i = 0; i < 128; ++i) {
    history_.AddTaskDuration("wf", "a", "svc-a", absl::Seconds(500 + 200 * rng.Uniform()));
  }
  LearnColdStart("svc-b", 1);
  // At a/b = 20 (the default before issue 13) a minute of idle outweighs the rare late sample;
  // at higher ratios firing earlier is the cheaper choice (refreshes keep the container).
  options_.delay_cost_ratio = 20;
  auto p = Plan({T("a"), T("b", {"a"})}, t0_);
  DecideDeferred(*p);
  const TaskPlan& b = PlanOf(*p, "b");
  ASSERT_EQ(b.decision, WarmupDecision::kWarm);
  EXPECT_GE(b.warmup_time, b.expected_start - absl::Seconds(1) - absl::Seconds(60));
  EXPECT_GE(b.warmup_time, t0_ + absl::Seconds(499));
}

TEST_F(PlannerTest, FanInStartsAfterItsSlowestParent) {
  Learn("a", "", 3);
  Learn("b", "", 7);
  LearnColdStart("svc-c", 2);
  auto p = Plan({TaskSpec{"a", "", {}}, TaskSpec{"b", "", {}}, T("c", {"a", "b"})}, t0_);
  EXPECT_TIME_NEAR(PlanOf(*p, "c").expected_start, t0_ + absl::Seconds(7), kTolerance);
  EXPECT_TIME_NEAR(PlanOf(*p, "c").warmup_time, t0_ + absl::Seconds(5), kTolerance);
}

TEST_F(PlannerTest, FanInOfRandomParentsIsTheMaxInEverySample) {
  // Parents uniform on {1..10} s each: E[max] = 10 - (0+1+4+...+81)/100 = 7.15.
  for (int d = 1; d <= 10; ++d) {
    history_.AddTaskDuration("wf", "a", "", absl::Seconds(d));
    history_.AddTaskDuration("wf", "b", "", absl::Seconds(d));
  }
  options_.sample_count = 4096;
  auto p = Plan({TaskSpec{"a", "", {}}, TaskSpec{"b", "", {}}, T("c", {"a", "b"})}, t0_);
  EXPECT_TIME_NEAR(PlanOf(*p, "c").expected_start, t0_ + absl::Seconds(7.15),
                   absl::Milliseconds(150));
}

TEST_F(PlannerTest, DispatchGapDelaysDownstreamStarts) {
  Learn("a", "", 3);
  for (int i = 0; i < 5; ++i) history_.AddDispatchGap("wf", absl::Seconds(2));
  auto p = Plan({TaskSpec{"a", "", {}}, T("b", {"a"})}, t0_);
  EXPECT_TIME_NEAR(PlanOf(*p, "b").expected_start, t0_ + absl::Seconds(5), kTolerance);
}

TEST_F(PlannerTest, FinishedUpstreamMovesItsDescendantsOnly) {
  // a -> b -> c, and an independent d.
  std::vector<TaskSpec> tasks = SeedChain();
  tasks.push_back(T("d"));
  // Warm services, so that only the reported durations move the starts.
  KeepWarm("svc-task1");
  KeepWarm("svc-task2");
  Learn("d", "svc-d", 100);
  auto p = Plan(tasks, t0_);
  const TaskPlan d_before = PlanOf(*p, "d");
  EXPECT_TIME_NEAR(PlanOf(*p, "task3").warmup_time, t0_ + absl::Seconds(9), kTolerance);

  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(p->Started(Index(*p, "task1"), t0_, clock_.Now()).ok());
  absl::StatusOr<std::vector<int>> touched =
      p->Finished(Index(*p, "task1"), t0_ + absl::Seconds(5), clock_.Now());
  ASSERT_TRUE(touched.ok()) << touched.status();
  std::vector<std::string> names;
  for (int v : *touched) names.push_back(p->dag().task(v).task_id);
  EXPECT_THAT(names, ElementsAre("task1", "task2", "task3"));

  // task1 ran 2 s longer than learned: task3 starts at 5 + 7 = 12, warm at 11.
  EXPECT_TIME_NEAR(PlanOf(*p, "task3").expected_start, t0_ + absl::Seconds(12), kTolerance);
  EXPECT_TIME_NEAR(PlanOf(*p, "task3").warmup_time, t0_ + absl::Seconds(11), kTolerance);
  EXPECT_EQ(PlanOf(*p, "d").warmup_time, d_before.warmup_time);
  EXPECT_EQ(PlanOf(*p, "task1").decision, WarmupDecision::kSkipStarted);
}

TEST_F(PlannerTest, AnEventReplansEachDescendantOnceInTopologicalOrder) {
  // r -> x -> z, r -> y -> z (a diamond), y -> t; w and v independent, listed in between.
  auto p = Plan(
      {T("w"), T("r"), T("x", {"r"}), T("v"), T("y", {"r"}), T("z", {"x", "y"}), T("t", {"y"})},
      t0_);
  absl::StatusOr<std::vector<int>> touched =
      p->Started(Index(*p, "r"), t0_, clock_.Now(), absl::ZeroDuration());
  ASSERT_TRUE(touched.ok()) << touched.status();
  std::vector<int> expected = {Index(*p, "r"), Index(*p, "x"), Index(*p, "y"), Index(*p, "z"),
                               Index(*p, "t")};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(*touched, expected);

  // From the middle: y's descendants only.
  touched = p->Started(Index(*p, "y"), t0_, clock_.Now(), absl::ZeroDuration());
  ASSERT_TRUE(touched.ok()) << touched.status();
  expected = {Index(*p, "y"), Index(*p, "z"), Index(*p, "t")};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(*touched, expected);
}

TEST_F(PlannerTest, StartQuantilesOfOneStartInEverySampleAndOfSpreadStarts) {
  // From priors alone (no history) every sample of b starts at the same time: p10 = p90.
  auto p = Plan({T("a"), T("b", {"a"})}, t0_);
  const TaskPlan fixed = PlanOf(*p, "b");
  EXPECT_EQ(fixed.start_p10, fixed.start_p90);
  EXPECT_TIME_NEAR(fixed.start_p10, fixed.expected_start, kTolerance);
  // Learned durations 1..10 s: spread starts, sorted for their quantiles.
  for (int i = 1; i <= 10; ++i) history_.AddTaskDuration("wf", "a", "", absl::Seconds(i));
  p = Plan({T("a"), T("b", {"a"})}, t0_);
  const TaskPlan spread = PlanOf(*p, "b");
  EXPECT_LT(spread.start_p10, spread.start_p90);
  EXPECT_LE(spread.start_p10, t0_ + absl::Seconds(3));
  EXPECT_GE(spread.start_p90, t0_ + absl::Seconds(8));
}

// Start quantiles are found when a plan is read, from the task's start samples drawn again, unless
// found at once (set_start_quantiles_at_once): either way they must be those of the samples the
// task was planned with (those in which it runs), whatever happened since to tasks it does not
// start after, and however late the plan is read.
TEST_F(PlannerTest, StartQuantilesReadLaterAreThoseOfTheSamplesTheTaskWasPlannedWith) {
  for (int i = 1; i <= 10; ++i) {
    history_.AddTaskDuration("wf", "a", "svc-a", absl::Seconds(i));
    history_.AddTaskDuration("wf", "x", "svc-x", absl::Seconds(2 * i));
  }
  Learn("b", "svc-b", 100);
  LearnRuns("b", 2, 7);  // b, and so c, run in about 30% of the samples.
  options_.sample_count = 1024;
  // Not warmable: no warm-up optimizer, whose sorted starts would give the quantiles at once.
  for (const char* s : {"svc-a", "svc-b", "svc-c", "svc-x", "svc-y"}) {
    services_[s] = ServiceInfo{.warmable = false};
  }
  const std::vector<TaskSpec> tasks = {T("a"), T("b", {"a"}), T("c", {"b"}), T("x"), T("y", {"x"})};
  auto p = Plan(tasks, t0_);
  quantiles_at_once_ = true;
  auto at_once = Plan(tasks, t0_);
  const auto quantiles = [&p](absl::string_view task) {
    const TaskPlan plan = PlanOf(*p, task);
    return std::make_pair(plan.start_p10, plan.start_p90);
  };
  const auto expect_same_as_at_once = [&] {
    for (const TaskSpec& t : tasks) {
      const TaskPlan found = PlanOf(*at_once, t.task_id);
      EXPECT_EQ(quantiles(t.task_id), std::make_pair(found.start_p10, found.start_p90))
          << t.task_id;
    }
  };
  // The 10th and 90th percentile ranks of a task's starts above `above` seconds.
  const auto ranks = [&](absl::string_view task, float above) {
    std::vector<float> s;
    for (float start : p->start_samples(Index(*p, task))) {
      if (start > above) s.push_back(start);
    }
    std::sort(s.begin(), s.end());
    const size_t last = s.size() - 1;
    return std::make_pair(p->start() + absl::Seconds(s[static_cast<size_t>(0.1 * last)]),
                          p->start() + absl::Seconds(s[static_cast<size_t>(0.9 * last)]));
  };
  // y runs in every sample; c where b ran, and then starts after b's 100 s (else at a's finish,
  // within 12 s).
  EXPECT_EQ(quantiles("y"), ranks("y", -1));
  const auto c = quantiles("c");
  EXPECT_EQ(c, ranks("c", 50));
  const auto b = quantiles("b");  // a's finish, 1 to 10 s, in the ~30% of samples b runs in
  EXPECT_LT(b.first, t0_ + absl::Seconds(4));
  EXPECT_GT(b.second, t0_ + absl::Seconds(7));
  expect_same_as_at_once();

  // Later, past many of b's sampled starts: x's events re-plan x and y only.
  clock_.Advance(absl::Seconds(6));
  for (RunPlanner* planner : {p.get(), at_once.get()}) {
    ASSERT_TRUE(planner->Started(Index(*p, "x"), t0_, clock_.Now(), absl::ZeroDuration()).ok());
    ASSERT_TRUE(planner->Finished(Index(*p, "x"), clock_.Now(), clock_.Now()).ok());
  }
  EXPECT_EQ(quantiles("b"), b);
  EXPECT_EQ(quantiles("c"), c);
  // y now starts at x's finish in every sample (its gap is the prior's, one value).
  EXPECT_EQ(quantiles("y").first, quantiles("y").second);
  expect_same_as_at_once();

  // a's finish re-plans b and c as of now: b starts now in every sample.
  for (RunPlanner* planner : {p.get(), at_once.get()}) {
    ASSERT_TRUE(planner->Finished(Index(*p, "a"), clock_.Now(), clock_.Now()).ok());
  }
  EXPECT_EQ(quantiles("b").first, quantiles("b").second);
  expect_same_as_at_once();
}

TEST_F(PlannerTest, EarlyFinishMovesDeadlinesEarlier) {
  KeepWarm("svc-task1");
  KeepWarm("svc-task2");
  auto p = Plan(SeedChain(), t0_);
  clock_.Advance(absl::Seconds(2));
  ASSERT_TRUE(p->Finished(Index(*p, "task1"), clock_.Now(), clock_.Now()).ok());
  EXPECT_TIME_NEAR(PlanOf(*p, "task3").warmup_time, t0_ + absl::Seconds(8), kTolerance);
}

TEST_F(PlannerTest, RunningTaskIsConditionedOnItsElapsedTime) {
  // a took 2, 3, 4 or 10 s before. Still running after 5 s: it is a 10 s run.
  for (double d : {2.0, 3.0, 4.0, 10.0})
    history_.AddTaskDuration("wf", "a", "svc-a", absl::Seconds(d));
  LearnColdStart("svc-b", 1);
  auto p = Plan({T("a"), T("b", {"a"})}, t0_);
  EXPECT_LT(PlanOf(*p, "b").warmup_time, t0_ + absl::Seconds(5));
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(p->Started(Index(*p, "a"), t0_, clock_.Now()).ok());
  EXPECT_TIME_NEAR(PlanOf(*p, "b").expected_start, t0_ + absl::Seconds(10), kTolerance);
  EXPECT_TIME_NEAR(PlanOf(*p, "b").warmup_time, t0_ + absl::Seconds(9), kTolerance);
}

TEST_F(PlannerTest, LateStartShiftsDescendantsAndPassedDeadlinesFireNow) {
  auto p = Plan(SeedChain(), t0_);
  // task1 starts 4 s late; at that moment task2's original deadline (t0 + 2) has passed, and its
  // new one is t0 + 4 + 3 - 1 = t0 + 6.
  clock_.Advance(absl::Seconds(4));
  ASSERT_TRUE(p->Started(Index(*p, "task1"), clock_.Now(), clock_.Now()).ok());
  EXPECT_TIME_NEAR(PlanOf(*p, "task2").warmup_time, t0_ + absl::Seconds(6), kTolerance);
  // A finish far later than predicted leaves task2's deadline in the past: fire at once.
  clock_.Advance(absl::Seconds(10));
  ASSERT_TRUE(p->Started(Index(*p, "task1"), t0_ + absl::Seconds(4), clock_.Now()).ok());
  const TaskPlan& task2 = PlanOf(*p, "task2");
  // Still running after 10 s although it always took 3 s: its end is "now" in every sample.
  EXPECT_EQ(task2.decision, WarmupDecision::kSkipTooLate);
}

TEST_F(PlannerTest, SkippedTaskCancelsItsWarmupAndReleasesChildren) {
  auto p = Plan(SeedChain(), t0_);
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(p->Finished(Index(*p, "task1"), clock_.Now(), clock_.Now()).ok());
  ASSERT_TRUE(p->Skipped(Index(*p, "task2"), clock_.Now(), clock_.Now()).ok());
  EXPECT_EQ(PlanOf(*p, "task2").decision, WarmupDecision::kSkipStarted);
  EXPECT_THAT(PlanOf(*p, "task2").reason, HasSubstr("skipped"));
  EXPECT_EQ(p->progress(Index(*p, "task2")).state, TaskState::kSkipped);
  // task3 would follow the skip at once, but runs only after task2: in no sample now.
  EXPECT_TIME_NEAR(PlanOf(*p, "task3").expected_start, clock_.Now(), kTolerance);
  EXPECT_DOUBLE_EQ(PlanOf(*p, "task3").run_probability, 0);
}

TEST_F(PlannerTest, ServiceWarmFromAnotherRunIsNotWarmedAgain) {
  std::vector<TaskSpec> tasks = SeedChain();
  services_["svc-task3"] = ServiceInfo{
      .warmable = true, .keep_alive = keep_alive_, .warm_until = t0_ + absl::Seconds(30)};
  auto p = Plan(tasks, t0_);
  EXPECT_EQ(PlanOf(*p, "task3").decision, WarmupDecision::kSkipAlreadyWarm);
  EXPECT_THAT(PlanOf(*p, "task3").reason, HasSubstr("warm until"));
  // Once that warmth is known to end earlier, the next re-plan warms it again.
  p->SetTaskWarmUntil(Index(*p, "task3"), t0_ + absl::Seconds(1));
  ASSERT_TRUE(p->Started(Index(*p, "task1"), t0_, clock_.Now()).ok());
  EXPECT_EQ(PlanOf(*p, "task3").decision, WarmupDecision::kWarm);
}

TEST_F(PlannerTest, UpstreamOnTheSameServiceLeavesItWarm) {
  Learn("a", "shared", 3);
  LearnColdStart("shared", 1);
  auto p = Plan({T("a", {}, "shared"), T("b", {"a"}, "shared")}, t0_);
  EXPECT_EQ(PlanOf(*p, "b").decision, WarmupDecision::kSkipAlreadyWarm);
  EXPECT_THAT(PlanOf(*p, "b").reason, HasSubstr("upstream"));
}

TEST_F(PlannerTest, SameServiceAfterTheKeepAliveNeedsAWarmup) {
  Learn("a", "shared", 3);
  Learn("b", "other", 120);
  LearnColdStart("shared", 1);
  auto p = Plan({T("a", {}, "shared"), T("b", {"a"}, "other"), T("c", {"b"}, "shared")}, t0_);
  DecideDeferred(*p);
  // c's direct parent is on another service, and a's container is long gone by t0 + 124
  // (a starts cold: 1 + 3 s; b is warmed in time: 120 s).
  EXPECT_EQ(PlanOf(*p, "c").decision, WarmupDecision::kWarm);
  EXPECT_TIME_NEAR(PlanOf(*p, "c").warmup_time, t0_ + absl::Seconds(123), kTolerance);
}

TEST_F(PlannerTest, RarelyRunningTaskIsNotWarmed) {
  for (int i = 0; i < 19; ++i) history_.AddTaskRun("wf", "branch", false);  // P(run) = 1/20
  Learn("a", "svc-a", 3);
  LearnColdStart("svc-branch", 1);
  auto p = Plan({T("a"), T("branch", {"a"})}, t0_);
  // The share of the 128 samples in which it runs.
  EXPECT_NEAR(PlanOf(*p, "branch").run_probability, 0.05, 0.03);
  EXPECT_EQ(PlanOf(*p, "branch").decision, WarmupDecision::kSkipUnlikely);
  EXPECT_THAT(PlanOf(*p, "branch").reason, HasSubstr("runs in 5% of runs"));
}

TEST_F(PlannerTest, UsuallyRunningBranchIsWarmed) {
  history_.AddTaskRun("wf", "branch", false);
  for (int i = 0; i < 9; ++i) history_.AddTaskRun("wf", "branch", true);
  Learn("a", "svc-a", 3);
  LearnColdStart("svc-branch", 5);
  auto p = Plan({T("a"), T("branch", {"a"})}, t0_);
  EXPECT_EQ(PlanOf(*p, "branch").decision, WarmupDecision::kWarm);
}

// a -> b (runs in 30% of runs) -> c (always runs after b): c runs exactly when b does.
TEST_F(PlannerTest, TaskBelowARareBranchRunsOnlyWhenTheBranchDoes) {
  KeepWarm("svc-a");
  Learn("a", "svc-a", 3);
  Learn("b", "svc-b", 4);
  Learn("c", "svc-c", 5);
  LearnColdStart("svc-b", 1);
  LearnColdStart("svc-c", 1);
  LearnRuns("b", 2, 7);
  options_.sample_count = 1024;
  // At a/b = 20 a 30% branch is not worth a warm-up (at 200 it is).
  options_.delay_cost_ratio = 20;
  auto p = Plan({T("a"), T("b", {"a"}), T("c", {"b"})}, t0_);
  const TaskPlan& b = PlanOf(*p, "b");
  const TaskPlan& c = PlanOf(*p, "c");
  EXPECT_NEAR(b.run_probability, 0.3, 0.04);
  EXPECT_DOUBLE_EQ(c.run_probability, b.run_probability);
  EXPECT_EQ(b.decision, WarmupDecision::kSkipUnlikely);
  EXPECT_EQ(c.decision, WarmupDecision::kSkipUnlikely);
  // When it runs, c starts after a (3 s), b's cold start (1 s, not warmed) and b (4 s). Where b
  // is skipped it takes no time and pays no cold start: c's start is a's finish.
  EXPECT_TIME_NEAR(c.expected_start, t0_ + absl::Seconds(8), kTolerance);
  int late = 0, other = 0;
  for (float s : p->start_samples(Index(*p, "c"))) {
    late += std::abs(s - 8) < 1e-3;
    other += std::abs(s - 3) >= 1e-3 && std::abs(s - 8) >= 1e-3;
  }
  EXPECT_EQ(other, 0);
  EXPECT_DOUBLE_EQ(late / 1024.0, c.run_probability);

  // Once b started, c surely runs: warmed a cold start before b's expected end.
  clock_.Advance(absl::Seconds(3));
  ASSERT_TRUE(p->Started(Index(*p, "b"), clock_.Now(), clock_.Now()).ok());
  EXPECT_DOUBLE_EQ(PlanOf(*p, "b").run_probability, 1);
  EXPECT_DOUBLE_EQ(PlanOf(*p, "c").run_probability, 1);
  EXPECT_EQ(PlanOf(*p, "c").decision, WarmupDecision::kWarm);
  EXPECT_TIME_NEAR(PlanOf(*p, "c").warmup_time, t0_ + absl::Seconds(6), kTolerance);
}

TEST_F(PlannerTest, SkippedBranchSkipsEverythingBelowIt) {
  Learn("a", "svc-a", 3);
  LearnColdStart("svc-c", 1);
  LearnColdStart("svc-d", 1);
  LearnRuns("b", 2, 7);
  auto p = Plan({T("a"), T("b", {"a"}), T("c", {"b"}), T("d", {"c"})}, t0_);
  clock_.Advance(absl::Seconds(3));
  ASSERT_TRUE(p->Finished(Index(*p, "a"), clock_.Now(), clock_.Now()).ok());
  ASSERT_TRUE(p->Skipped(Index(*p, "b"), clock_.Now(), clock_.Now()).ok());
  EXPECT_DOUBLE_EQ(PlanOf(*p, "b").run_probability, 0);
  for (const char* task : {"c", "d"}) {
    SCOPED_TRACE(task);
    const TaskPlan& plan = PlanOf(*p, task);
    EXPECT_DOUBLE_EQ(plan.run_probability, 0);
    EXPECT_EQ(plan.decision, WarmupDecision::kSkipUnlikely);
    EXPECT_THAT(plan.reason, HasSubstr("branch is skipped"));
    EXPECT_EQ(plan.warmup_time, absl::InfiniteFuture());
  }
}

// router (80%) fans out to x, y, z (30%, 70% and 90% once the router ran), which join in j (always
// runs once one of them ran). Independent skips would have j run in 80% of runs; it runs in
// 0.8 * (1 - 0.7 * 0.3 * 0.1).
TEST_F(PlannerTest, JoinRunsWhenAnyOfItsBranchesRan) {
  LearnRuns("router", 3, 1);
  LearnRuns("x", 2, 7);
  LearnRuns("y", 6, 3);
  LearnRuns("z", 8, 1);
  options_.sample_count = 8192;
  const std::vector<TaskSpec> tasks = {T("router"), T("x", {"router"}), T("y", {"router"}),
                                       T("z", {"router"}), T("j", {"x", "y", "z"})};
  auto p = Plan(tasks, t0_);
  EXPECT_NEAR(PlanOf(*p, "router").run_probability, 0.8, 0.015);
  EXPECT_NEAR(PlanOf(*p, "x").run_probability, 0.8 * 0.3, 0.015);
  EXPECT_NEAR(PlanOf(*p, "y").run_probability, 0.8 * 0.7, 0.015);
  EXPECT_NEAR(PlanOf(*p, "z").run_probability, 0.8 * 0.9, 0.015);
  EXPECT_NEAR(PlanOf(*p, "j").run_probability, 0.8 * (1 - 0.7 * 0.3 * 0.1), 0.015);
  // The skips come from the seeded streams too: the same run id gives the same plan.
  auto again = Plan(tasks, t0_);
  const auto s1 = p->start_samples(Index(*p, "j")), s2 = again->start_samples(Index(*p, "j"));
  EXPECT_TRUE(std::equal(s1.begin(), s1.end(), s2.begin()));
  EXPECT_EQ(PlanOf(*p, "j").run_probability, PlanOf(*again, "j").run_probability);
}

// b and c share a service; c also follows x. Where b is skipped it warmed nothing, so c needs its
// own warm-up there.
TEST_F(PlannerTest, SkippedUpstreamOnTheSameServiceDoesNotLeaveItWarm) {
  KeepWarm("svc-a");
  Learn("a", "svc-a", 3);
  Learn("b", "shared", 2);
  Learn("x", "", 4);
  LearnColdStart("shared", 5);
  LearnRuns("b", 2, 7);
  auto p = Plan(
      {T("a"), T("b", {"a"}, "shared"), TaskSpec{"x", "", {"a"}}, T("c", {"b", "x"}, "shared")},
      t0_);
  EXPECT_DOUBLE_EQ(PlanOf(*p, "c").run_probability, 1);
  EXPECT_EQ(PlanOf(*p, "c").decision, WarmupDecision::kWarm);
  // Without b, c starts after x (3 + 4 s): warm a cold start (5 s) before.
  EXPECT_TIME_NEAR(PlanOf(*p, "c").warmup_time, t0_ + absl::Seconds(2), kTolerance);
}

TEST_F(PlannerTest, UnregisteredServiceAndNoServiceAreNotWarmed) {
  services_["svc-b"] = ServiceInfo{.warmable = false};
  auto p = Plan({T("a"), T("b", {"a"}), TaskSpec{"c", "", {"b"}}}, t0_);
  EXPECT_EQ(PlanOf(*p, "b").decision, WarmupDecision::kSkipNoService);
  EXPECT_THAT(PlanOf(*p, "b").reason, HasSubstr("not registered"));
  EXPECT_EQ(PlanOf(*p, "c").decision, WarmupDecision::kSkipNoService);
  EXPECT_THAT(PlanOf(*p, "c").reason, HasSubstr("calls no service"));
}

TEST_F(PlannerTest, ConfidenceReflectsHowMuchHistoryThePlanRestsOn) {
  // No history at all: priors everywhere.
  auto none = Plan({T("a"), T("b", {"a"})}, t0_);
  EXPECT_EQ(PlanOf(*none, "b").confidence, Confidence::kLow);
  // a's duration borrowed from its service (another task used it), b's cold start learned.
  Learn("other", "svc-a", 3);
  LearnColdStart("svc-b", 1);
  auto fallback = Plan({T("a"), T("b", {"a"})}, t0_);
  EXPECT_EQ(PlanOf(*fallback, "b").confidence, Confidence::kMedium);
  Learn("a", "svc-a", 3);
  auto learned = Plan({T("a"), T("b", {"a"})}, t0_);
  EXPECT_EQ(PlanOf(*learned, "b").confidence, Confidence::kHigh);
}

TEST_F(PlannerTest, PlansAreReproducibleFromTheRunId) {
  Rng rng(3);
  for (int i = 0; i < 50; ++i) {
    history_.AddTaskDuration("wf", "a", "svc-a", absl::Seconds(1 + 10 * rng.Uniform()));
  }
  auto p1 = Plan({T("a"), T("b", {"a"})}, t0_, "run-x");
  auto p2 = Plan({T("a"), T("b", {"a"})}, t0_, "run-x");
  auto p3 = Plan({T("a"), T("b", {"a"})}, t0_, "run-y");
  const auto s1 = p1->start_samples(1), s2 = p2->start_samples(1), s3 = p3->start_samples(1);
  EXPECT_TRUE(std::equal(s1.begin(), s1.end(), s2.begin()));
  EXPECT_FALSE(std::equal(s1.begin(), s1.end(), s3.begin()));
  EXPECT_EQ(PlanOf(*p1, "b").warmup_time, PlanOf(*p2, "b").warmup_time);
}

TEST_F(PlannerTest, EventsThatContradictTheStateAreRejected) {
  auto p = Plan(SeedChain(), t0_);
  const int a = Index(*p, "task1");
  ASSERT_TRUE(p->Finished(a, t0_ + absl::Seconds(3), clock_.Now()).ok());
  absl::Status twice = p->Finished(a, t0_ + absl::Seconds(4), clock_.Now()).status();
  EXPECT_EQ(twice.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(twice.message(), HasSubstr("task 'task1' is already finished"));
  EXPECT_EQ(p->Skipped(a, t0_, clock_.Now()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  const int b = Index(*p, "task2");
  ASSERT_TRUE(p->Started(b, t0_ + absl::Seconds(5), clock_.Now()).ok());
  EXPECT_EQ(p->Finished(b, t0_ + absl::Seconds(4), clock_.Now()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PlannerTest, FailedTaskMayBeRetried) {
  auto p = Plan(SeedChain(), t0_);
  const int a = Index(*p, "task1");
  ASSERT_TRUE(p->Started(a, t0_, clock_.Now()).ok());
  ASSERT_TRUE(p->Failed(a, t0_ + absl::Seconds(1), clock_.Now()).ok());
  EXPECT_EQ(p->progress(a).state, TaskState::kFailed);
  ASSERT_TRUE(p->Started(a, t0_ + absl::Seconds(2), clock_.Now()).ok());
  EXPECT_EQ(p->progress(a).state, TaskState::kRunning);
  // The retry restarts the clock: task2 now starts at 2 + 3.
  EXPECT_TIME_NEAR(PlanOf(*p, "task2").expected_start, t0_ + absl::Seconds(5), kTolerance);
}

}  // namespace
}  // namespace prewarm

namespace prewarm {
namespace {

TEST_F(PlannerTest, ATaskThatStartedColdFinishesItsColdStartLater) {
  auto p = Plan(SeedChain(), t0_);
  const int task1 = Index(*p, "task1");
  // Warm: task2 starts after task1's 3 s (the dispatch gap prior is 0).
  ASSERT_TRUE(p->Started(task1, t0_, t0_).ok());
  EXPECT_TIME_NEAR(PlanOf(*p, "task2").expected_start, t0_ + absl::Seconds(3), kTolerance);
  // A known wait of 2 s: 2 s later.
  ASSERT_TRUE(p->Started(task1, t0_, t0_, absl::Seconds(2)).ok());
  EXPECT_TIME_NEAR(PlanOf(*p, "task2").expected_start, t0_ + absl::Seconds(5), kTolerance);
  // Cold with the length unknown: the service's cold start (1 s), drawn from its history.
  ASSERT_TRUE(p->Started(task1, t0_, t0_, std::nullopt).ok());
  EXPECT_TIME_NEAR(PlanOf(*p, "task2").expected_start, t0_ + absl::Seconds(4), kTolerance);
  EXPECT_TIME_NEAR(PlanOf(*p, "task2").warmup_time, t0_ + absl::Seconds(3), kTolerance);
}

TEST_F(PlannerTest, WithOneRequestPerContainerALateWarmupsSpareIsPriced) {
  // b's start spreads over [8, 12) s (in no particular order: a trend would be projected away);
  // its cold start is 2 s.
  for (int i = 0; i < 64; ++i) {
    history_.AddTaskDuration("wf", "a", "svc-a", absl::Seconds(8 + (i * 37 % 64) / 16.0));
  }
  LearnColdStart("svc-b", 2);
  std::vector<TaskSpec> tasks = {T("a", {}, "svc-a"), T("b", {"a"}, "svc-b")};
  KeepWarm("svc-a");
  services_["svc-b"] = ServiceInfo{.warmable = true, .keep_alive = keep_alive_};
  // At a/b = 20 the unlimited service accepts a few late samples, so the spare's price shows (at
  // 200 both fire before every sample's latest time).
  options_.delay_cost_ratio = 20;
  const absl::Time unlimited = PlanOf(*Plan(tasks, t0_), "b").warmup_time;
  services_["svc-b"].container_concurrency = 1;
  auto p = Plan(tasks, t0_);
  const TaskPlan& one = PlanOf(*p, "b");
  // A late sample would also idle a spare container for the 60 s keep-alive: fire earlier.
  EXPECT_LT(one.warmup_time, unlimited);
  EXPECT_EQ(one.decision, WarmupDecision::kWarm);
}

// Lazy planning: the same run planned eagerly (every task decided at once) and lazily (far tasks
// decided at NextDeferredPlan()). A deferred task, once decided, must get the very plan the eager
// planner gave it, and be decided at least planning_horizon before its warm-up fires.
class LazyPlanningTest : public PlannerTest {
 protected:
  void Both(const std::vector<TaskSpec>& tasks, absl::Time start) {
    options_.lazy_planning = false;
    eager_ = Plan(tasks, start);
    options_.lazy_planning = true;
    lazy_ = Plan(tasks, start);
  }

  static void ExpectSamePlan(const RunPlanner& lazy, const RunPlanner& eager, int v) {
    const TaskPlan a = lazy.plan(v), b = eager.plan(v);
    const std::string& id = lazy.dag().task(v).task_id;
    EXPECT_EQ(a.decision, b.decision) << id;
    EXPECT_EQ(a.warmup_time, b.warmup_time) << id;
    EXPECT_EQ(a.expected_start, b.expected_start) << id;
    EXPECT_EQ(a.start_p10, b.start_p10) << id;
    EXPECT_EQ(a.start_p90, b.start_p90) << id;
    EXPECT_EQ(a.expected_delay, b.expected_delay) << id;
    EXPECT_EQ(a.expected_idle, b.expected_idle) << id;
    EXPECT_EQ(a.confidence, b.confidence) << id;
    EXPECT_EQ(a.run_probability, b.run_probability) << id;
    EXPECT_EQ(a.reason, b.reason) << id;
  }

  // Every task the lazy planner decided has the eager planner's plan.
  void ExpectDecidedAsEager() {
    for (int v = 0; v < lazy_->dag().size(); ++v) {
      if (lazy_->plan(v).decision != WarmupDecision::kDeferred) ExpectSamePlan(*lazy_, *eager_, v);
    }
  }

  // Runs the lazy planner's deferred decisions due by `until`, as the server's timer would.
  // Returns how many PlanDeferred calls that took.
  int DecideUntil(absl::Time until) {
    int calls = 0;
    for (absl::Time t = lazy_->NextDeferredPlan(); t != absl::InfiniteFuture() && t <= until;
         t = lazy_->NextDeferredPlan()) {
      EXPECT_GT(t, clock_.Now()) << "a decision is due in the past";
      clock_.AdvanceTo(t);
      const std::vector<int> touched = lazy_->PlanDeferred(t);
      EXPECT_FALSE(touched.empty());
      EXPECT_TRUE(std::is_sorted(touched.begin(), touched.end()));
      ++calls;
      for (int v : touched) {
        const TaskPlan plan = lazy_->plan(v);
        if (plan.decision == WarmupDecision::kDeferred) continue;
        ExpectSamePlan(*lazy_, *eager_, v);
        // Decided in time: a horizon before it fires.
        if (plan.decision == WarmupDecision::kWarm) {
          EXPECT_GE(plan.warmup_time, t + options_.planning_horizon) << v;
        }
      }
    }
    return calls;
  }

  int CountDeferred() const {
    int n = 0;
    for (int v = 0; v < lazy_->dag().size(); ++v) {
      n += lazy_->plan(v).decision == WarmupDecision::kDeferred;
    }
    return n;
  }

  std::unique_ptr<RunPlanner> eager_;
  std::unique_ptr<RunPlanner> lazy_;
};

TEST_F(LazyPlanningTest, LongChainDecidesOnlyItsNearTasks) {
  // 30 tasks of 25 s, 1 s cold starts: t(k) starts at 1 + 25k s (t0 is cold and too late).
  std::vector<TaskSpec> tasks;
  for (int k = 0; k < 30; ++k) {
    const std::string id = absl::StrCat("t", k);
    Learn(id, "svc-" + id, 25);
    LearnColdStart("svc-" + id, 1);
    tasks.push_back(k == 0 ? T(id) : T(id, {absl::StrCat("t", k - 1)}));
  }
  Both(tasks, t0_);
  // The margin is the 60 s horizon + the 1 s cold start: t0..t2 (start <= 51 s) are decided.
  for (int k = 0; k < 3; ++k) {
    EXPECT_NE(PlanOf(*lazy_, absl::StrCat("t", k)).decision, WarmupDecision::kDeferred) << k;
  }
  ExpectDecidedAsEager();
  const TaskPlan t3 = PlanOf(*lazy_, "t3");
  EXPECT_EQ(t3.decision, WarmupDecision::kDeferred);
  EXPECT_THAT(t3.reason, HasSubstr("decided at"));
  EXPECT_EQ(t3.warmup_time, absl::InfiniteFuture());
  EXPECT_TIME_NEAR(t3.expected_start, t0_ + absl::Seconds(76), kTolerance);
  // Its earliest start (76 s) minus the margin.
  EXPECT_TIME_NEAR(lazy_->NextDeferredPlan(), t0_ + absl::Seconds(15), kTolerance);
  // The rest wait for t3 without samples.
  const TaskPlan t4 = PlanOf(*lazy_, "t4");
  EXPECT_EQ(t4.decision, WarmupDecision::kDeferred);
  EXPECT_THAT(t4.reason, HasSubstr("upstream task 't3'"));
  EXPECT_TRUE(lazy_->start_samples(Index(*lazy_, "t4")).empty());
  EXPECT_EQ(CountDeferred(), 27);
  // Memory: only the decided tasks keep finish samples.
  EXPECT_LT(lazy_->MemoryBytes() * 2, eager_->MemoryBytes());

  // Each deferred task is decided 61 s before its start, one per timer, as eagerly.
  EXPECT_EQ(DecideUntil(absl::InfiniteFuture()), 27);
  EXPECT_EQ(CountDeferred(), 0);
  EXPECT_EQ(lazy_->NextDeferredPlan(), absl::InfiniteFuture());
  ExpectDecidedAsEager();
  EXPECT_EQ(PlanOf(*lazy_, "t29").decision, WarmupDecision::kWarm);
}

TEST_F(LazyPlanningTest, ADeferredTaskEstimatesItsRunProbabilityFromItsParents) {
  // a (100 s) -> b, which ran in 3 of 10 runs -> c -> d, each 100 s: b is sampled and deferred,
  // c and d wait behind it. Eager planning gives all three about 0.3.
  for (const char* t : {"a", "b", "c", "d"}) {
    Learn(t, absl::StrCat("svc-", t), 100);
    LearnColdStart(absl::StrCat("svc-", t), 1);
  }
  LearnRuns("b", 2, 7);  // (2 + 1) / (9 + 1)
  // e joins a and c: it runs where either did, as a always does.
  const std::vector<TaskSpec> tasks = {T("a"), T("b", {"a"}), T("c", {"b"}), T("d", {"c"}),
                                       T("e", {"a", "c"})};
  Both(tasks, t0_);
  for (const char* t : {"b", "c", "d"}) {
    const TaskPlan lazy = PlanOf(*lazy_, t);
    ASSERT_EQ(lazy.decision, WarmupDecision::kDeferred) << t;
    EXPECT_NEAR(lazy.run_probability, 0.3, 0.06) << t;
    EXPECT_NEAR(lazy.run_probability, PlanOf(*eager_, t).run_probability, 0.06) << t;
  }
  // b's estimate comes from a's samples (it runs in all of them) and its own share, exactly.
  EXPECT_FLOAT_EQ(PlanOf(*lazy_, "b").run_probability, 0.3f);
  EXPECT_FLOAT_EQ(PlanOf(*lazy_, "c").run_probability, PlanOf(*lazy_, "b").run_probability);
  EXPECT_DOUBLE_EQ(PlanOf(*lazy_, "e").run_probability, 1);
  // Once decided, each has the eager planner's sampled share again.
  EXPECT_GT(DecideUntil(absl::InfiniteFuture()), 0);
  EXPECT_EQ(CountDeferred(), 0);
  ExpectDecidedAsEager();
}

TEST_F(LazyPlanningTest, WithLazyPlanningOffEveryTaskIsDecided) {
  Learn("a", "", 600);
  LearnColdStart("svc-b", 1);
  options_.lazy_planning = false;
  auto p = Plan({TaskSpec{"a", "", {}}, T("b", {"a"})}, t0_);
  EXPECT_EQ(PlanOf(*p, "b").decision, WarmupDecision::kWarm);
  EXPECT_EQ(p->NextDeferredPlan(), absl::InfiniteFuture());
  EXPECT_TRUE(p->PlanDeferred(t0_ + absl::Hours(1)).empty());
}

TEST_F(LazyPlanningTest, JoinWaitsForItsFarParentAndEventsDecideItEarlier) {
  // a (5 s) and b (300 s) join into c; d follows a alone.
  Learn("a", "svc-a", 5);
  Learn("b", "svc-b", 300);
  Learn("c", "svc-c", 5);
  Learn("d", "svc-d", 5);
  for (const char* s : {"svc-a", "svc-b", "svc-c", "svc-d"}) LearnColdStart(s, 1);
  const std::vector<TaskSpec> tasks = {T("a"), T("b"), T("c", {"a", "b"}), T("d", {"a"})};
  Both(tasks, t0_);
  EXPECT_EQ(PlanOf(*lazy_, "d").decision, WarmupDecision::kWarm);
  EXPECT_EQ(PlanOf(*lazy_, "c").decision, WarmupDecision::kDeferred);
  ExpectDecidedAsEager();
  // b reports its start at 10 s: c still starts after 310 s and stays deferred.
  clock_.AdvanceTo(t0_ + absl::Seconds(10));
  for (RunPlanner* p : {lazy_.get(), eager_.get()}) {
    ASSERT_TRUE(p->Started(Index(*p, "b"), clock_.Now(), clock_.Now()).ok());
  }
  EXPECT_EQ(PlanOf(*lazy_, "c").decision, WarmupDecision::kDeferred);
  ExpectDecidedAsEager();
  // b finishes early, at 20 s: c starts now, decided by the event itself.
  clock_.AdvanceTo(t0_ + absl::Seconds(20));
  absl::StatusOr<std::vector<int>> touched;
  for (RunPlanner* p : {lazy_.get(), eager_.get()}) {
    touched = p->Finished(Index(*p, "b"), clock_.Now(), clock_.Now());
    ASSERT_TRUE(touched.ok());
  }
  EXPECT_THAT(*touched, ::testing::Contains(Index(*lazy_, "c")));
  EXPECT_EQ(PlanOf(*lazy_, "c").decision, WarmupDecision::kSkipTooLate);
  ExpectDecidedAsEager();
  EXPECT_EQ(lazy_->NextDeferredPlan(), absl::InfiniteFuture());
}

TEST_F(LazyPlanningTest, FarJoinIsDecidedOnItsTimer) {
  Learn("a", "svc-a", 5);
  Learn("b", "svc-b", 300);
  Learn("c", "svc-c", 5);
  for (const char* s : {"svc-a", "svc-b", "svc-c"}) LearnColdStart(s, 1);
  Both({T("a"), T("b"), T("c", {"a", "b"})}, t0_);
  // b is cold (1 s) then 300 s: c's earliest start is 301 s, decided 61 s before.
  EXPECT_TIME_NEAR(lazy_->NextDeferredPlan(), t0_ + absl::Seconds(240), kTolerance);
  EXPECT_EQ(DecideUntil(absl::InfiniteFuture()), 1);
  ExpectDecidedAsEager();
}

TEST_F(LazyPlanningTest, ExclusiveBranchesAfterAFarTaskAreDecidedAsEagerly) {
  // pre (200 s) -> route (5 s) -> x (30%) | y (70%), exactly one of them -> z.
  Rng rng(3);
  for (int i = 0; i < 40; ++i) {
    history_.AddTaskDuration("wf", "pre", "svc-pre", absl::Seconds(190 + 20 * rng.Uniform()));
    history_.AddTaskDuration("wf", "x", "svc-x", absl::Seconds(10 + 40 * rng.Uniform()));
  }
  Learn("route", "svc-route", 5);
  Learn("y", "svc-y", 20);
  Learn("z", "svc-z", 5);
  for (const char* s : {"svc-pre", "svc-route", "svc-x", "svc-y", "svc-z"}) {
    LearnColdStart(s, 1 + rng.Uniform());
  }
  const std::vector<TaskSpec> tasks = {T("pre"), T("route", {"pre"}), T("x", {"route"}),
                                       T("y", {"route"}), T("z", {"x", "y"})};
  const Dag dag = *Dag::Build(tasks);
  for (int i = 0; i < 50; ++i) {
    const bool x = i % 10 < 3;
    history_.AddTaskRun("wf", "x", x);
    history_.AddTaskRun("wf", "y", !x);
    // Bits in task-id order: x, y.
    history_.Add(HistoryWindow::kChildOutcomes, ChildOutcomeKey("wf", dag, *dag.Find("route")),
                 x ? 1 : 2);
  }
  Both(tasks, t0_);
  EXPECT_EQ(CountDeferred(), 4);
  EXPECT_EQ(PlanOf(*lazy_, "route").decision, WarmupDecision::kDeferred);
  EXPECT_THAT(PlanOf(*lazy_, "route").reason, HasSubstr("decided at"));
  ExpectDecidedAsEager();
  // route is decided on its timer (about 130 s), then x and y on theirs.
  EXPECT_GE(DecideUntil(t0_ + absl::Seconds(150)), 2);
  EXPECT_NE(PlanOf(*lazy_, "route").decision, WarmupDecision::kDeferred);
  EXPECT_NE(PlanOf(*lazy_, "y").decision, WarmupDecision::kDeferred);
  // pre finishes at 195 s and route starts: the branches are decided by the events.
  clock_.AdvanceTo(t0_ + absl::Seconds(195));
  for (RunPlanner* p : {lazy_.get(), eager_.get()}) {
    ASSERT_TRUE(p->Finished(Index(*p, "pre"), clock_.Now(), clock_.Now()).ok());
    ASSERT_TRUE(p->Started(Index(*p, "route"), clock_.Now(), clock_.Now()).ok());
  }
  ExpectDecidedAsEager();
  DecideUntil(absl::InfiniteFuture());
  EXPECT_EQ(CountDeferred(), 0);
  ExpectDecidedAsEager();
  // Exclusive: z runs in every sample where route ran.
  EXPECT_EQ(PlanOf(*lazy_, "z").run_probability, 1.0);
  // x is skipped: y is certain, and z re-planned, as eagerly.
  clock_.AdvanceTo(t0_ + absl::Seconds(201));
  for (RunPlanner* p : {lazy_.get(), eager_.get()}) {
    ASSERT_TRUE(p->Finished(Index(*p, "route"), clock_.Now(), clock_.Now()).ok());
    ASSERT_TRUE(p->Skipped(Index(*p, "x"), clock_.Now(), clock_.Now()).ok());
  }
  ExpectDecidedAsEager();
  EXPECT_EQ(PlanOf(*lazy_, "y").run_probability, 1.0);
}

TEST_F(LazyPlanningTest, ARunScheduledAheadIsDecidedAHorizonBeforeItsStart) {
  options_.planning_horizon = absl::Seconds(30);
  LearnColdStart("svc-a", 2);
  Learn("a", "svc-a", 4);
  Learn("b", "svc-b", 4);
  LearnColdStart("svc-b", 2);
  Both({T("a"), T("b", {"a"})}, t0_ + absl::Hours(2));
  EXPECT_EQ(CountDeferred(), 2);
  // The earliest start minus horizon and the largest cold start.
  EXPECT_TIME_NEAR(lazy_->NextDeferredPlan(), t0_ + absl::Hours(2) - absl::Seconds(32), kTolerance);
  // b starts 4 s after a: decided on its own timer, 4 s later.
  EXPECT_EQ(DecideUntil(t0_ + absl::Hours(2) - absl::Seconds(32)), 1);
  EXPECT_EQ(PlanOf(*lazy_, "b").decision, WarmupDecision::kDeferred);
  EXPECT_THAT(PlanOf(*lazy_, "b").reason, HasSubstr("decided at"));
  EXPECT_EQ(DecideUntil(absl::InfiniteFuture()), 1);
  ExpectDecidedAsEager();
}

}  // namespace
}  // namespace prewarm
