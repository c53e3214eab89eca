#include "predictor/history.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace prewarm {
namespace {

TEST(HistoryTest, DurationFallsBackFromTaskToServiceToPrior) {
  History h(HistoryOptions{.duration_prior = absl::Seconds(42)});
  Estimate prior = h.TaskDuration("wf", "t1", "svc");
  EXPECT_EQ(prior.source, EstimateSource::kPrior);
  EXPECT_DOUBLE_EQ(prior.distribution->Mean(), 42);

  h.AddTaskDuration("wf", "t1", "svc", absl::Seconds(3));
  Estimate learned = h.TaskDuration("wf", "t1", "svc");
  EXPECT_EQ(learned.source, EstimateSource::kLearned);
  EXPECT_DOUBLE_EQ(learned.distribution->Mean(), 3);

  // Another task of the same service borrows the service's history.
  Estimate fallback = h.TaskDuration("wf", "t2", "svc");
  EXPECT_EQ(fallback.source, EstimateSource::kFallback);
  EXPECT_DOUBLE_EQ(fallback.distribution->Mean(), 3);

  // A task without a service has no fallback but the prior.
  EXPECT_EQ(h.TaskDuration("wf", "t3", "").source, EstimateSource::kPrior);
}

TEST(HistoryTest, DurationHintStandsInUntilTheTaskHasHistory) {
  History h(HistoryOptions{.duration_prior = absl::Seconds(42)});
  h.AddTaskDuration("wf", "other", "svc", absl::Seconds(3));

  // The hint outranks the prior and the service's history: it is about this very task. It is a
  // median with a margin either way (duration_hint_spread 0.25: about 0.67x to 1.49x).
  Estimate hinted = h.TaskDuration("wf", "t", "svc", absl::Seconds(7));
  EXPECT_EQ(hinted.source, EstimateSource::kFallback);
  EXPECT_NEAR(hinted.distribution->Quantile(0.5), 7, 1e-5);
  EXPECT_NEAR(hinted.distribution->samples().front(), 7 * std::exp(-0.25 * 1.5932), 1e-5);
  EXPECT_NEAR(hinted.distribution->samples().back(), 7 * std::exp(0.25 * 1.5932), 1e-5);
  EXPECT_NEAR(h.TaskDuration("wf", "t", "", absl::Seconds(7)).distribution->Quantile(0.5), 7, 1e-5);
  History point(HistoryOptions{.duration_hint_spread = 0});
  EXPECT_DOUBLE_EQ(point.TaskDuration("wf", "t", "", absl::Seconds(7)).distribution->Mean(), 7);

  // From the task's first observation on, its own history takes over.
  h.AddTaskDuration("wf", "t", "svc", absl::Seconds(5));
  Estimate learned = h.TaskDuration("wf", "t", "svc", absl::Seconds(7));
  EXPECT_EQ(learned.source, EstimateSource::kLearned);
  EXPECT_DOUBLE_EQ(learned.distribution->Mean(), 5);
}

TEST(HistoryTest, ColdStartPrefersLearnedThenServicePriorThenGlobalPrior) {
  History h(HistoryOptions{.cold_start_prior = absl::Seconds(2)});
  EXPECT_DOUBLE_EQ(h.ColdStart("svc").distribution->Mean(), 2);
  EXPECT_DOUBLE_EQ(h.ColdStart("svc", absl::Seconds(5)).distribution->Mean(), 5);
  h.AddColdStart("svc", absl::Milliseconds(800));
  Estimate e = h.ColdStart("svc", absl::Seconds(5));
  EXPECT_EQ(e.source, EstimateSource::kLearned);
  EXPECT_NEAR(e.distribution->Mean(), 0.8, 1e-6);
}

TEST(HistoryTest, WindowsAreBoundedAndFollowDrift) {
  History h(HistoryOptions{.window_size = 4});
  for (int i = 1; i <= 10; ++i) h.AddTaskDuration("wf", "t", "svc", absl::Seconds(i));
  const SampleWindow* w = h.TaskDurations("wf", "t");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->size(), 4);
  EXPECT_DOUBLE_EQ(h.TaskDuration("wf", "t", "svc").distribution->Mean(), 8.5);  // 7..10
}

TEST(HistoryTest, KeysDoNotCollide) {
  History h;
  h.AddTaskDuration("a", "b.c", "", absl::Seconds(1));
  h.AddTaskDuration("a.b", "c", "", absl::Seconds(2));
  EXPECT_DOUBLE_EQ(h.TaskDuration("a", "b.c", "").distribution->Mean(), 1);
  EXPECT_DOUBLE_EQ(h.TaskDuration("a.b", "c", "").distribution->Mean(), 2);
}

TEST(HistoryTest, RunProbabilityAndGaps) {
  History h;
  EXPECT_DOUBLE_EQ(h.RunProbability("wf", "branch"), 1);
  h.AddTaskRun("wf", "branch", false);
  EXPECT_DOUBLE_EQ(h.RunProbability("wf", "branch"), 0.5);
  EXPECT_EQ(h.DispatchGap("wf").source, EstimateSource::kPrior);
  h.AddDispatchGap("wf", absl::Seconds(2));
  EXPECT_EQ(h.DispatchGap("wf").source, EstimateSource::kLearned);
  EXPECT_DOUBLE_EQ(h.DispatchGap("wf").distribution->Mean(), 2);
}

TEST(HistoryTest, NegativeDurationsAreClampedToZero) {
  History h;
  h.AddColdStart("svc", absl::Seconds(-1));
  EXPECT_DOUBLE_EQ(h.ColdStart("svc").distribution->Mean(), 0);
}

// --- Bounded keys (issue 11, defect 1). ---

using Evicted = std::vector<std::pair<HistoryWindow, std::string>>;

