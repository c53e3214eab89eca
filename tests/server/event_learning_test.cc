#include "server/event_learning.h"

#include <memory>
#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/proto_time.h"
#include "tests/server/test_runs.h"

namespace prewarm {
namespace {

using ::prewarm::testing::BuildTestRun;
using ::prewarm::testing::ChainRequest;
using ::prewarm::testing::TaskEvent;
using ::prewarm::testing::TestHistoryOptions;

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);
const absl::Time kStart = kNow + absl::Seconds(60);

class EventLearningTest : public ::testing::Test {
 protected:
  // A chain a -> b on svc-a, svc-b starting at kStart, planned at kNow from the priors.
  void SetUp() override {
    run_ = BuildTestRun(ChainRequest("run-1", {"a", "b"}, kStart), kNow, history_);
  }

  int Task(const std::string& id) { return *run_->dag->Find(id); }

  History history_{TestHistoryOptions()};
  std::unique_ptr<prewarm::Run> run_;
};

TEST_F(EventLearningTest, ObservationKindsMapToTheirWindowsAndBack) {
  for (Observation::Kind kind :
       {Observation::Kind::kTaskDuration, Observation::Kind::kServiceDuration,
        Observation::Kind::kColdStart, Observation::Kind::kWarmLatency,
        Observation::Kind::kDispatchGap, Observation::Kind::kTaskRun}) {
    EXPECT_EQ(KindOf(WindowOf(kind)), kind) << KindName(kind);
  }
  EXPECT_STREQ(KindName(Observation::Kind::kColdStart), "cold_start");
  EXPECT_EQ(WindowOf(Observation::Kind::kDispatchGap), HistoryWindow::kDispatchGap);
}

TEST_F(EventLearningTest, AReportedColdnessDecidesTheOutcome) {
  TaskRuntime rt;
  EXPECT_EQ(DecideOutcome(rt, false, kStart), v1::TASK_OUTCOME_HIT);
  EXPECT_EQ(DecideOutcome(rt, true, kStart), v1::TASK_OUTCOME_MISS);
  // Cold while the task's own warm-up was starting the service: it waited for the rest only.
  rt.warmup = v1::WARMUP_STATE_FIRED;
  rt.fired_at = kStart - absl::Seconds(1);
  EXPECT_EQ(DecideOutcome(rt, true, kStart), v1::TASK_OUTCOME_LATE);
  // Reported after the warm-up was answered, for a call made before that.
  rt.warmup = v1::WARMUP_STATE_READY;
  rt.ready_at = kStart + absl::Seconds(1);
  EXPECT_EQ(DecideOutcome(rt, true, kStart), v1::TASK_OUTCOME_LATE);
  // A call after the warm-up was ready that was cold anyway: the container was lost.
  EXPECT_EQ(DecideOutcome(rt, true, kStart + absl::Seconds(2)), v1::TASK_OUTCOME_MISS);
}

TEST_F(EventLearningTest, WithoutAReportTheWarmupOrThePoolDecides) {
  TaskRuntime rt;
  EXPECT_EQ(DecideOutcome(rt, std::nullopt, kStart), v1::TASK_OUTCOME_MISS);
  rt.found_warm = true;
  EXPECT_EQ(DecideOutcome(rt, std::nullopt, kStart), v1::TASK_OUTCOME_HIT);
  rt.found_warm = false;
  rt.warmup = v1::WARMUP_STATE_READY;
  EXPECT_EQ(DecideOutcome(rt, std::nullopt, kStart), v1::TASK_OUTCOME_HIT);
  rt.warmup = v1::WARMUP_STATE_FIRED;
  EXPECT_EQ(DecideOutcome(rt, std::nullopt, kStart), v1::TASK_OUTCOME_LATE);
}

TEST_F(EventLearningTest, ContainerWaitFollowsTheReportThenTheWarmup) {
  const int a = Task("a");
  v1::ReportTimingRequest started = TaskEvent(*run_, "a", v1::TASK_EVENT_TYPE_STARTED, kStart);
  EXPECT_EQ(ContainerWait(*run_, a, started, kStart), absl::ZeroDuration());  // Nothing known.
  run_->tasks[a].found_warm = false;
  EXPECT_EQ(ContainerWait(*run_, a, started, kStart), std::nullopt);  // Cold, cost unknown.
  run_->tasks[a].warmup = v1::WARMUP_STATE_FIRED;
  run_->tasks[a].fired_at = kStart - absl::Milliseconds(500);
  // The rest of the expected 2 s cold start.
  EXPECT_EQ(ContainerWait(*run_, a, started, kStart), absl::Milliseconds(1500));
  run_->tasks[a].warmup = v1::WARMUP_STATE_READY;
  EXPECT_EQ(ContainerWait(*run_, a, started, kStart), absl::ZeroDuration());

  v1::ReportTimingRequest cold = started;
  cold.set_cold(true);
  EXPECT_EQ(ContainerWait(*run_, a, cold, kStart), std::nullopt);
  *cold.mutable_cold_start() = ToProtoDuration(absl::Seconds(3));
  EXPECT_EQ(ContainerWait(*run_, a, cold, kStart), absl::Seconds(3));
  cold.set_cold(false);
  EXPECT_EQ(ContainerWait(*run_, a, cold, kStart), absl::ZeroDuration());
}

TEST_F(EventLearningTest, RepeatsAreRecognisedUnlessTheyCarryNews) {
  const int a = Task("a");
  v1::ReportTimingRequest started = TaskEvent(*run_, "a", v1::TASK_EVENT_TYPE_STARTED, kStart);
  EXPECT_FALSE(IsRepeat(*run_, a, started));
  ASSERT_TRUE(run_->planner->Started(a, kStart, kStart, absl::ZeroDuration()).ok());
  EXPECT_TRUE(IsRepeat(*run_, a, started));
  v1::ReportTimingRequest with_coldness = started;
  with_coldness.set_cold(true);
  EXPECT_FALSE(IsRepeat(*run_, a, with_coldness));  // The outcome is not settled yet.
  run_->tasks[a].outcome_counted = true;
  EXPECT_TRUE(IsRepeat(*run_, a, with_coldness));
  v1::ReportTimingRequest finished = TaskEvent(*run_, "a", v1::TASK_EVENT_TYPE_FINISHED, kStart);
  EXPECT_FALSE(IsRepeat(*run_, a, finished));
  ASSERT_TRUE(run_->planner->Finished(a, kStart + absl::Seconds(5), kStart).ok());
  EXPECT_TRUE(IsRepeat(*run_, a, finished));
  EXPECT_FALSE(IsRepeat(*run_, a, TaskEvent(*run_, "a", v1::TASK_EVENT_TYPE_FAILED, kStart)));
}

TEST_F(EventLearningTest, AStartAfterEveryParentFinishedTeachesTheDispatchGap) {
  const int a = Task("a"), b = Task("b");
  EXPECT_EQ(DispatchGapLesson(*run_, a, kStart, kStart), std::nullopt);  // A root has no gap.
  ASSERT_TRUE(run_->planner->Started(a, kStart, kStart, absl::ZeroDuration()).ok());
  const absl::Time done = kStart + absl::Seconds(10);
  EXPECT_EQ(DispatchGapLesson(*run_, b, done, done), std::nullopt);  // a still runs.
  ASSERT_TRUE(run_->planner->Finished(a, done, done).ok());
  std::optional<Observation> gap =
      DispatchGapLesson(*run_, b, done + absl::Milliseconds(1500), done);
  ASSERT_TRUE(gap.has_value());
  EXPECT_EQ(gap->kind, Observation::Kind::kDispatchGap);
  EXPECT_EQ(gap->key, "wf");
  EXPECT_DOUBLE_EQ(gap->value, 1.5);
  EXPECT_EQ(gap->time, done);
  // A start stamped before the parent's finish teaches nothing.
  EXPECT_EQ(DispatchGapLesson(*run_, b, done - absl::Seconds(1), done), std::nullopt);
}

TEST_F(EventLearningTest, AFinishTeachesTheWarmRunTimeWithoutTheColdStartPaid) {
  const int a = Task("a");
  const absl::Time end = kStart + absl::Seconds(12);
  v1::ReportTimingRequest finished = TaskEvent(*run_, "a", v1::TASK_EVENT_TYPE_FINISHED, end);

  // A hit paid nothing: all 12 s are the task's.
  run_->tasks[a].outcome = v1::TASK_OUTCOME_HIT;
  std::vector<Observation> hit = FinishedLessons(*run_, a, finished, kStart, end, end);
  ASSERT_EQ(hit.size(), 3u);
  EXPECT_EQ(hit[0].kind, Observation::Kind::kTaskDuration);
  EXPECT_EQ(hit[0].key, History::TaskKey("wf", "a"));
  EXPECT_DOUBLE_EQ(hit[0].value, 12);
  EXPECT_EQ(hit[1].kind, Observation::Kind::kServiceDuration);
  EXPECT_EQ(hit[1].key, "svc-a");
  EXPECT_DOUBLE_EQ(hit[1].value, 12);
  EXPECT_EQ(hit[2].kind, Observation::Kind::kTaskRun);
  EXPECT_DOUBLE_EQ(hit[2].value, 1);

  // A miss paid the expected cold start (the 2 s prior).
  run_->tasks[a].outcome = v1::TASK_OUTCOME_MISS;
  EXPECT_DOUBLE_EQ(FinishedLessons(*run_, a, finished, kStart, end, end)[0].value, 10);
  // Late: only the rest of its warm-up's start (fired 0.5 s before the task started).
  run_->tasks[a].outcome = v1::TASK_OUTCOME_LATE;
  run_->tasks[a].fired_at = kStart - absl::Milliseconds(500);
  EXPECT_DOUBLE_EQ(FinishedLessons(*run_, a, finished, kStart, end, end)[0].value, 10.5);
  // A reported cold start wins over every estimate.
  finished.set_cold(true);
  *finished.mutable_cold_start() = ToProtoDuration(absl::Seconds(4));
  EXPECT_DOUBLE_EQ(FinishedLessons(*run_, a, finished, kStart, end, end)[0].value, 8);
  // Never negative.
  *finished.mutable_cold_start() = ToProtoDuration(absl::Seconds(20));
  EXPECT_DOUBLE_EQ(FinishedLessons(*run_, a, finished, kStart, end, end)[0].value, 0);
}

TEST_F(EventLearningTest, ATaskWithoutAServiceTeachesNoServiceDuration) {
  History history(TestHistoryOptions());
  std::unique_ptr<prewarm::Run> run =
      BuildTestRun(ChainRequest("run-2", {"x"}, kStart, /*services=*/false), kNow, history);
  const absl::Time end = kStart + absl::Seconds(3);
  std::vector<Observation> lessons = FinishedLessons(
      *run, 0, TaskEvent(*run, "x", v1::TASK_EVENT_TYPE_FINISHED, end), kStart, end, end);
  ASSERT_EQ(lessons.size(), 2u);
  EXPECT_EQ(lessons[0].kind, Observation::Kind::kTaskDuration);
  EXPECT_DOUBLE_EQ(lessons[0].value, 3);
  EXPECT_EQ(lessons[1].kind, Observation::Kind::kTaskRun);
}

TEST_F(EventLearningTest, ASkipTeachesThatTheBranchDidNotRunOnlyIfAnUpstreamRan) {
  const int a = Task("a"), b = Task("b");
  ASSERT_TRUE(run_->planner->Skipped(a, kStart, kStart).ok());
  std::optional<Observation> root = SkippedLesson(*run_, a, kStart);
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(root->kind, Observation::Kind::kTaskRun);
  EXPECT_DOUBLE_EQ(root->value, 0);
  // b is skipped because a was: nothing about b's own branch.
  EXPECT_EQ(SkippedLesson(*run_, b, kStart), std::nullopt);

  std::unique_ptr<prewarm::Run> other =
      BuildTestRun(ChainRequest("run-3", {"a", "b"}, kStart), kNow, history_);
  ASSERT_TRUE(other->planner->Started(0, kStart, kStart, absl::ZeroDuration()).ok());
  ASSERT_TRUE(other->planner->Finished(0, kStart + absl::Seconds(1), kStart).ok());
  ASSERT_TRUE(other->planner->Skipped(1, kStart + absl::Seconds(2), kStart).ok());
  std::optional<Observation> branch = SkippedLesson(*other, 1, kStart);
  ASSERT_TRUE(branch.has_value());
  EXPECT_EQ(branch->key, History::TaskKey("wf", "b"));
  EXPECT_DOUBLE_EQ(branch->value, 0);
}

TEST_F(EventLearningTest, AReportedColdStartIsLearnedOncePerTask) {
  const int a = Task("a");
  v1::ReportTimingRequest invoked =
      TaskEvent(*run_, "a", v1::TASK_EVENT_TYPE_SERVICE_INVOKED, kStart);
  EXPECT_EQ(NewReportedColdStart(*run_, a, invoked), std::nullopt);  // None reported.
  *invoked.mutable_cold_start() = ToProtoDuration(absl::Seconds(3));
  EXPECT_EQ(NewReportedColdStart(*run_, a, invoked), absl::Seconds(3));
  invoked.set_cold(false);  // A warm call's "cold start" is no cold start.
  EXPECT_EQ(NewReportedColdStart(*run_, a, invoked), std::nullopt);
  invoked.set_cold(true);
  run_->tasks[a].reported_cold_start = absl::Seconds(3);
  EXPECT_EQ(NewReportedColdStart(*run_, a, invoked), std::nullopt);  // Learned already.

  TaskRuntime rt;
  rt.outcome = v1::TASK_OUTCOME_MISS;
  EXPECT_TRUE(ReportedColdStartIsWhole(rt));
  rt.outcome = v1::TASK_OUTCOME_LATE;  // It waited for part of its warm-up's start only.
  EXPECT_FALSE(ReportedColdStartIsWhole(rt));
}

TEST_F(EventLearningTest, AWarmupTeachesAColdStartOrAWarmLatency) {
  std::optional<Observation> cold =
      WarmupLesson("svc-a", absl::Seconds(2), /*cold=*/true, /*joined_start=*/false, kNow);
  ASSERT_TRUE(cold.has_value());
  EXPECT_EQ(cold->kind, Observation::Kind::kColdStart);
  EXPECT_EQ(cold->key, "svc-a");
  EXPECT_DOUBLE_EQ(cold->value, 2);
  EXPECT_EQ(cold->time, kNow);
  std::optional<Observation> warm =
      WarmupLesson("svc-a", absl::Milliseconds(20), /*cold=*/false, /*joined_start=*/false, kNow);
  ASSERT_TRUE(warm.has_value());
  EXPECT_EQ(warm->kind, Observation::Kind::kWarmLatency);
  EXPECT_DOUBLE_EQ(warm->value, 0.02);
}

// Issue 13: a warm-up sent while another one was starting the service's container waits only for
// the rest of that start; its latency is no cold start.
TEST_F(EventLearningTest, AWarmupThatJoinedAStartInProgressTeachesNoColdStart) {
  EXPECT_EQ(WarmupLesson("svc-a", absl::Milliseconds(400), /*cold=*/true,
                         /*joined_start=*/true, kNow),
            std::nullopt);
  // Warm, it still measures a warm call.
  std::optional<Observation> warm = WarmupLesson("svc-a", absl::Milliseconds(20), /*cold=*/false,
                                                 /*joined_start=*/true, kNow);
  ASSERT_TRUE(warm.has_value());
  EXPECT_EQ(warm->kind, Observation::Kind::kWarmLatency);
}

}  // namespace
}  // namespace prewarm
