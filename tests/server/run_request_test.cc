#include "server/run_request.h"

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/proto_time.h"
#include "tests/server/test_runs.h"

namespace prewarm {
namespace {

using ::prewarm::testing::ChainRequest;
using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

// Expects `status` to be INVALID_ARGUMENT with a message containing `text`.
void ExpectInvalid(const absl::Status& status, const std::string& text) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(text));
}

TEST(ParseRunRequestTest, FillsInTheStartTimeAndTheDefaultRatio) {
  v1::PrewarmRequest request = ChainRequest("run-1", {"a", "b"}, kNow);
  request.clear_start_time();
  absl::StatusOr<RunRequest> r = ParseRunRequest(request, kNow, {.default_delay_cost_ratio = 7});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->start, kNow);
  EXPECT_EQ(FromProto(r->request.start_time(), "").value(), kNow);
  EXPECT_EQ(r->delay_cost_ratio, 7);
  EXPECT_EQ(r->request.delay_cost_ratio(), 7);
  ASSERT_EQ(r->dag->size(), 2);
  EXPECT_EQ(r->dag->parents(*r->dag->Find("b")), std::vector<int>{*r->dag->Find("a")});
}

TEST(ParseRunRequestTest, KeepsAGivenStartAndRatio) {
  v1::PrewarmRequest request = ChainRequest("run-1", {"a"}, kNow + absl::Hours(1));
  request.set_delay_cost_ratio(3.5);
  absl::StatusOr<RunRequest> r = ParseRunRequest(request, kNow, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->start, kNow + absl::Hours(1));
  EXPECT_EQ(r->delay_cost_ratio, 3.5);
}

TEST(ParseRunRequestTest, EachBadFieldIsNamed) {
  v1::PrewarmRequest no_run = ChainRequest("", {"a"}, kNow);
  ExpectInvalid(ParseRunRequest(no_run, kNow, {}).status(), "run_id is empty");
  v1::PrewarmRequest no_workflow = ChainRequest("run-1", {"a"}, kNow);
  no_workflow.clear_workflow_id();
  ExpectInvalid(ParseRunRequest(no_workflow, kNow, {}).status(), "workflow_id is empty");

  const RunRequestLimits limits{.max_future_start = absl::Hours(2),
                                .max_past_start = absl::Hours(1)};
  ExpectInvalid(
      ParseRunRequest(ChainRequest("run-1", {"a"}, kNow + absl::Hours(3)), kNow, limits).status(),
      "in the future");
  ExpectInvalid(
      ParseRunRequest(ChainRequest("run-1", {"a"}, kNow - absl::Hours(2)), kNow, limits).status(),
      "in the past");
  v1::PrewarmRequest bad_time = ChainRequest("run-1", {"a"}, kNow);
  bad_time.mutable_start_time()->set_nanos(-1);
  ExpectInvalid(ParseRunRequest(bad_time, kNow, {}).status(), "start_time");

  for (double ratio : {-1.0, 2e6, std::numeric_limits<double>::quiet_NaN()}) {
    v1::PrewarmRequest r = ChainRequest("run-1", {"a"}, kNow);
    r.set_delay_cost_ratio(ratio);
    ExpectInvalid(ParseRunRequest(r, kNow, {}).status(), "delay_cost_ratio");
  }

  for (absl::Duration hint : {absl::ZeroDuration(), absl::Seconds(-1), absl::Hours(24 * 8)}) {
    v1::PrewarmRequest r = ChainRequest("run-1", {"a", "b"}, kNow);
    *r.mutable_tasks(1)->mutable_expected_duration() = ToProtoDuration(hint);
    ExpectInvalid(ParseRunRequest(r, kNow, {}).status(), "task 'b': expected_duration");
  }
  v1::PrewarmRequest bad_hint = ChainRequest("run-1", {"a"}, kNow);
  bad_hint.mutable_tasks(0)->mutable_expected_duration()->set_nanos(-5);
  bad_hint.mutable_tasks(0)->mutable_expected_duration()->set_seconds(3);
  ExpectInvalid(ParseRunRequest(bad_hint, kNow, {}).status(), "task 'a': expected_duration");

  v1::PrewarmRequest cycle = ChainRequest("run-1", {"a", "b"}, kNow);
  cycle.mutable_tasks(0)->add_upstream_task_ids("b");
  ExpectInvalid(ParseRunRequest(cycle, kNow, {}).status(), "cycle");
  v1::PrewarmRequest unknown = ChainRequest("run-1", {"a"}, kNow);
  unknown.mutable_tasks(0)->add_upstream_task_ids("nowhere");
  ExpectInvalid(ParseRunRequest(unknown, kNow, {}).status(), "nowhere");
}