TEST(HistoryTest, TheLeastRecentlyObservedKeyIsEvictedFirst) {
  History h({.max_keys = 3});
  h.AddColdStart("a", absl::Seconds(1));
  h.AddColdStart("b", absl::Seconds(1));
  h.AddColdStart("c", absl::Seconds(1));
  h.AddColdStart("a", absl::Seconds(2));  // a is now the most recent; b the least.
  EXPECT_TRUE(h.TakeEvicted().empty());
  h.AddWarmLatency("d", absl::Seconds(1));  // Any kind counts against the one cap.
  EXPECT_EQ(h.key_count(), 3u);
  EXPECT_EQ(h.TakeEvicted(), (Evicted{{HistoryWindow::kColdStart, "b"}}));
  EXPECT_EQ(h.ColdStarts("b"), nullptr);
  ASSERT_NE(h.ColdStarts("a"), nullptr);
  EXPECT_EQ(h.ColdStarts("a")->size(), 2);  // A kept key keeps its samples.
  h.AddTaskRun("wf", "t", true);
  h.AddDispatchGap("wf", absl::Seconds(1));
  EXPECT_EQ(h.TakeEvicted(),
            (Evicted{{HistoryWindow::kColdStart, "c"}, {HistoryWindow::kColdStart, "a"}}));
  EXPECT_TRUE(h.TakeEvicted().empty());  // Taken once.
  EXPECT_EQ(h.evictions(), 3);
}

TEST(HistoryTest, AnEvictedKeyFallsBackAndCanBeLearnedAgain) {
  History h({.duration_prior = absl::Seconds(10), .max_keys = 2});
  h.AddTaskDuration("wf", "t", "svc", absl::Seconds(3));  // Two keys: the task's and the service's.
  h.AddColdStart("other", absl::Seconds(1));              // Evicts the task's (the older).
  EXPECT_EQ(h.TaskDuration("wf", "t", "svc").source, EstimateSource::kFallback);
  h.AddColdStart("third", absl::Seconds(1));  // Evicts the service's.
  EXPECT_EQ(h.TaskDuration("wf", "t", "svc").source, EstimateSource::kPrior);
  h.AddTaskDuration("wf", "t", "", absl::Seconds(4));
  EXPECT_EQ(h.TaskDuration("wf", "t", "svc").source, EstimateSource::kLearned);
  EXPECT_DOUBLE_EQ(h.TaskDuration("wf", "t", "svc").distribution->Mean(), 4);  // Fresh window.
}

TEST(HistoryTest, TouchMakesAKeyTheMostRecent) {
  History h({.max_keys = 2});
  h.Add(HistoryWindow::kTaskRun, History::TaskKey("wf", "x"), 1);
  h.Add(HistoryWindow::kTaskRun, History::TaskKey("wf", "y"), 1);
  h.Touch(HistoryWindow::kTaskRun, History::TaskKey("wf", "x"));
  h.Touch(HistoryWindow::kTaskRun, "absent");  // No-op.
  h.Add(HistoryWindow::kTaskRun, History::TaskKey("wf", "z"), 0);
  EXPECT_EQ(h.TakeEvicted(), (Evicted{{HistoryWindow::kTaskRun, History::TaskKey("wf", "y")}}));
  EXPECT_DOUBLE_EQ(h.RunProbability("wf", "x"), 1);
}

TEST(HistoryTest, KeysStayAtTheCapUnderAnEndlessStreamOfNewNames) {
  constexpr int kCap = 1000;
  History h({.max_keys = kCap});
  int64_t evicted = 0;
  for (int i = 0; i < 20 * kCap; ++i) {
    const std::string n = absl::StrCat("dyn-", i);
    h.AddTaskDuration(n, "task", absl::StrCat("tenant-", i), absl::Seconds(1));
    h.AddTaskRun(n, "task", true);
    h.AddColdStart(absl::StrCat("tenant-", i), absl::Seconds(1));
    ASSERT_LE(h.key_count(), static_cast<size_t>(kCap));
    evicted += static_cast<int64_t>(h.TakeEvicted().size());
  }
  EXPECT_EQ(h.key_count(), static_cast<size_t>(kCap));
  EXPECT_EQ(evicted, 20 * kCap * 4 - kCap);
  EXPECT_EQ(h.evictions(), evicted);
}

TEST(HistoryTest, LoweringTheCapEvictsTheLeastRecentAtOnce) {
  History h({.max_keys = 0});
  for (const char* s : {"a", "b", "c", "d"}) h.AddColdStart(s, absl::Seconds(1));
  h.Touch(HistoryWindow::kColdStart, "a");
  h.SetMaxKeys(2);
  EXPECT_EQ(h.TakeEvicted(),
            (Evicted{{HistoryWindow::kColdStart, "b"}, {HistoryWindow::kColdStart, "c"}}));
  EXPECT_EQ(h.key_count(), 2u);
}

TEST(HistoryTest, ZeroMaxKeysMeansNoCap) {
  History h({.max_keys = 0});
  for (int i = 0; i < 500; ++i) h.AddColdStart(absl::StrCat("s", i), absl::Seconds(1));
  EXPECT_EQ(h.key_count(), 500u);
  EXPECT_TRUE(h.TakeEvicted().empty());
}

TEST(HistoryTest, AMovedHistoryKeepsItsOrder) {
  History a({.max_keys = 2});
  a.AddColdStart("old", absl::Seconds(1));
  a.AddColdStart("new", absl::Seconds(1));
  History b = std::move(a);
  b.AddColdStart("newest", absl::Seconds(1));
  EXPECT_EQ(b.TakeEvicted(), (Evicted{{HistoryWindow::kColdStart, "old"}}));
}

}  // namespace
}  // namespace prewarm
