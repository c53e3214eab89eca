#include "server/plan_proto.h"

#include <memory>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/proto_time.h"
#include "tests/server/test_runs.h"

namespace prewarm {
namespace {

using ::prewarm::testing::BuildTestRun;
using ::prewarm::testing::ChainRequest;
using ::prewarm::testing::TestHistoryOptions;

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);
const absl::Time kStart = kNow + absl::Seconds(60);

absl::Time T(const google::protobuf::Timestamp& t) { return FromProto(t, "test").value(); }
absl::Duration D(const google::protobuf::Duration& d) { return FromProto(d, "test").value(); }

// With the point priors (duration 10 s, cold start 2 s, gap 1 s) a chain a -> b starting at
// kStart plans a at kStart and b at kStart + 11 s, each warmed 2 s early.
TEST(PlanProtoTest, ShowsEveryTaskOfThePlan) {
  History history(TestHistoryOptions());
  std::unique_ptr<prewarm::Run> run =
      BuildTestRun(ChainRequest("run-1", {"a", "b"}, kStart), kNow, history);
  v1::RunPlan plan = PlanProto(*run);
  EXPECT_EQ(plan.run_id(), "run-1");
  EXPECT_EQ(plan.workflow_id(), "wf");
  EXPECT_EQ(T(plan.start_time()), kStart);
  EXPECT_EQ(T(plan.plan_time()), kNow);
  EXPECT_EQ(plan.replan_count(), 0);
  ASSERT_EQ(plan.tasks_size(), 2);
  const v1::TaskPlan& b = plan.tasks(1);
  EXPECT_EQ(b.task_id(), "b");
  EXPECT_EQ(b.service(), "svc-b");
  EXPECT_EQ(T(b.expected_start_time()), kStart + absl::Seconds(11));
  EXPECT_EQ(T(b.warmup_time()), kStart + absl::Seconds(9));
  EXPECT_EQ(D(b.expected_cold_start()), absl::Seconds(2));
  EXPECT_EQ(b.decision(), v1::WARMUP_DECISION_WARM);
  EXPECT_EQ(b.confidence(), v1::CONFIDENCE_LOW);  // Priors only.
  EXPECT_EQ(b.task_state(), v1::TASK_STATE_PENDING);
  EXPECT_EQ(b.warmup_state(), v1::WARMUP_STATE_NONE);
  EXPECT_EQ(b.outcome(), v1::TASK_OUTCOME_UNSPECIFIED);
  EXPECT_FALSE(b.has_actual_start_time());
  EXPECT_FALSE(b.reason().empty());
}

TEST(PlanProtoTest, ShowsWhatHappenedToATask) {
  History history(TestHistoryOptions());
  std::unique_ptr<prewarm::Run> run =
      BuildTestRun(ChainRequest("run-1", {"a", "b"}, kStart), kNow, history);
  ASSERT_TRUE(run->planner->Started(0, kStart, kStart, absl::ZeroDuration()).ok());
  TaskRuntime& a = run->tasks[0];
  a.warmup = v1::WARMUP_STATE_READY;
  a.fired_at = kStart - absl::Seconds(2);
  a.outcome = v1::TASK_OUTCOME_HIT;
  a.actual_start = kStart;
  v1::TaskPlan out;
  TaskPlanProto(*run, 0, &out);
  EXPECT_EQ(out.task_state(), v1::TASK_STATE_RUNNING);
  EXPECT_EQ(out.warmup_state(), v1::WARMUP_STATE_READY);
  EXPECT_EQ(out.outcome(), v1::TASK_OUTCOME_HIT);
  EXPECT_EQ(T(out.actual_start_time()), kStart);
  // Started: no warm-up planned any more, so the time shown is when it fired.
  EXPECT_EQ(out.decision(), v1::WARMUP_DECISION_SKIP_STARTED);
  EXPECT_EQ(T(out.warmup_time()), kStart - absl::Seconds(2));
}

TEST(PlanProtoTest, EnumsMapOneToOne) {
  EXPECT_EQ(ToProto(WarmupDecision::kSkipAlreadyWarm), v1::WARMUP_DECISION_SKIP_ALREADY_WARM);
  EXPECT_EQ(ToProto(WarmupDecision::kSkipTooLate), v1::WARMUP_DECISION_SKIP_TOO_LATE);
  EXPECT_EQ(ToProto(WarmupDecision::kDeferred), v1::WARMUP_DECISION_DEFERRED);
  EXPECT_EQ(ToProto(Confidence::kMedium), v1::CONFIDENCE_MEDIUM);
  EXPECT_EQ(ToProto(TaskState::kSkipped), v1::TASK_STATE_SKIPPED);
  EXPECT_EQ(ToProto(TaskState::kFailed), v1::TASK_STATE_FAILED);
}

TEST(ServiceStatsProtoTest, SummarisesTheHistoryAndTheCounters) {
  History history(TestHistoryOptions());
  for (double seconds : {1.0, 2.0, 3.0}) history.AddColdStart("svc", absl::Seconds(seconds));
  ServiceCounts counts{.hits = 4, .misses = 3, .lates = 2, .fired = 9, .failed = 1};
  v1::GetServiceStatsResponse out =
      ServiceStatsProto("svc", history, &counts, kNow + absl::Seconds(30), kNow);
  EXPECT_EQ(out.service(), "svc");
  EXPECT_EQ(out.cold_start().sample_count(), 3);
  EXPECT_EQ(D(out.cold_start().mean()), absl::Seconds(2));
  EXPECT_EQ(D(out.cold_start().p50()), absl::Seconds(2));
  EXPECT_EQ(out.duration().sample_count(), 0);  // No samples: an empty summary.
  EXPECT_EQ(out.hit_count(), 4);
  EXPECT_EQ(out.miss_count(), 3);
  EXPECT_EQ(out.late_count(), 2);
  EXPECT_EQ(out.warmups_fired(), 9);
  EXPECT_EQ(out.warmups_failed(), 1);
  EXPECT_EQ(T(out.warm_until()), kNow + absl::Seconds(30));

  v1::GetServiceStatsResponse cold =
      ServiceStatsProto("svc", history, nullptr, kNow - absl::Seconds(1), kNow);
  EXPECT_EQ(cold.hit_count(), 0);
  EXPECT_FALSE(cold.has_warm_until());  // Not warm now.
}

}  // namespace
}  // namespace prewarm