TEST(ParseRunRequestTest, CarriesEachTasksDurationHintIntoTheDag) {
  v1::PrewarmRequest r = ChainRequest("run-1", {"a", "b"}, kNow);
  *r.mutable_tasks(1)->mutable_expected_duration() = ToProtoDuration(absl::Seconds(42));
  absl::StatusOr<RunRequest> parsed = ParseRunRequest(r, kNow, {});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->dag->task(*parsed->dag->Find("a")).expected_duration, std::nullopt);
  EXPECT_EQ(parsed->dag->task(*parsed->dag->Find("b")).expected_duration, absl::Seconds(42));
}

TEST(ParseRunRequestTest, TooManyTasksIsResourceExhausted) {
  absl::Status s =
      ParseRunRequest(ChainRequest("run-1", {"a", "b", "c"}, kNow), kNow, {.dag = {.max_tasks = 2}})
          .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("the DAG has 3 tasks; the limit is 2"));
}

TEST(ParseRunRequestTest, IdsAreCheckedBeforeTheDag) {
  v1::PrewarmRequest r = ChainRequest("", {"a", "b", "c"}, kNow);
  EXPECT_EQ(ParseRunRequest(r, kNow, {.dag = {.max_tasks = 2}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

v1::ReportTimingRequest Event(v1::TaskEventType type) {
  v1::ReportTimingRequest r;
  r.set_run_id("run-1");
  r.set_task_id("a");
  r.set_event(type);
  return r;
}

TEST(ParseTaskEventTest, FillsInTheEventTime) {
  absl::StatusOr<v1::ReportTimingRequest> e =
      ParseTaskEvent(Event(v1::TASK_EVENT_TYPE_STARTED), kNow, absl::Minutes(5));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(FromProto(e->event_time(), "").value(), kNow);
  v1::ReportTimingRequest given = Event(v1::TASK_EVENT_TYPE_FINISHED);
  *given.mutable_event_time() = ToProtoTimestamp(kNow - absl::Seconds(3));
  e = ParseTaskEvent(given, kNow, absl::Minutes(5));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(FromProto(e->event_time(), "").value(), kNow - absl::Seconds(3));
}

TEST(ParseTaskEventTest, EachBadFieldIsNamed) {
  ExpectInvalid(
      ParseTaskEvent(Event(v1::TASK_EVENT_TYPE_UNSPECIFIED), kNow, absl::Minutes(5)).status(),
      "event 0 is not a task event type");
  ExpectInvalid(
      ParseTaskEvent(Event(static_cast<v1::TaskEventType>(99)), kNow, absl::Minutes(5)).status(),
      "event 99 is not a task event type");

  v1::ReportTimingRequest ahead = Event(v1::TASK_EVENT_TYPE_STARTED);
  *ahead.mutable_event_time() = ToProtoTimestamp(kNow + absl::Minutes(6));
  ExpectInvalid(ParseTaskEvent(ahead, kNow, absl::Minutes(5)).status(),
                "is 6m ahead of the server's clock");
  // Within the skew is fine.
  *ahead.mutable_event_time() = ToProtoTimestamp(kNow + absl::Minutes(4));
  EXPECT_TRUE(ParseTaskEvent(ahead, kNow, absl::Minutes(5)).ok());

  v1::ReportTimingRequest negative = Event(v1::TASK_EVENT_TYPE_SERVICE_INVOKED);
  *negative.mutable_cold_start() = ToProtoDuration(absl::Seconds(-1));
  ExpectInvalid(ParseTaskEvent(negative, kNow, absl::Minutes(5)).status(), "cold_start -1s");
  v1::ReportTimingRequest long_start = Event(v1::TASK_EVENT_TYPE_SERVICE_INVOKED);
  *long_start.mutable_cold_start() = ToProtoDuration(absl::Minutes(11));
  ExpectInvalid(ParseTaskEvent(long_start, kNow, absl::Minutes(5)).status(), "must be in [0, 10m]");
  v1::ReportTimingRequest malformed = Event(v1::TASK_EVENT_TYPE_SERVICE_INVOKED);
  malformed.mutable_cold_start()->set_nanos(-5);
  malformed.mutable_cold_start()->set_seconds(1);
  ExpectInvalid(ParseTaskEvent(malformed, kNow, absl::Minutes(5)).status(), "cold_start");
}

TEST(ParseTaskEventTest, TheViewIsNotPartOfTheEvent) {
  v1::ReportTimingRequest summary = Event(v1::TASK_EVENT_TYPE_STARTED);
  summary.set_view(v1::REPORT_TIMING_VIEW_SUMMARY);
  absl::StatusOr<v1::ReportTimingRequest> e = ParseTaskEvent(summary, kNow, absl::Minutes(5));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->view(), v1::REPORT_TIMING_VIEW_UNSPECIFIED);  // Stored as before views.
}

TEST(CheckReportViewTest, OnlyKnownViewsPass) {
  v1::ReportTimingRequest r = Event(v1::TASK_EVENT_TYPE_STARTED);
  for (v1::ReportTimingView view : {v1::REPORT_TIMING_VIEW_UNSPECIFIED, v1::REPORT_TIMING_VIEW_FULL,
                                    v1::REPORT_TIMING_VIEW_SUMMARY}) {
    r.set_view(view);
    EXPECT_TRUE(CheckReportView(r).ok()) << view;
  }
  r.set_view(static_cast<v1::ReportTimingView>(7));
  ExpectInvalid(CheckReportView(r), "view 7 is not a ReportTimingView");
}

TEST(UnknownIdsTest, AMalformedIdIsInvalidAWellFormedOneNotFound) {
  ExpectInvalid(RunNotActiveError(""), "run_id is empty");
  absl::Status s = RunNotActiveError("run-9");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "run 'run-9' is not active");
  ExpectInvalid(TaskNotFoundError("run-1", ""), "task_id is empty");
  s = TaskNotFoundError("run-1", "zz");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "run 'run-1' has no task 'zz'");
}

TEST(ParseWarmupReportTest, ReadsAGoodReport) {
  v1::ReportWarmupRequest r;
  r.set_warmup_id("42");
  r.set_success(true);
  *r.mutable_latency() = ToProtoDuration(absl::Milliseconds(1500));
  r.set_cold(true);
  absl::StatusOr<WarmupReport> w = ParseWarmupReport(r);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->id, 42u);
  EXPECT_TRUE(w->success);
  EXPECT_EQ(w->latency, absl::Milliseconds(1500));
  EXPECT_EQ(w->cold, true);
  // A failure needs no latency.
  v1::ReportWarmupRequest failed;
  failed.set_warmup_id("7");
  w = ParseWarmupReport(failed);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_FALSE(w->success);
  EXPECT_EQ(w->cold, std::nullopt);
}

TEST(ParseWarmupReportTest, EachBadFieldIsNamed) {
  v1::ReportWarmupRequest r;
  ExpectInvalid(ParseWarmupReport(r).status(), "warmup_id '' is not an id from WatchWarmups");
  r.set_warmup_id("abc");
  ExpectInvalid(ParseWarmupReport(r).status(), "warmup_id 'abc'");
  r.set_warmup_id("3");
  r.set_success(true);
  ExpectInvalid(ParseWarmupReport(r).status(), "latency is required for a successful warm-up");
  *r.mutable_latency() = ToProtoDuration(absl::Minutes(11));
  ExpectInvalid(ParseWarmupReport(r).status(), "latency 11m must be in [0, 10m]");
  *r.mutable_latency() = ToProtoDuration(absl::Seconds(-2));
  ExpectInvalid(ParseWarmupReport(r).status(), "latency -2s");
}

}  // namespace
}  // namespace prewarm
