#include "predictor/history.h"

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

}  // namespace
}  // namespace prewarm
