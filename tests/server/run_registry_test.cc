#include "server/run_registry.h"

#include <stdlib.h>
#include <string.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/arena_allocator.h"
#include "server/delegated_warmups.h"
#include "server/history_store.h"
#include "server/http_warmer.h"
#include "server/metrics.h"
#include "server/proto_time.h"
#include "server/service_registry.h"
#include "server/timer_queue.h"
#include "server/url_allowlist.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_http_target.h"  // Route
#include "tests/fakes/fake_http_warmer.h"
#include "tests/fakes/forwarding_history_store.h"
#include "tests/fakes/in_memory_history_store.h"

namespace prewarm {
namespace {

using ::prewarm::testing::FakeHttpWarmer;
using ::prewarm::testing::Route;
using ::testing::HasSubstr;
using ::testing::Optional;

// Generous: only a broken warmer comes near it, however loaded the machine. Nothing waits for it
// when the code works.
constexpr absl::Duration kPatience = absl::Seconds(30);
// Where the services' warm-up URLs point; nothing listens: the FakeHttpWarmer sends nothing.
constexpr char kEndpoint[] = "http://127.0.0.1:9";

absl::Time T(const google::protobuf::Timestamp& t) { return FromProto(t, "test").value(); }
absl::Duration D(const google::protobuf::Duration& d) { return FromProto(d, "test").value(); }

const v1::TaskPlan& TaskOf(const v1::RunPlan& plan, absl::string_view task_id) {
  for (const v1::TaskPlan& t : plan.tasks()) {
    if (t.task_id() == task_id) return t;
  }
  ADD_FAILURE() << "no task " << task_id << " in the plan of " << plan.run_id();
  static const v1::TaskPlan* const kNone = new v1::TaskPlan();
  return *kNone;
}

// The value of the sample `name` whose labels include all of `labels`, from the text exposition
// format; nullopt when there is none.
std::optional<double> MetricValue(const std::string& text, absl::string_view name,
                                  const std::map<std::string, std::string>& labels = {}) {
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "#")) continue;
    const size_t end = line.find_first_of("{ ");
    if (end == absl::string_view::npos || line.substr(0, end) != name) continue;
    bool all = true;
    for (const auto& [key, value] : labels) {
      all = all && absl::StrContains(line, absl::StrCat(key, "=\"", value, "\""));
    }
    if (!all) continue;
    double v = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) return v;
  }
  return std::nullopt;
}

struct Event {
  std::optional<absl::Time> at;  // event_time; unset: the server's now
  std::optional<bool> cold;
  std::optional<absl::Duration> cold_start;
};

class RunRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    metrics_ = Metrics::Create({.listen_address = ""}).value();
    options_.history.dispatch_gap_prior = absl::Seconds(1);
    options_.history.cold_start_prior = absl::Seconds(2);
    options_.history.duration_prior = absl::Seconds(10);
    options_.max_active_runs = 4;
    options_.dag.max_tasks = 8;
    options_.run_idle_timeout = absl::Minutes(30);
    // Most tests read every decision from the Prewarm reply: eager planning, unless a test turns
    // lazy planning on (RunRegistryLazyTest).
    options_.planner.lazy_planning = lazy_planning_;
    Boot(NewInMemoryHistoryStore());
    t0_ = clock_.Now();
    for (const char* name : {"svc-a", "svc-b", "svc-c"}) RegisterManaged(name);
  }

  void TearDown() override { Halt(); }

  // Builds a fresh process's worth of parts over `store`.
  // `warmer`: a FakeHttpWarmer whose warm-ups Answer() ends, when null.
  void Boot(std::unique_ptr<HistoryStore> store, std::unique_ptr<HttpWarmer> warmer = nullptr) {
    store_ = std::move(store);
    services_ = std::make_unique<ServiceRegistry>(UrlAllowlist::Default(), ServiceDefaults{});
    timers_ = std::make_unique<TimerQueue>(clock_);
    delegated_ = std::make_unique<DelegatedWarmups>();
    warmer_ = warmer != nullptr ? std::move(warmer) : std::make_unique<FakeHttpWarmer>();
    fake_warmer_ = dynamic_cast<FakeHttpWarmer*>(warmer_.get());
    registry_ =
        std::make_unique<RunRegistry>(options_, RunRegistryDeps{.clock = &clock_,
                                                                .services = services_.get(),
                                                                .timers = timers_.get(),
                                                                .warmer = warmer_.get(),
                                                                .delegated = delegated_.get(),
                                                                .store = store_.get(),
                                                                .metrics = metrics_.get()});
  }

  // Stops everything, like a process exiting: the warmer first, since its callbacks call into
  // the registry.
  void Halt() {
    if (warmer_ != nullptr) warmer_->Shutdown();
    if (fake_warmer_ != nullptr) {  // What this process sent, for Requests() after a restart.
      for (WarmupRequest& r : fake_warmer_->fired()) sent_before_.push_back(std::move(r));
      fake_warmer_ = nullptr;
    }
    registry_.reset();
    warmer_.reset();
    delegated_.reset();
    timers_.reset();
    services_.reset();
    if (store_ != nullptr) {
      EXPECT_TRUE(store_->Close().ok());
    }
    store_.reset();
  }

  void Register(const v1::Service& service) {
    std::promise<absl::StatusOr<v1::RegisterServiceResponse>> done;
    registry_->RegisterService(service, [&](absl::StatusOr<v1::RegisterServiceResponse> r) {
      done.set_value(std::move(r));
    });
    absl::StatusOr<v1::RegisterServiceResponse> r = done.get_future().get();
    ASSERT_TRUE(r.ok()) << r.status();
  }

  void RegisterManaged(const std::string& name, std::optional<absl::Duration> warm_latency = {}) {
    v1::Service s;
    s.set_name(name);
    s.set_warmup_url(absl::StrCat(kEndpoint, "/", name));
    if (warm_latency.has_value()) *s.mutable_warm_latency() = ToProtoDuration(*warm_latency);
    Register(s);
  }

  void RegisterDelegated(const std::string& name) {
    v1::Service s;
    s.set_name(name);
    s.set_mode(v1::WARMUP_MODE_DELEGATED);
    Register(s);
  }
  // Run "run-1": one task x on `service`, starting a minute from t0 (warmed at 58 s).
  v1::PrewarmRequest OneTaskRun(const std::string& service) {
    v1::PrewarmRequest request;
    request.set_run_id("run-1");
    request.set_workflow_id("wf");
    v1::Task* x = request.add_tasks();
    x->set_task_id("x");
    x->set_service(service);
    *request.mutable_start_time() = ToProtoTimestamp(t0_ + absl::Seconds(60));
    return request;
  }

  // A chain a -> b -> c on svc-a, svc-b, svc-c, starting `lead` after now.
  v1::PrewarmRequest Chain(const std::string& run_id, absl::Duration lead = absl::Seconds(60)) {
    v1::PrewarmRequest r;
    r.set_run_id(run_id);
    r.set_workflow_id("wf");
    std::string previous;
    for (const char* task : {"a", "b", "c"}) {
      v1::Task* t = r.add_tasks();
      t->set_task_id(task);
      t->set_service(absl::StrCat("svc-", task));
      if (!previous.empty()) t->add_upstream_task_ids(previous);
      previous = task;
    }
    *r.mutable_start_time() = ToProtoTimestamp(clock_.Now() + lead);
    return r;
  }

  absl::StatusOr<v1::RunPlan> Prewarm(const v1::PrewarmRequest& request) {
    std::promise<absl::StatusOr<v1::RunPlan>> done;
    std::future<absl::StatusOr<v1::RunPlan>> result = done.get_future();
    registry_->Prewarm(request,
                       [&](absl::StatusOr<v1::RunPlan> plan) { done.set_value(std::move(plan)); });
    if (result.wait_for(absl::ToChronoSeconds(kPatience)) != std::future_status::ready) {
      return absl::DeadlineExceededError("Prewarm never answered");
    }
    return result.get();
  }

  absl::StatusOr<v1::ReportTimingResponse> Report(const v1::ReportTimingRequest& request) {
    std::promise<absl::StatusOr<v1::ReportTimingResponse>> done;
    std::future<absl::StatusOr<v1::ReportTimingResponse>> result = done.get_future();
    registry_->ReportTiming(request, [&](absl::StatusOr<v1::ReportTimingResponse> response) {
      done.set_value(std::move(response));
    });
    if (result.wait_for(absl::ToChronoSeconds(kPatience)) != std::future_status::ready) {
      return absl::DeadlineExceededError("ReportTiming never answered");
    }
    return result.get();
  }

  absl::StatusOr<v1::ReportTimingResponse> Report(const std::string& run, const std::string& task,
                                                  v1::TaskEventType type, Event e = {}) {
    v1::ReportTimingRequest r;
    r.set_run_id(run);
    r.set_task_id(task);
    r.set_event(type);
    if (e.at.has_value()) *r.mutable_event_time() = ToProtoTimestamp(*e.at);
    if (e.cold.has_value()) r.set_cold(*e.cold);
    if (e.cold_start.has_value()) *r.mutable_cold_start() = ToProtoDuration(*e.cold_start);
    return Report(r);
  }

  // Run "run-<i>" of workflow "wf-<i>": one task on unregistered service "tenant-<i>", started
  // and finished, so that it teaches new keys (dynamic DAG ids, per-tenant services).
  void OneRunOfNewNames(int i) {
    v1::PrewarmRequest request;
    request.set_run_id(absl::StrCat("run-", i));
    request.set_workflow_id(absl::StrCat("wf-", i));
    v1::Task* x = request.add_tasks();
    x->set_task_id("x");
    x->set_service(absl::StrCat("tenant-", i));
    *request.mutable_start_time() = ToProtoTimestamp(clock_.Now());
    ASSERT_TRUE(Prewarm(request).ok());
    ASSERT_TRUE(Report(request.run_id(), "x", v1::TASK_EVENT_TYPE_STARTED, {.cold = true}).ok());
    clock_.AdvanceTo(clock_.Now() + absl::Seconds(1));
    ASSERT_TRUE(Report(request.run_id(), "x", v1::TASK_EVENT_TYPE_FINISHED).ok());
  }

  // Distinct (kind, key) in the store.
  size_t StoredKeys() {
    EXPECT_TRUE(store_->Flush().ok());
    std::set<std::pair<int, std::string>> keys;
    EXPECT_TRUE(store_
                    ->LoadObservations([&](const Observation& o) {
                      keys.emplace(static_cast<int>(o.kind), o.key);
                    })
                    .ok());
    return keys.size();
  }

  v1::TaskPlan Task(const std::string& run, absl::string_view task) {
    absl::StatusOr<v1::RunPlan> plan = registry_->GetPlan(run);
    EXPECT_TRUE(plan.ok()) << plan.status();
    if (!plan.ok()) return {};
    return TaskOf(*plan, task);
  }

  // The warm-up requests sent to `path` of kEndpoint so far, over every restart.
  std::vector<WarmupRequest> Sent(absl::string_view path = "") const {
    std::vector<WarmupRequest> all = sent_before_;
    if (fake_warmer_ != nullptr) {
      for (WarmupRequest& r : fake_warmer_->fired()) all.push_back(std::move(r));
    }
    std::vector<WarmupRequest> out;
    for (WarmupRequest& r : all) {
      if (path.empty() || r.url == absl::StrCat(kEndpoint, path)) out.push_back(std::move(r));
    }
    return out;
  }
  int Requests(absl::string_view path) const { return static_cast<int>(Sent(path).size()); }
  int TotalRequests() const { return static_cast<int>(Sent().size()); }

  // How the warm-up endpoint `path` of kEndpoint answers (default: 200 after 5 ms).
  void SetRoute(const std::string& path, Route route) { routes_[path] = route; }

  // Ends every warm-up in flight as its endpoint's route says (a status of 400 or more fails it
  // as the real warmer does after its attempts; else it succeeds after the route's delay). Those
  // the answers fire (refreshes) stay in flight. Returns how many ended.
  int Answer() {
    if (fake_warmer_ == nullptr) return 0;
    int answered = 0;
    for (const WarmupRequest& r : fake_warmer_->pending()) {
      Route route;
      if (auto it = routes_.find(r.url.substr(std::strlen(kEndpoint))); it != routes_.end()) {
        route = it->second;
      }
      const WarmupResult result =
          route.status >= 400
              ? FakeHttpWarmer::Failure(absl::StrCat("HTTP ", route.status), route.status,
                                        r.max_attempts)
              : FakeHttpWarmer::Success(route.delay > absl::ZeroDuration() ? route.delay
                                                                           : absl::Milliseconds(5));
      EXPECT_TRUE(fake_warmer_->Complete(r.id, result).ok()) << r.id;
      ++answered;
    }
    return answered;
  }

  // Answers the warm-ups in flight, then expects the task's warm-up to be in `state`.
  bool AnswerAndExpectWarmup(const std::string& run, absl::string_view task,
                             v1::WarmupState state) {
    Answer();
    absl::StatusOr<v1::RunPlan> plan = registry_->GetPlan(run);
    if (plan.ok() && TaskOf(*plan, task).warmup_state() == state) return true;
    ADD_FAILURE() << "task " << task << " is not " << v1::WarmupState_Name(state)
                  << "; plan: " << (plan.ok() ? plan->DebugString() : plan.status().ToString());
    return false;
  }

  // Chain("run-1") once the clock is at 69 s: b's warm-up was sent, c's goes at 80 s, and that is
  // all (3 warm-ups with a's).
  void ExpectChainsLastWarmupsAt69And80() {
    ASSERT_GE(Requests("/svc-b"), 1);
    ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "b", v1::WARMUP_STATE_READY));
    EXPECT_EQ(RunUntil(t0_ + absl::Seconds(80)), 1);
    ASSERT_GE(Requests("/svc-c"), 1);
    ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "c", v1::WARMUP_STATE_READY));
    EXPECT_EQ(registry_->pending_warmups(), 0);
    EXPECT_EQ(TotalRequests(), 3);
  }

  // Moves the fake clock to `t` and runs what is due.
  int RunUntil(absl::Time t) {
    clock_.AdvanceTo(t);
    return timers_->RunDue();
  }

  v1::GetServiceStatsResponse Stats(absl::string_view service) {
    absl::StatusOr<v1::GetServiceStatsResponse> s = registry_->GetServiceStats(service);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : v1::GetServiceStatsResponse();
  }

  std::optional<double> Metric(absl::string_view name,
                               const std::map<std::string, std::string>& labels = {}) {
    return MetricValue(metrics_->Scrape(), name, labels);
  }

  FakeClock clock_;
  absl::Time t0_;
  RunRegistryOptions options_;
  bool lazy_planning_ = false;
  // The warm-ups the fake warmers of earlier processes were given.
  std::vector<WarmupRequest> sent_before_;
  std::map<std::string, Route> routes_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<HistoryStore> store_;
  std::unique_ptr<ServiceRegistry> services_;
  std::unique_ptr<TimerQueue> timers_;
  std::unique_ptr<DelegatedWarmups> delegated_;
  std::unique_ptr<HttpWarmer> warmer_;
  FakeHttpWarmer* fake_warmer_ = nullptr;  // warmer_, unless a test boots with another warmer.
  std::unique_ptr<RunRegistry> registry_;
};

// With the priors (duration 10 s, cold start 2 s, dispatch gap 1 s) every estimate is a point, so
// a chain starting at t0+60 s plans a at t0+60, b at t0+71 and c at t0+82, each warmed 2 s early.
TEST_F(RunRegistryTest, PrewarmReturnsAPlanWithDecisions) {
  absl::StatusOr<v1::RunPlan> plan = Prewarm(Chain("run-1"));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->run_id(), "run-1");
  EXPECT_EQ(plan->workflow_id(), "wf");
  EXPECT_EQ(T(plan->start_time()), t0_ + absl::Seconds(60));
  EXPECT_EQ(T(plan->plan_time()), t0_);
  EXPECT_EQ(plan->replan_count(), 0);
  ASSERT_EQ(plan->tasks_size(), 3);
  const char* ids[] = {"a", "b", "c"};
  const int starts[] = {60, 71, 82};
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(ids[i]);
    const v1::TaskPlan& t = plan->tasks(i);
    EXPECT_EQ(t.task_id(), ids[i]);
    EXPECT_EQ(t.service(), absl::StrCat("svc-", ids[i]));
    EXPECT_EQ(t.decision(), v1::WARMUP_DECISION_WARM) << t.reason();
    EXPECT_FALSE(t.reason().empty());
    EXPECT_EQ(t.confidence(), v1::CONFIDENCE_LOW);  // Priors only.
    EXPECT_EQ(t.warmup_state(), v1::WARMUP_STATE_PENDING);
    EXPECT_EQ(t.task_state(), v1::TASK_STATE_PENDING);
    EXPECT_EQ(t.outcome(), v1::TASK_OUTCOME_UNSPECIFIED);
    EXPECT_EQ(T(t.expected_start_time()), t0_ + absl::Seconds(starts[i]));
    EXPECT_EQ(D(t.expected_cold_start()), absl::Seconds(2));
    EXPECT_EQ(T(t.warmup_time()), T(t.expected_start_time()) - absl::Seconds(2));
    EXPECT_DOUBLE_EQ(t.run_probability(), 1.0);
    EXPECT_FALSE(t.has_actual_start_time());
  }
  EXPECT_EQ(registry_->active_runs(), 1);
  EXPECT_EQ(registry_->pending_warmups(), 3);
  EXPECT_EQ(timers_->NextDeadline(), t0_ + absl::Seconds(58));

  absl::StatusOr<v1::RunPlan> again = registry_->GetPlan("run-1");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->SerializeAsString(), plan->SerializeAsString());

  EXPECT_THAT(Metric("prewarm_active_runs"), Optional(1.0));
  EXPECT_THAT(Metric("prewarm_pending_warmups"), Optional(3.0));
  EXPECT_THAT(Metric("prewarm_runs_started_total"), Optional(1.0));
}

TEST_F(RunRegistryTest, SamePlanForTheSameRunAndHistory) {
  v1::PrewarmRequest request = Chain("run-1");
  request.set_dry_run(true);
  absl::StatusOr<v1::RunPlan> first = Prewarm(request);
  absl::StatusOr<v1::RunPlan> second = Prewarm(request);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->SerializeAsString(), second->SerializeAsString());
}

TEST_F(RunRegistryTest, DryRunKeepsNoState) {
  v1::PrewarmRequest request = Chain("run-1");
  request.set_dry_run(true);
  absl::StatusOr<v1::RunPlan> plan = Prewarm(request);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->tasks(0).decision(), v1::WARMUP_DECISION_WARM);
  EXPECT_EQ(registry_->active_runs(), 0);
  EXPECT_EQ(registry_->pending_warmups(), 0);
  EXPECT_EQ(registry_->GetPlan("run-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(RunUntil(t0_ + absl::Minutes(5)), 1);  // Only the registry's expiry timer.
  EXPECT_EQ(TotalRequests(), 0);
}

TEST_F(RunRegistryTest, WarmupsFireWhenTheClockReachesTheirDeadlines) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());

  EXPECT_EQ(RunUntil(t0_ + absl::Seconds(58) - absl::Milliseconds(1)), 0);
  EXPECT_EQ(Task("run-1", "a").warmup_state(), v1::WARMUP_STATE_PENDING);

  EXPECT_EQ(RunUntil(t0_ + absl::Seconds(58)), 1);
  ASSERT_GE(Requests("/svc-a"), 1);
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "a", v1::WARMUP_STATE_READY));
  ASSERT_EQ(Sent("/svc-a").size(), 1u);
  EXPECT_EQ(Sent("/svc-a")[0].method, "GET");
  EXPECT_EQ(Requests("/svc-b"), 0);
  EXPECT_EQ(Task("run-1", "b").warmup_state(), v1::WARMUP_STATE_PENDING);
  EXPECT_EQ(registry_->pending_warmups(), 2);

  v1::GetServiceStatsResponse a = Stats("svc-a");
  EXPECT_EQ(a.warmups_fired(), 1);
  EXPECT_EQ(a.warmups_failed(), 0);
  EXPECT_TRUE(a.has_warm_until());
  EXPECT_THAT(Metric("prewarm_warmups_total", {{"service", "svc-a"}, {"result", "fired"}}),
              Optional(1.0));
  EXPECT_THAT(Metric("prewarm_warmups_total", {{"service", "svc-a"}, {"result", "ready"}}),
              Optional(1.0));
  EXPECT_THAT(Metric("prewarm_warmup_lateness_seconds_count"), Optional(1.0));

  RunUntil(t0_ + absl::Seconds(69));  // (The registry's expiry timer is due too.)
  ExpectChainsLastWarmupsAt69And80();
}

TEST_F(RunRegistryTest, ALateFinishPushesTheNextWarmupLater) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  RunUntil(t0_ + absl::Seconds(60));
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_STARTED, {.cold = false}).ok());
  RunUntil(t0_ + absl::Seconds(69));  // b's warm-up fires while a still runs.
  EXPECT_NE(Task("run-1", "b").warmup_state(), v1::WARMUP_STATE_PENDING);
  EXPECT_EQ(T(Task("run-1", "c").warmup_time()), t0_ + absl::Seconds(80));

  // a finishes 5 s later than planned: c now starts at 75 + 1 + 10 + 1 = 87, warmed at 85.
  clock_.AdvanceTo(t0_ + absl::Seconds(75));
  absl::StatusOr<v1::ReportTimingResponse> response =
      Report("run-1", "a", v1::TASK_EVENT_TYPE_FINISHED);
  ASSERT_TRUE(response.ok()) << response.status();
  absl::StatusOr<v1::RunPlan> plan = registry_->GetPlan("run-1");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_GE(plan->replan_count(), 2);
  EXPECT_EQ(response->replan_count(), plan->replan_count());
  EXPECT_FALSE(response->run_finished());
  ASSERT_EQ(response->replanned_tasks_size(), 3);  // a and its descendants.
  EXPECT_EQ(response->replanned_tasks(2).SerializeAsString(),
            TaskOf(*plan, "c").SerializeAsString());
  EXPECT_EQ(T(TaskOf(*plan, "b").expected_start_time()), t0_ + absl::Seconds(76));
  EXPECT_EQ(T(TaskOf(*plan, "c").expected_start_time()), t0_ + absl::Seconds(87));
  EXPECT_EQ(T(TaskOf(*plan, "c").warmup_time()), t0_ + absl::Seconds(85));
  EXPECT_EQ(TaskOf(*plan, "c").warmup_state(), v1::WARMUP_STATE_PENDING);
  EXPECT_EQ(timers_->NextDeadline(), t0_ + absl::Seconds(85));

  EXPECT_EQ(RunUntil(t0_ + absl::Seconds(80)), 0);  // The old deadline fires nothing.
  EXPECT_EQ(Task("run-1", "c").warmup_state(), v1::WARMUP_STATE_PENDING);
  EXPECT_EQ(RunUntil(t0_ + absl::Seconds(85)), 1);
  ASSERT_GE(Requests("/svc-c"), 1);
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "c", v1::WARMUP_STATE_READY));
  EXPECT_EQ(Requests("/svc-c"), 1);
}

// The gRPC adapter's overload: the answer is built into the caller's response, here on an arena
// as the server's ArenaMessageAllocator gives it, and matches the run's plan once durable.
TEST_F(RunRegistryTest, ReportTimingAnswersIntoTheCallersResponse) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  RunUntil(t0_ + absl::Seconds(60));
  ArenaMessageAllocator<v1::ReportTimingRequest, v1::ReportTimingResponse> allocator;
  grpc::MessageHolder<v1::ReportTimingRequest, v1::ReportTimingResponse>* call =
      allocator.AllocateMessages();
  ASSERT_NE(call->response()->GetArena(), nullptr);
  call->request()->set_run_id("run-1");
  call->request()->set_task_id("a");
  call->request()->set_event(v1::TASK_EVENT_TYPE_STARTED);
  std::promise<absl::Status> done;
  registry_->ReportTiming(*call->request(), call->response(),
                          [&](absl::Status st) { done.set_value(std::move(st)); });
  std::future<absl::Status> answered = done.get_future();
  ASSERT_EQ(answered.wait_for(absl::ToChronoSeconds(kPatience)), std::future_status::ready);
  ASSERT_TRUE(answered.get().ok());
  absl::StatusOr<v1::RunPlan> plan = registry_->GetPlan("run-1");
  ASSERT_TRUE(plan.ok()) << plan.status();
  const v1::ReportTimingResponse& response = *call->response();
  EXPECT_EQ(response.replan_count(), plan->replan_count());
  EXPECT_FALSE(response.run_finished());
  ASSERT_EQ(response.replanned_tasks_size(), 3);  // a and its descendants.
  for (const v1::TaskPlan& t : response.replanned_tasks()) {
    EXPECT_EQ(t.GetArena(), call->response()->GetArena());
    EXPECT_EQ(t.SerializeAsString(), TaskOf(*plan, t.task_id()).SerializeAsString());
  }
  call->Release();
}

// REPORT_TIMING_VIEW_SUMMARY leaves the plans out of the answer and nothing else: the same
// counts, the same re-plan, the same stored event as a full answer.
TEST_F(RunRegistryTest, ASummaryAnswerLeavesOutOnlyThePlans) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  // The same chain on services of its own, so that neither run keeps the other's warm.
  v1::PrewarmRequest twin = Chain("run-2");
  for (v1::Task& t : *twin.mutable_tasks()) {
    t.set_service(absl::StrCat("twin-", t.task_id()));
    RegisterManaged(t.service());
  }
  ASSERT_TRUE(Prewarm(twin).ok());
  RunUntil(t0_ + absl::Seconds(60));
  v1::ReportTimingRequest request;
  request.set_task_id("a");
  request.set_event(v1::TASK_EVENT_TYPE_STARTED);
  request.set_run_id("run-1");
  request.set_view(v1::REPORT_TIMING_VIEW_FULL);
  absl::StatusOr<v1::ReportTimingResponse> full = Report(request);
  request.set_run_id("run-2");
  request.set_view(v1::REPORT_TIMING_VIEW_SUMMARY);
  absl::StatusOr<v1::ReportTimingResponse> summary = Report(request);
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(full->replanned_tasks_size(), 3);  // a and its descendants.
  EXPECT_EQ(full->replanned_task_count(), 3);
  EXPECT_EQ(summary->replanned_tasks_size(), 0);
  EXPECT_EQ(summary->replanned_task_count(), 3);
  EXPECT_EQ(summary->replan_count(), full->replan_count());
  EXPECT_FALSE(summary->run_finished());
  // The same re-plan: both runs' plans agree task by task but for the service (priors: every
  // estimate is a point).
  for (const char* task : {"a", "b", "c"}) {
    v1::TaskPlan twin_plan = Task("run-2", task);
    twin_plan.clear_service();
    v1::TaskPlan plan = Task("run-1", task);
    plan.clear_service();
    EXPECT_EQ(twin_plan.SerializeAsString(), plan.SerializeAsString()) << task;
  }
  // The same stored event: the view is not part of it.
  ASSERT_TRUE(store_->Flush().ok());
  std::map<std::string, std::vector<store::v1::RunEvent>> events;
  ASSERT_TRUE(store_
                  ->LoadRunEvents([&](absl::string_view run, absl::string_view bytes) {
                    store::v1::RunEvent& e = events[std::string(run)].emplace_back();
                    ASSERT_TRUE(e.ParseFromString(std::string(bytes)));
                    if (e.has_timing()) e.mutable_timing()->clear_run_id();
                  })
                  .ok());
  ASSERT_EQ(events["run-1"].size(), events["run-2"].size());
  for (size_t i = 0; i < events["run-1"].size(); ++i) {
    EXPECT_EQ(events["run-2"][i].SerializeAsString(), events["run-1"][i].SerializeAsString());
  }
  // A repeat, and the last events of the run, answer the summary too.
  absl::StatusOr<v1::ReportTimingResponse> repeat = Report(request);
  ASSERT_TRUE(repeat.ok()) << repeat.status();
  EXPECT_EQ(repeat->replanned_task_count(), 0);
  EXPECT_EQ(repeat->replan_count(), summary->replan_count());
  for (auto [task, event] :
       {std::pair{"a", v1::TASK_EVENT_TYPE_FINISHED}, std::pair{"b", v1::TASK_EVENT_TYPE_SKIPPED},
        std::pair{"c", v1::TASK_EVENT_TYPE_SKIPPED}}) {
    request.set_task_id(task);
    request.set_event(event);
    absl::StatusOr<v1::ReportTimingResponse> r = Report(request);
    ASSERT_TRUE(r.ok()) << task << ": " << r.status();
    EXPECT_EQ(r->replanned_tasks_size(), 0) << task;
    EXPECT_EQ(r->run_finished(), std::string(task) == "c");
  }
}

// An unknown view is refused before anything else is looked at, naming the field.
TEST_F(RunRegistryTest, AnUnknownViewIsInvalid) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  v1::ReportTimingRequest request;
  request.set_run_id("run-1");
  request.set_task_id("a");
  request.set_event(v1::TASK_EVENT_TYPE_STARTED);
  request.set_view(static_cast<v1::ReportTimingView>(3));
  for (const char* run : {"run-1", "run-9"}) {
    request.set_run_id(run);
    absl::StatusOr<v1::ReportTimingResponse> r = Report(request);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << run;
    EXPECT_THAT(r.status().message(), ::testing::HasSubstr("view 3 is not a ReportTimingView"));
  }
  // Nothing was applied.
  EXPECT_EQ(Task("run-1", "a").task_state(), v1::TASK_STATE_PENDING);
}

// On an error, at once or from the store, the caller's response is left empty (gRPC sends no
// message with a failed status, but a caller reusing it must not see a half answer).
TEST_F(RunRegistryTest, ReportTimingLeavesTheCallersResponseEmptyOnAnError) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  auto report = [&](const std::string& run, v1::ReportTimingResponse* response) {
    v1::ReportTimingRequest request;
    request.set_run_id(run);
    request.set_task_id("a");
    request.set_event(v1::TASK_EVENT_TYPE_STARTED);
    response->set_replan_count(99);  // Left from an earlier use.
    std::promise<absl::Status> done;
    registry_->ReportTiming(request, response,
                            [&](absl::Status st) { done.set_value(std::move(st)); });
    return done.get_future().get();
  };
  v1::ReportTimingResponse response;
  EXPECT_EQ(report("run-9", &response).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(response.ByteSizeLong(), 0u);

  auto* store = dynamic_cast<InMemoryHistoryStore*>(store_.get());
  ASSERT_NE(store, nullptr);
  store->SetWriteError(absl::ResourceExhaustedError("disk full"));
  const absl::Status failed = report("run-1", &response);
  store->SetWriteError(absl::OkStatus());
  EXPECT_FALSE(store_->Flush().ok());  // Takes the injected error, which Close() would report.
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(failed.message(), ::testing::HasSubstr("disk full"));
  EXPECT_EQ(response.ByteSizeLong(), 0u);
}

TEST_F(RunRegistryTest, AStartLaterThanPlannedPushesTheWarmupLater) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  clock_.AdvanceTo(t0_ + absl::Seconds(65));  // a was due at 60.
  absl::StatusOr<v1::ReportTimingResponse> response =
      Report("run-1", "a", v1::TASK_EVENT_TYPE_STARTED, {.cold = false});
  ASSERT_TRUE(response.ok()) << response.status();
  absl::StatusOr<v1::RunPlan> plan = registry_->GetPlan("run-1");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(T(TaskOf(*plan, "a").actual_start_time()), t0_ + absl::Seconds(65));
  EXPECT_EQ(TaskOf(*plan, "a").task_state(), v1::TASK_STATE_RUNNING);
  EXPECT_EQ(T(TaskOf(*plan, "b").warmup_time()), t0_ + absl::Seconds(74));
  RunUntil(t0_ + absl::Seconds(69));
  EXPECT_EQ(Task("run-1", "b").warmup_state(), v1::WARMUP_STATE_PENDING);
  EXPECT_EQ(RunUntil(t0_ + absl::Seconds(74)), 1);
  ASSERT_GE(Requests("/svc-b"), 1);
}

TEST_F(RunRegistryTest, ATaskThatStartsColdPushesItsDescendantsByItsColdStart) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  // a starts before its warm-up fired, so nothing warmed svc-a: its 10 s of work begin once a
  // container is up, after the 2 s cold start. b: 65 + 2 + 10 + 1 = 78, warmed at 76.
  clock_.AdvanceTo(t0_ + absl::Seconds(65));
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_STARTED).ok());
  EXPECT_EQ(T(Task("run-1", "b").expected_start_time()), t0_ + absl::Seconds(78));
  EXPECT_EQ(T(Task("run-1", "b").warmup_time()), t0_ + absl::Seconds(76));
  // A reported cold start is used as it is.
  ASSERT_TRUE(Prewarm(Chain("run-2", absl::Seconds(0))).ok());
  ASSERT_TRUE(Report("run-2", "a", v1::TASK_EVENT_TYPE_STARTED,
                     {.cold = true, .cold_start = absl::Seconds(4)})
                  .ok());
  EXPECT_EQ(T(Task("run-2", "b").expected_start_time()), t0_ + absl::Seconds(80));
}

TEST_F(RunRegistryTest, AnEarlyFinishFiresAPassedDeadlineAtOnce) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  RunUntil(t0_ + absl::Seconds(60));
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_STARTED).ok());

  // a finishes after 2 s instead of 10: b starts at 63, and warming it at 61 is already late.
  clock_.AdvanceTo(t0_ + absl::Seconds(62));
  absl::StatusOr<v1::ReportTimingResponse> response =
      Report("run-1", "a", v1::TASK_EVENT_TYPE_FINISHED);
  ASSERT_TRUE(response.ok()) << response.status();
  absl::StatusOr<v1::RunPlan> plan = registry_->GetPlan("run-1");
  ASSERT_TRUE(plan.ok()) << plan.status();
  const v1::TaskPlan& b = TaskOf(*plan, "b");
  EXPECT_EQ(b.decision(), v1::WARMUP_DECISION_WARM) << b.reason();
  EXPECT_EQ(T(b.expected_start_time()), t0_ + absl::Seconds(63));
  EXPECT_LE(T(b.warmup_time()), clock_.Now());
  EXPECT_THAT(b.reason(), HasSubstr("deadline passed"));
  EXPECT_LE(timers_->NextDeadline(), clock_.Now());
  // c moves earlier too: b starts at 63 but waits 1 s for its late warm-up (fired at 62, ready
  // at 64), runs 10 s, 1 s gap: c starts at 75, warmed at 73.
  EXPECT_EQ(T(TaskOf(*plan, "c").warmup_time()), t0_ + absl::Seconds(73));

  EXPECT_EQ(timers_->RunDue(), 1);  // Without moving the clock.
  ASSERT_GE(Requests("/svc-b"), 1);
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "b", v1::WARMUP_STATE_READY));
  EXPECT_EQ(RunUntil(t0_ + absl::Seconds(73)), 1);
  ASSERT_GE(Requests("/svc-c"), 1);
}

TEST_F(RunRegistryTest, SkippedCancelsTheTasksPendingWarmup) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  clock_.AdvanceTo(t0_ + absl::Seconds(60));
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_STARTED).ok());
  clock_.AdvanceTo(t0_ + absl::Seconds(65));
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_FINISHED).ok());
  const int pending = registry_->pending_warmups();

  absl::StatusOr<v1::ReportTimingResponse> response =
      Report("run-1", "b", v1::TASK_EVENT_TYPE_SKIPPED);
  ASSERT_TRUE(response.ok()) << response.status();
  absl::StatusOr<v1::RunPlan> plan = registry_->GetPlan("run-1");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(TaskOf(*plan, "b").task_state(), v1::TASK_STATE_SKIPPED);
  EXPECT_EQ(TaskOf(*plan, "b").warmup_state(), v1::WARMUP_STATE_CANCELLED);
  EXPECT_EQ(TaskOf(*plan, "b").decision(), v1::WARMUP_DECISION_SKIP_STARTED);
  EXPECT_LT(registry_->pending_warmups(), pending);
  EXPECT_THAT(Metric("prewarm_warmups_total", {{"service", "svc-b"}, {"result", "cancelled"}}),
              Optional(1.0));

  // c's only upstream was skipped: Airflow skips it too, so its warm-up goes as well.
  EXPECT_EQ(TaskOf(*plan, "c").decision(), v1::WARMUP_DECISION_SKIP_UNLIKELY)
      << TaskOf(*plan, "c").reason();
  EXPECT_EQ(TaskOf(*plan, "c").run_probability(), 0);
  EXPECT_EQ(registry_->pending_warmups(), 0);
  RunUntil(t0_ + absl::Minutes(5));
  EXPECT_EQ(Requests("/svc-b"), 0);
  EXPECT_EQ(Requests("/svc-c"), 0);
  EXPECT_EQ(Task("run-1", "b").warmup_state(), v1::WARMUP_STATE_CANCELLED);
}

// The service's keep-alive is 60 s: a warm-up ready at 58 s would be reclaimed at 118 s.
TEST_F(RunRegistryTest, AReadyWarmupIsRefreshedBeforeTheKeepAliveUntilItsTaskStarts) {
  ASSERT_TRUE(Prewarm(OneTaskRun("svc-a")).ok());
  RunUntil(t0_ + absl::Seconds(58));
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "x", v1::WARMUP_STATE_READY));
  RunUntil(t0_ + absl::Seconds(111));
  EXPECT_EQ(Requests("/svc-a"), 1);
  RunUntil(t0_ + absl::Seconds(112));  // 58 + 0.9 * 60: the task is late, still pending
  ASSERT_GE(Requests("/svc-a"), 2);
  EXPECT_THAT(Metric("prewarm_warmups_total", {{"service", "svc-a"}, {"result", "refreshed"}}),
              Optional(1.0));
  EXPECT_EQ(Task("run-1", "x").warmup_state(), v1::WARMUP_STATE_READY);
  // Once answered, the container is held for x until 112 + 60 s, and the next refresh is due.
  EXPECT_EQ(Answer(), 1);
  EXPECT_EQ(T(Stats("svc-a").warm_until()), t0_ + absl::Seconds(172));

  clock_.AdvanceTo(t0_ + absl::Seconds(130));
  ASSERT_TRUE(Report("run-1", "x", v1::TASK_EVENT_TYPE_STARTED, {.cold = false}).ok());
  EXPECT_EQ(Task("run-1", "x").outcome(), v1::TASK_OUTCOME_HIT);
  RunUntil(t0_ + absl::Minutes(10));  // Started: no more refreshes.
  EXPECT_EQ(Requests("/svc-a"), 2);
}

TEST_F(RunRegistryTest, WithoutRefreshesAWarmupIsNotRefreshedAndPlansAvoidTheCliff) {
  Halt();
  options_.max_warmup_refreshes = 0;
  Boot(NewInMemoryHistoryStore());
  for (const char* name : {"svc-a", "svc-b", "svc-c"}) RegisterManaged(name);
  ASSERT_TRUE(Prewarm(OneTaskRun("svc-a")).ok());
  RunUntil(t0_ + absl::Seconds(58));
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "x", v1::WARMUP_STATE_READY));
  RunUntil(t0_ + absl::Minutes(10));
  EXPECT_EQ(Requests("/svc-a"), 1);
  EXPECT_THAT(Metric("prewarm_warmups_total", {{"service", "svc-a"}, {"result", "refreshed"}}),
              Optional(0.0));
}

v1::Service WithConcurrency(v1::Service s, int concurrency) {
  s.set_container_concurrency(concurrency);
  return s;
}

TEST_F(RunRegistryTest, WithConcurrencyOneAServiceBusyWithAnotherRunIsWarmedAgain) {
  v1::Service svc_a;
  ASSERT_TRUE(services_->Find("svc-a", &svc_a));
  Register(WithConcurrency(svc_a, 1));
  ASSERT_TRUE(Prewarm(OneTaskRun("svc-a")).ok());  // x at 60, warmed at 58
  v1::PrewarmRequest second = OneTaskRun("svc-a");
  second.set_run_id("run-2");
  *second.mutable_start_time() = ToProtoTimestamp(t0_ + absl::Seconds(70));  // warmed at 68
  absl::StatusOr<v1::RunPlan> plan = Prewarm(second);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(TaskOf(*plan, "x").decision(), v1::WARMUP_DECISION_WARM);

  RunUntil(t0_ + absl::Seconds(58));
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "x", v1::WARMUP_STATE_READY));
  clock_.AdvanceTo(t0_ + absl::Seconds(60));
  ASSERT_TRUE(Report("run-1", "x", v1::TASK_EVENT_TYPE_STARTED).ok());
  // run-1's x keeps the only container busy: run-2's warm-up must start a second one.
  RunUntil(t0_ + absl::Seconds(68));
  ASSERT_TRUE(AnswerAndExpectWarmup("run-2", "x", v1::WARMUP_STATE_READY));
  EXPECT_EQ(Requests("/svc-a"), 2);
  EXPECT_THAT(Metric("prewarm_warmups_total", {{"service", "svc-a"}, {"result", "skipped_warm"}}),
              Optional(0.0));

  // Had x finished first, its idle container would have been claimed instead.
  clock_.AdvanceTo(t0_ + absl::Seconds(69));
  ASSERT_TRUE(Report("run-1", "x", v1::TASK_EVENT_TYPE_FINISHED).ok());
  v1::PrewarmRequest third = OneTaskRun("svc-a");
  third.set_run_id("run-3");
  *third.mutable_start_time() = ToProtoTimestamp(t0_ + absl::Seconds(100));
  ASSERT_TRUE(Prewarm(third).ok());
  RunUntil(t0_ + absl::Seconds(98));
  EXPECT_EQ(Requests("/svc-a"), 2);
  EXPECT_THAT(Metric("prewarm_warmups_total", {{"service", "svc-a"}, {"result", "skipped_warm"}}),
              Optional(1.0));
  EXPECT_EQ(Task("run-3", "x").decision(), v1::WARMUP_DECISION_SKIP_ALREADY_WARM)
      << Task("run-3", "x").reason();
}

TEST_F(RunRegistryTest, ACallThatTakesTheContainerWarmedForATaskWarmsThatTaskAgain) {
  v1::Service svc_a;
  ASSERT_TRUE(services_->Find("svc-a", &svc_a));
  Register(WithConcurrency(svc_a, 1));
  v1::PrewarmRequest first = OneTaskRun("svc-a");
  // Dear delay: a warm-up 1 s late (it waits 1 s, and its spare container idles 60 s) still pays.
  first.set_delay_cost_ratio(1000);
  ASSERT_TRUE(Prewarm(first).ok());
  RunUntil(t0_ + absl::Seconds(58));
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "x", v1::WARMUP_STATE_READY));

  // Another run's task calls svc-a first, unwarmed: the platform gives it the warm container.
  clock_.AdvanceTo(t0_ + absl::Seconds(59));
  v1::PrewarmRequest other = OneTaskRun("svc-a");
  other.set_run_id("run-2");
  *other.mutable_start_time() = ToProtoTimestamp(clock_.Now());
  ASSERT_TRUE(Prewarm(other).ok());
  ASSERT_TRUE(Report("run-2", "x", v1::TASK_EVENT_TYPE_STARTED, {.cold = false}).ok());
  EXPECT_EQ(Task("run-2", "x").outcome(), v1::TASK_OUTCOME_HIT);
  EXPECT_THAT(Metric("prewarm_warmups_total", {{"service", "svc-a"}, {"result", "displaced"}}),
              Optional(1.0));
  EXPECT_EQ(Task("run-1", "x").warmup_state(), v1::WARMUP_STATE_PENDING);
  RunUntil(clock_.Now());  // Due at once.
  ASSERT_GE(Requests("/svc-a"), 2);
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "x", v1::WARMUP_STATE_READY));
}

TEST_F(RunRegistryTest, AWarmupThatReachedAnotherTasksIdleContainerIsSentAgainWhenThatTaskCalls) {
  v1::Service svc_a;
  ASSERT_TRUE(services_->Find("svc-a", &svc_a));
  Register(WithConcurrency(svc_a, 1));
  ASSERT_TRUE(Prewarm(OneTaskRun("svc-a")).ok());
  SetRoute("/svc-a", {.delay = absl::Seconds(1)});  // cold: run-1's x gets its own container
  RunUntil(t0_ + absl::Seconds(58));
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "x", v1::WARMUP_STATE_READY));

  // run-2's x is due later; its warm-up finds run-1's container idle (run-1's x is late), and the
  // platform, which knows nothing of holds, answers it from there: no second container starts.
  v1::PrewarmRequest second = OneTaskRun("svc-a");
  second.set_run_id("run-2");
  *second.mutable_start_time() = ToProtoTimestamp(t0_ + absl::Seconds(72));
  ASSERT_TRUE(Prewarm(second).ok());
  SetRoute("/svc-a", {});
  RunUntil(t0_ + absl::Seconds(71));
  ASSERT_EQ(Requests("/svc-a"), 2);
  ASSERT_TRUE(AnswerAndExpectWarmup("run-2", "x", v1::WARMUP_STATE_READY));

  // run-1's x takes that container: run-2's x has none, and is warmed again at once.
  clock_.AdvanceTo(t0_ + absl::Seconds(71.5));
  ASSERT_TRUE(Report("run-1", "x", v1::TASK_EVENT_TYPE_STARTED, {.cold = false}).ok());
  EXPECT_THAT(Metric("prewarm_warmups_total", {{"service", "svc-a"}, {"result", "displaced"}}),
              Optional(1.0));
  EXPECT_EQ(Task("run-2", "x").warmup_state(), v1::WARMUP_STATE_PENDING);
  RunUntil(clock_.Now());
  EXPECT_EQ(Requests("/svc-a"), 3);
}

TEST_F(RunRegistryTest, CancelRunCancelsEverythingAndRetiresTheRun) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  absl::StatusOr<int> cancelled = registry_->CancelRun("run-1");
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(*cancelled, 3);
  EXPECT_EQ(registry_->active_runs(), 0);
  EXPECT_EQ(registry_->pending_warmups(), 0);
  EXPECT_EQ(timers_->pending(), 1u);  // Only the registry's expiry timer is left.

  absl::StatusOr<v1::RunPlan> plan = registry_->GetPlan("run-1");  // From the retired list.
  ASSERT_TRUE(plan.ok()) << plan.status();
  for (const v1::TaskPlan& t : plan->tasks()) {
    EXPECT_EQ(t.warmup_state(), v1::WARMUP_STATE_CANCELLED) << t.task_id();
  }
  absl::StatusOr<v1::ReportTimingResponse> report =
      Report("run-1", "a", v1::TASK_EVENT_TYPE_STARTED);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(report.status().message(), HasSubstr("run-1"));
  EXPECT_EQ(registry_->CancelRun("run-1").status().code(), absl::StatusCode::kNotFound);

  RunUntil(t0_ + absl::Minutes(5));
  EXPECT_EQ(TotalRequests(), 0);
  EXPECT_THAT(Metric("prewarm_runs_finished_total", {{"outcome", "cancelled"}}), Optional(1.0));
  EXPECT_THAT(Metric("prewarm_active_runs"), Optional(0.0));
  EXPECT_THAT(Metric("prewarm_pending_warmups"), Optional(0.0));

  // The id may be used again once the run is no longer active.
  EXPECT_TRUE(Prewarm(Chain("run-1")).ok());
}

TEST_F(RunRegistryTest, ARunWhoseTasksAreAllTerminalRetiresItself) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  clock_.AdvanceTo(t0_ + absl::Seconds(60));
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_STARTED).ok());
  clock_.AdvanceTo(t0_ + absl::Seconds(70));
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_FINISHED).ok());
  ASSERT_TRUE(Report("run-1", "b", v1::TASK_EVENT_TYPE_SKIPPED).ok());
  EXPECT_EQ(registry_->active_runs(), 1);
  absl::StatusOr<v1::ReportTimingResponse> last = Report("run-1", "c", v1::TASK_EVENT_TYPE_FAILED);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_TRUE(last->run_finished());
  EXPECT_EQ(registry_->active_runs(), 0);
  EXPECT_EQ(registry_->pending_warmups(), 0);

  absl::StatusOr<v1::RunPlan> plan = registry_->GetPlan("run-1");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(TaskOf(*plan, "a").task_state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(TaskOf(*plan, "b").task_state(), v1::TASK_STATE_SKIPPED);
  EXPECT_EQ(TaskOf(*plan, "c").task_state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(Report("run-1", "c", v1::TASK_EVENT_TYPE_STARTED).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(Metric("prewarm_runs_finished_total", {{"outcome", "finished"}}), Optional(1.0));
}

TEST_F(RunRegistryTest, AnIdleRunExpires) {
  ASSERT_TRUE(Prewarm(Chain("run-1", absl::Seconds(1))).ok());
  RunUntil(t0_ + absl::Minutes(29));
  EXPECT_EQ(registry_->active_runs(), 1);
  RunUntil(t0_ + absl::Minutes(32));
  EXPECT_EQ(registry_->active_runs(), 0);
  EXPECT_TRUE(registry_->GetPlan("run-1").ok());
  EXPECT_THAT(Metric("prewarm_runs_finished_total", {{"outcome", "expired"}}), Optional(1.0));
}

// Three runs of the chain where a takes 4 s, b 6 s and c 3 s of warm time, each call paying a
// 1.5 s cold start, with a 1 s gap between tasks: the fourth run's plan rests on that history.
TEST_F(RunRegistryTest, LearnsFromReportedTimings) {
  const absl::Duration durations[] = {absl::Seconds(4), absl::Seconds(6), absl::Seconds(3)};
  const absl::Duration cold = absl::Milliseconds(1500);
  for (int run = 0; run < 3; ++run) {
    const std::string id = absl::StrCat("learn-", run);
    ASSERT_TRUE(Prewarm(Chain(id, absl::ZeroDuration())).ok());
    const char* tasks[] = {"a", "b", "c"};
    for (int i = 0; i < 3; ++i) {
      if (i > 0) clock_.Advance(absl::Seconds(1));
      ASSERT_TRUE(Report(id, tasks[i], v1::TASK_EVENT_TYPE_STARTED).ok());
      clock_.Advance(durations[i] + cold);
      absl::StatusOr<v1::ReportTimingResponse> p =
          Report(id, tasks[i], v1::TASK_EVENT_TYPE_FINISHED, {.cold = true, .cold_start = cold});
      ASSERT_TRUE(p.ok()) << p.status();
    }
    EXPECT_EQ(registry_->active_runs(), 0);
    clock_.Advance(absl::Minutes(10));  // Long enough for every service to go cold again.
  }
  v1::GetServiceStatsResponse b = Stats("svc-b");
  EXPECT_EQ(b.duration().sample_count(), 3);
  EXPECT_NEAR(absl::ToDoubleSeconds(D(b.duration().p50())), 6.0, 1e-3);
  EXPECT_EQ(b.cold_start().sample_count(), 3);
  EXPECT_NEAR(absl::ToDoubleSeconds(D(b.cold_start().mean())), 1.5, 1e-3);
  EXPECT_EQ(b.miss_count(), 3);

  const absl::Time start = clock_.Now() + absl::Seconds(60);
  absl::StatusOr<v1::RunPlan> plan = Prewarm(Chain("run-4"));
  ASSERT_TRUE(plan.ok()) << plan.status();
  const double expected_starts[] = {0, 4 + 1, 4 + 1 + 6 + 1};
  for (int i = 0; i < 3; ++i) {
    const v1::TaskPlan& t = plan->tasks(i);
    SCOPED_TRACE(t.task_id());
    EXPECT_EQ(t.confidence(), v1::CONFIDENCE_HIGH);
    EXPECT_EQ(t.decision(), v1::WARMUP_DECISION_WARM) << t.reason();
    EXPECT_NEAR(absl::ToDoubleSeconds(T(t.expected_start_time()) - start), expected_starts[i],
                0.01);
    EXPECT_NEAR(absl::ToDoubleSeconds(D(t.expected_cold_start())), 1.5, 0.01);
    EXPECT_NEAR(absl::ToDoubleSeconds(T(t.expected_start_time()) - T(t.warmup_time())), 1.5, 0.01);
  }
  EXPECT_THAT(Metric("prewarm_observations_total", {{"kind", "task_duration"}}), Optional(9.0));
  EXPECT_THAT(Metric("prewarm_observations_total", {{"kind", "cold_start"}}), Optional(9.0));
  EXPECT_THAT(Metric("prewarm_observations_total", {{"kind", "dispatch_gap"}}), Optional(6.0));
  EXPECT_THAT(Metric("prewarm_task_starts_total", {{"service", "svc-b"}, {"outcome", "miss"}}),
              Optional(3.0));
}

TEST_F(RunRegistryTest, ASlowWarmupIsAColdStartAndAFastOneAWarmLatency) {
  SetRoute("/slow", {.delay = absl::Milliseconds(300)});
  SetRoute("/fast", {});
  RegisterManaged("slow", absl::Milliseconds(100));
  // Generous, so that a loaded machine never makes a loopback answer look cold.
  RegisterManaged("fast", absl::Seconds(5));
  v1::PrewarmRequest request;
  request.set_run_id("run-1");
  request.set_workflow_id("wf");
  request.add_tasks()->set_task_id("x");
  request.mutable_tasks(0)->set_service("slow");
  request.add_tasks()->set_task_id("y");
  request.mutable_tasks(1)->set_service("fast");
  *request.mutable_start_time() = ToProtoTimestamp(t0_ + absl::Seconds(60));
  ASSERT_TRUE(Prewarm(request).ok());
  EXPECT_EQ(RunUntil(t0_ + absl::Seconds(58)), 2);
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "x", v1::WARMUP_STATE_READY));
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "y", v1::WARMUP_STATE_READY));

  v1::GetServiceStatsResponse slow = Stats("slow");
  EXPECT_EQ(slow.cold_start().sample_count(), 1);
  EXPECT_GE(D(slow.cold_start().mean()), absl::Milliseconds(300));
  EXPECT_EQ(slow.warm_latency().sample_count(), 0);
  v1::GetServiceStatsResponse fast = Stats("fast");
  EXPECT_EQ(fast.cold_start().sample_count(), 0);
  EXPECT_EQ(fast.warm_latency().sample_count(), 1);
  EXPECT_LT(D(fast.warm_latency().mean()), absl::Seconds(5));
  EXPECT_THAT(Metric("prewarm_cold_start_seconds_count", {{"service", "slow"}}), Optional(1.0));
  EXPECT_THAT(Metric("prewarm_warmup_latency_seconds_count", {{"service", "fast"}}), Optional(1.0));
}

// Issue 13, "overlapping warm-ups are learned as cold starts": svc-a takes 0.7 s to start a
// container. Two one-task runs 0.3 s apart warm it at 58 s and 58.3 s; the second warm-up reaches
// the container still starting and waits only the remaining 0.4 s. Only the first is a cold
// start; with one request per container each warm-up starts its own, and both are.
TEST_F(RunRegistryTest, AWarmupThatJoinedAStartInProgressIsNotLearnedAsAColdStart) {
  for (int concurrency : {0, 1}) {
    SCOPED_TRACE(absl::StrCat("container_concurrency ", concurrency));
    Halt();
    Boot(NewInMemoryHistoryStore());
    v1::Service svc;
    svc.set_name("svc-a");
    svc.set_warmup_url(absl::StrCat(kEndpoint, "/svc-a"));
    svc.set_container_concurrency(concurrency);
    Register(svc);
    v1::PrewarmRequest first = OneTaskRun("svc-a");
    *first.mutable_start_time() = ToProtoTimestamp(clock_.Now() + absl::Seconds(60));
    v1::PrewarmRequest second = first;
    second.set_run_id("run-2");
    *second.mutable_start_time() = ToProtoTimestamp(clock_.Now() + absl::Milliseconds(60'300));
    const absl::Time base = clock_.Now();
    ASSERT_TRUE(Prewarm(first).ok());
    ASSERT_TRUE(Prewarm(second).ok());
    EXPECT_EQ(RunUntil(base + absl::Seconds(58)), 1);
    EXPECT_EQ(RunUntil(base + absl::Milliseconds(58'300)), 1);
    std::vector<WarmupRequest> pending = fake_warmer_->pending();
    ASSERT_EQ(pending.size(), 2u);
    clock_.AdvanceTo(base + absl::Milliseconds(58'700));
    const absl::Duration second_wait =
        concurrency == 1 ? absl::Milliseconds(700) : absl::Milliseconds(400);
    ASSERT_TRUE(
        fake_warmer_->Complete(pending[0].id, FakeHttpWarmer::Success(absl::Milliseconds(700)))
            .ok());
    ASSERT_TRUE(fake_warmer_->Complete(pending[1].id, FakeHttpWarmer::Success(second_wait)).ok());
    EXPECT_EQ(Task("run-2", "x").warmup_state(), v1::WARMUP_STATE_READY);

    v1::GetServiceStatsResponse stats = Stats("svc-a");
    EXPECT_EQ(stats.warmups_fired(), 2);
    EXPECT_EQ(stats.cold_start().sample_count(), concurrency == 1 ? 2 : 1);
    EXPECT_NEAR(absl::ToDoubleSeconds(D(stats.cold_start().mean())), 0.7, 1e-6);  // floats
  }
}

TEST_F(RunRegistryTest, AFailedWarmupIsCounted) {
  SetRoute("/broken", {.status = 500});
  RegisterManaged("broken");
  v1::PrewarmRequest request;
  request.set_run_id("run-1");
  request.set_workflow_id("wf");
  request.add_tasks()->set_task_id("x");
  request.mutable_tasks(0)->set_service("broken");
  *request.mutable_start_time() = ToProtoTimestamp(t0_ + absl::Seconds(60));
  ASSERT_TRUE(Prewarm(request).ok());
  RunUntil(t0_ + absl::Seconds(58));
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "x", v1::WARMUP_STATE_FAILED));
  v1::GetServiceStatsResponse stats = Stats("broken");
  EXPECT_EQ(stats.warmups_fired(), 1);
  EXPECT_EQ(stats.warmups_failed(), 1);
  EXPECT_FALSE(stats.has_warm_until());
  EXPECT_THAT(Metric("prewarm_warmups_total", {{"service", "broken"}, {"result", "failed"}}),
              Optional(1.0));
}

// hit: the warm-up was answered before the task called; late: the warm-up was still in flight;
// miss: the task started before its warm-up and found its service cold.
TEST_F(RunRegistryTest, CountsHitsMissesAndLateWarmups) {
  RegisterDelegated("svc-d");
  const DelegatedWarmups::SubscriberId watcher = delegated_->Subscribe({}, [] {});
  v1::PrewarmRequest request;
  request.set_run_id("run-1");
  request.set_workflow_id("wf");
  const std::pair<const char*, const char*> tasks[] = {
      {"hit", "svc-a"}, {"late", "svc-d"}, {"miss", "svc-b"}};
  for (const auto& [task, service] : tasks) {
    v1::Task* t = request.add_tasks();
    t->set_task_id(task);
    t->set_service(service);
  }
  *request.mutable_start_time() = ToProtoTimestamp(t0_ + absl::Seconds(60));
  ASSERT_TRUE(Prewarm(request).ok());

  // "miss" starts early, before its warm-up fires, on a cold service.
  clock_.AdvanceTo(t0_ + absl::Seconds(10));
  ASSERT_TRUE(Report("run-1", "miss", v1::TASK_EVENT_TYPE_STARTED).ok());
  EXPECT_EQ(Task("run-1", "miss").warmup_state(), v1::WARMUP_STATE_CANCELLED);

  EXPECT_EQ(RunUntil(t0_ + absl::Seconds(58)), 2);
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "hit", v1::WARMUP_STATE_READY));
  EXPECT_EQ(Task("run-1", "late").warmup_state(), v1::WARMUP_STATE_FIRED);
  v1::WatchWarmupsResponse instruction;
  ASSERT_TRUE(delegated_->Pop(watcher, &instruction));  // Fired, never reported.

  clock_.AdvanceTo(t0_ + absl::Seconds(60));
  for (const char* task : {"hit", "late", "miss"}) {
    if (std::string(task) != "miss") {
      ASSERT_TRUE(Report("run-1", task, v1::TASK_EVENT_TYPE_STARTED).ok());
    }
    absl::StatusOr<v1::ReportTimingResponse> invoked =
        Report("run-1", task, v1::TASK_EVENT_TYPE_SERVICE_INVOKED);
    ASSERT_TRUE(invoked.ok()) << invoked.status();
    EXPECT_EQ(invoked->replanned_tasks_size(), 0);  // Moves no start time.
  }
  EXPECT_EQ(Task("run-1", "hit").outcome(), v1::TASK_OUTCOME_HIT);
  EXPECT_EQ(Task("run-1", "late").outcome(), v1::TASK_OUTCOME_LATE);
  EXPECT_EQ(Task("run-1", "miss").outcome(), v1::TASK_OUTCOME_MISS);

  EXPECT_EQ(Stats("svc-a").hit_count(), 1);
  EXPECT_EQ(Stats("svc-d").late_count(), 1);
  EXPECT_EQ(Stats("svc-b").miss_count(), 1);
  EXPECT_EQ(Stats("svc-b").hit_count(), 0);
  EXPECT_THAT(Metric("prewarm_task_starts_total", {{"service", "svc-a"}, {"outcome", "hit"}}),
              Optional(1.0));
  EXPECT_THAT(Metric("prewarm_task_starts_total", {{"service", "svc-d"}, {"outcome", "late"}}),
              Optional(1.0));
  EXPECT_THAT(Metric("prewarm_task_starts_total", {{"service", "svc-b"}, {"outcome", "miss"}}),
              Optional(1.0));
  EXPECT_THAT(Metric("prewarm_cold_start_hidden_seconds_total", {{"service", "svc-a"}}),
              Optional(2.0));

  // The outcome is settled once: a later report does not count it again.
  ASSERT_TRUE(Report("run-1", "hit", v1::TASK_EVENT_TYPE_FINISHED).ok());
  EXPECT_EQ(Stats("svc-a").hit_count(), 1);
}

TEST_F(RunRegistryTest, ATaskFinishedWithoutColdInformationOnAColdServiceIsAMiss) {
  // The run starts now: its root cannot be warmed, and its service has never been called.
  ASSERT_TRUE(Prewarm(Chain("run-1", absl::ZeroDuration())).ok());
  EXPECT_EQ(Task("run-1", "a").decision(), v1::WARMUP_DECISION_SKIP_TOO_LATE);
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_STARTED).ok());
  clock_.Advance(absl::Seconds(12));
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_FINISHED).ok());
  EXPECT_EQ(Task("run-1", "a").outcome(), v1::TASK_OUTCOME_MISS);
  EXPECT_EQ(Stats("svc-a").miss_count(), 1);
  EXPECT_EQ(Stats("svc-a").hit_count(), 0);
}

TEST_F(RunRegistryTest, ReportedColdnessDecidesTheOutcome) {
  ASSERT_TRUE(Prewarm(Chain("run-1", absl::ZeroDuration())).ok());
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_STARTED, {.cold = false}).ok());
  EXPECT_EQ(Task("run-1", "a").outcome(), v1::TASK_OUTCOME_HIT);
  clock_.Advance(absl::Seconds(10));
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_FINISHED).ok());
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(Report("run-1", "b", v1::TASK_EVENT_TYPE_SERVICE_INVOKED,
                     {.cold = true, .cold_start = absl::Seconds(3)})
                  .ok());
  EXPECT_EQ(Task("run-1", "b").outcome(), v1::TASK_OUTCOME_MISS);
  v1::GetServiceStatsResponse b = Stats("svc-b");
  EXPECT_EQ(b.cold_start().sample_count(), 1);
  EXPECT_EQ(D(b.cold_start().p50()), absl::Seconds(3));
}

TEST_F(RunRegistryTest, AnotherRunsWarmupIsShared) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  RunUntil(t0_ + absl::Seconds(58));
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "a", v1::WARMUP_STATE_READY));
  // svc-a is warm until about 58 + 60 s: a second run needing it at t0+90 s need not warm it.
  v1::PrewarmRequest second = Chain("run-2", absl::Seconds(32));
  absl::StatusOr<v1::RunPlan> plan = Prewarm(second);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(TaskOf(*plan, "a").decision(), v1::WARMUP_DECISION_SKIP_ALREADY_WARM)
      << TaskOf(*plan, "a").reason();
  EXPECT_EQ(TaskOf(*plan, "a").warmup_state(), v1::WARMUP_STATE_NONE);
  EXPECT_THAT(Metric("prewarm_warmups_total", {{"service", "svc-a"}, {"result", "skipped_warm"}}),
              Optional(1.0));
}

TEST_F(RunRegistryTest, AWarmupIsSkippedWhenAnotherRunWarmedTheServiceSinceThePlan) {
  // Both planned while svc-a is cold; run-1's warm-up at 58 keeps it warm past run-2's start at
  // 70, so run-2's warm-up at 68 is skipped when it comes due.
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  ASSERT_TRUE(Prewarm(Chain("run-2", absl::Seconds(70))).ok());
  ASSERT_EQ(Task("run-2", "a").decision(), v1::WARMUP_DECISION_WARM);
  RunUntil(t0_ + absl::Seconds(58));
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "a", v1::WARMUP_STATE_READY));
  RunUntil(t0_ + absl::Seconds(68));
  EXPECT_EQ(Task("run-2", "a").warmup_state(), v1::WARMUP_STATE_NONE);
  EXPECT_EQ(Requests("/svc-a"), 1);
  EXPECT_THAT(Metric("prewarm_warmups_total", {{"service", "svc-a"}, {"result", "skipped_warm"}}),
              Optional(1.0));
  EXPECT_EQ(Stats("svc-a").warmups_fired(), 1);

  // Its task finds the service warm all the same.
  clock_.AdvanceTo(t0_ + absl::Seconds(70));
  ASSERT_TRUE(Report("run-2", "a", v1::TASK_EVENT_TYPE_STARTED).ok());
  ASSERT_TRUE(Report("run-2", "a", v1::TASK_EVENT_TYPE_SERVICE_INVOKED).ok());
  EXPECT_EQ(Task("run-2", "a").outcome(), v1::TASK_OUTCOME_HIT);
}

TEST_F(RunRegistryTest, DelegatedWarmupsGoToWatchersAndReportWarmupCompletesThem) {
  RegisterDelegated("lambda");
  int wakes = 0;
  const DelegatedWarmups::SubscriberId other = delegated_->Subscribe({"svc-zzz"}, [] {});
  const DelegatedWarmups::SubscriberId watcher =
      delegated_->Subscribe({"lambda"}, [&] { ++wakes; });
  v1::PrewarmRequest request = OneTaskRun("lambda");
  absl::StatusOr<v1::RunPlan> plan = Prewarm(request);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->tasks(0).decision(), v1::WARMUP_DECISION_WARM);

  EXPECT_EQ(RunUntil(t0_ + absl::Seconds(58)), 1);
  EXPECT_EQ(wakes, 1);
  v1::WatchWarmupsResponse instruction;
  EXPECT_FALSE(delegated_->Pop(other, &instruction));
  ASSERT_TRUE(delegated_->Pop(watcher, &instruction));
  EXPECT_FALSE(instruction.warmup_id().empty());
  EXPECT_EQ(instruction.service(), "lambda");
  EXPECT_EQ(instruction.run_id(), "run-1");
  EXPECT_EQ(instruction.task_id(), "x");
  EXPECT_EQ(T(instruction.warmup_time()), t0_ + absl::Seconds(58));
  EXPECT_EQ(T(instruction.expected_start_time()), t0_ + absl::Seconds(60));
  EXPECT_EQ(Task("run-1", "x").warmup_state(), v1::WARMUP_STATE_FIRED);
  EXPECT_EQ(TotalRequests(), 0);  // The server fires nothing itself.

  v1::ReportWarmupRequest report;
  report.set_warmup_id("not-a-number");
  EXPECT_EQ(registry_->ReportWarmup(report).code(), absl::StatusCode::kInvalidArgument);
  report.set_warmup_id("987654");
  report.set_success(true);
  *report.mutable_latency() = ToProtoDuration(absl::Seconds(2));
  absl::Status unknown = registry_->ReportWarmup(report);
  EXPECT_EQ(unknown.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.message(), HasSubstr("987654"));

  report.set_warmup_id(instruction.warmup_id());
  report.clear_latency();
  EXPECT_EQ(registry_->ReportWarmup(report).code(), absl::StatusCode::kInvalidArgument);
  *report.mutable_latency() = ToProtoDuration(absl::Seconds(-1));
  EXPECT_EQ(registry_->ReportWarmup(report).code(), absl::StatusCode::kInvalidArgument);
  *report.mutable_latency() = ToProtoDuration(absl::Seconds(2));
  ASSERT_TRUE(registry_->ReportWarmup(report).ok());
  EXPECT_EQ(Task("run-1", "x").warmup_state(), v1::WARMUP_STATE_READY);
  EXPECT_EQ(registry_->ReportWarmup(report).code(), absl::StatusCode::kNotFound);  // Twice.

  v1::GetServiceStatsResponse stats = Stats("lambda");
  EXPECT_EQ(stats.warmups_fired(), 1);
  EXPECT_EQ(stats.cold_start().sample_count(), 1);  // 2 s is well above the warm latency.
  EXPECT_TRUE(stats.has_warm_until());
}

TEST_F(RunRegistryTest, ADelegatedWarmupWithoutWatcherFails) {
  RegisterDelegated("lambda");
  v1::PrewarmRequest request = OneTaskRun("lambda");
  ASSERT_TRUE(Prewarm(request).ok());
  RunUntil(t0_ + absl::Seconds(58));
  EXPECT_EQ(Task("run-1", "x").warmup_state(), v1::WARMUP_STATE_FAILED);
  EXPECT_EQ(Stats("lambda").warmups_failed(), 1);
}

// A watcher that takes an instruction and never reports must not leave it in flight for ever.
TEST_F(RunRegistryTest, AnUnreportedDelegatedWarmupFailsAfterTheReportTimeout) {
  RegisterDelegated("lambda");
  const DelegatedWarmups::SubscriberId watcher = delegated_->Subscribe({"lambda"}, [] {});
  v1::PrewarmRequest request = OneTaskRun("lambda");
  ASSERT_TRUE(Prewarm(request).ok());
  RunUntil(t0_ + absl::Seconds(58));
  v1::WatchWarmupsResponse instruction;
  ASSERT_TRUE(delegated_->Pop(watcher, &instruction));
  EXPECT_EQ(Task("run-1", "x").warmup_state(), v1::WARMUP_STATE_FIRED);

  RunUntil(t0_ + absl::Seconds(58) + absl::Minutes(9));  // Within the 10 min report timeout.
  EXPECT_EQ(Task("run-1", "x").warmup_state(), v1::WARMUP_STATE_FIRED);
  RunUntil(t0_ + absl::Seconds(58) + absl::Minutes(12));
  EXPECT_EQ(Task("run-1", "x").warmup_state(), v1::WARMUP_STATE_FAILED);
  EXPECT_EQ(Stats("lambda").warmups_failed(), 1);
  // A report that finally arrives finds nothing to complete.
  v1::ReportWarmupRequest report;
  report.set_warmup_id(instruction.warmup_id());
  report.set_success(true);
  *report.mutable_latency() = ToProtoDuration(absl::Seconds(2));
  EXPECT_EQ(registry_->ReportWarmup(report).code(), absl::StatusCode::kNotFound);
}

// Answers never run under the registry's lock (the in-memory store commits inline, so even the
// successful ones run on the caller's thread): a callback may call the registry again.
TEST_F(RunRegistryTest, CallbacksMayCallBackIntoTheRegistry) {
  int answers = 0;
  registry_->Prewarm(Chain("run-1"), [&](absl::StatusOr<v1::RunPlan> plan) {
    EXPECT_TRUE(plan.ok());
    EXPECT_TRUE(registry_->GetPlan("run-1").ok());
    ++answers;
  });
  registry_->Prewarm(Chain("run-1"), [&](absl::StatusOr<v1::RunPlan> plan) {
    EXPECT_EQ(plan.status().code(), absl::StatusCode::kAlreadyExists);
    EXPECT_EQ(registry_->active_runs(), 1);
    ++answers;
  });
  v1::PrewarmRequest dry = Chain("run-2");
  dry.set_dry_run(true);
  registry_->Prewarm(dry, [&](absl::StatusOr<v1::RunPlan> plan) {
    EXPECT_TRUE(plan.ok());
    EXPECT_EQ(registry_->pending_warmups(), 3);
    ++answers;
  });
  v1::ReportTimingRequest report;
  report.set_run_id("run-1");
  report.set_task_id("a");
  report.set_event(v1::TASK_EVENT_TYPE_STARTED);
  registry_->ReportTiming(report, [&](absl::StatusOr<v1::ReportTimingResponse> response) {
    EXPECT_TRUE(response.ok());
    EXPECT_TRUE(registry_->GetPlan("run-1").ok());
    ++answers;
  });
  report.set_task_id("nope");
  registry_->ReportTiming(report, [&](absl::StatusOr<v1::ReportTimingResponse> response) {
    EXPECT_EQ(response.status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(registry_->active_runs(), 1);
    ++answers;
  });
  EXPECT_EQ(answers, 5);
}

TEST_F(RunRegistryTest, AWarmupResultOfACancelledRunDoesNotLandOnARunReusingItsId) {
  RegisterDelegated("lambda");
  const DelegatedWarmups::SubscriberId watcher = delegated_->Subscribe({}, [] {});
  v1::PrewarmRequest request;
  request.set_run_id("run-1");
  request.set_workflow_id("wf");
  request.add_tasks()->set_task_id("w");  // So that x is task 1 here and task 0 below.
  request.add_tasks()->set_task_id("x");
  request.mutable_tasks(1)->set_service("lambda");
  *request.mutable_start_time() = ToProtoTimestamp(t0_ + absl::Seconds(60));
  ASSERT_TRUE(Prewarm(request).ok());
  RunUntil(t0_ + absl::Seconds(58));
  v1::WatchWarmupsResponse first;
  ASSERT_TRUE(delegated_->Pop(watcher, &first));
  ASSERT_TRUE(registry_->CancelRun("run-1").ok());

  // The same run id again, with another DAG; its warm-up is in flight too.
  request.mutable_tasks()->DeleteSubrange(0, 1);
  *request.mutable_start_time() = ToProtoTimestamp(clock_.Now() + absl::Seconds(60));
  ASSERT_TRUE(Prewarm(request).ok());
  RunUntil(clock_.Now() + absl::Seconds(58));
  v1::WatchWarmupsResponse second;
  ASSERT_TRUE(delegated_->Pop(watcher, &second));
  ASSERT_NE(first.warmup_id(), second.warmup_id());
  ASSERT_EQ(Task("run-1", "x").warmup_state(), v1::WARMUP_STATE_FIRED);

  // The old warm-up's answer is still learned from, but it is not the new run's warm-up.
  v1::ReportWarmupRequest report;
  report.set_warmup_id(first.warmup_id());
  report.set_success(true);
  *report.mutable_latency() = ToProtoDuration(absl::Seconds(1));
  ASSERT_TRUE(registry_->ReportWarmup(report).ok());
  EXPECT_EQ(Task("run-1", "x").warmup_state(), v1::WARMUP_STATE_FIRED);
  report.set_warmup_id(second.warmup_id());
  ASSERT_TRUE(registry_->ReportWarmup(report).ok());
  EXPECT_EQ(Task("run-1", "x").warmup_state(), v1::WARMUP_STATE_READY);
}

TEST_F(RunRegistryTest, UnregisteredServicesArePlannedButNotWarmed) {
  v1::PrewarmRequest request = Chain("run-1");
  request.mutable_tasks(1)->set_service("unknown-svc");
  request.mutable_tasks(2)->clear_service();
  absl::StatusOr<v1::RunPlan> plan = Prewarm(request);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(TaskOf(*plan, "b").decision(), v1::WARMUP_DECISION_SKIP_NO_SERVICE);
  EXPECT_EQ(TaskOf(*plan, "b").warmup_state(), v1::WARMUP_STATE_NONE);
  EXPECT_THAT(TaskOf(*plan, "b").reason(), HasSubstr("unknown-svc"));
  EXPECT_EQ(TaskOf(*plan, "c").decision(), v1::WARMUP_DECISION_SKIP_NO_SERVICE);
  EXPECT_EQ(T(TaskOf(*plan, "c").expected_start_time()), t0_ + absl::Seconds(82));
  EXPECT_EQ(registry_->pending_warmups(), 1);

  // Durations are learned for an unregistered service too, and its stats answer.
  clock_.AdvanceTo(t0_ + absl::Seconds(70));
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_FINISHED).ok());
  ASSERT_TRUE(Report("run-1", "b", v1::TASK_EVENT_TYPE_STARTED).ok());
  clock_.AdvanceTo(t0_ + absl::Seconds(75));
  ASSERT_TRUE(Report("run-1", "b", v1::TASK_EVENT_TYPE_FINISHED, {.cold = false}).ok());
  EXPECT_EQ(Stats("unknown-svc").duration().sample_count(), 1);
}

TEST_F(RunRegistryTest, AScheduledRunDoesNotExpireBeforeItStarts) {
  // Submitted two hours ahead, with a 30 min idle timeout: the wait for the start is not idleness.
  ASSERT_TRUE(Prewarm(Chain("run-1", absl::Hours(2))).ok());
  RunUntil(t0_ + absl::Minutes(90));
  ASSERT_EQ(registry_->active_runs(), 1);
  EXPECT_EQ(Task("run-1", "a").warmup_state(), v1::WARMUP_STATE_PENDING);
  RunUntil(t0_ + absl::Hours(2) - absl::Seconds(2));
  ASSERT_GE(Requests("/svc-a"), 1);
  // Idle for longer than the timeout after its start: expired.
  RunUntil(t0_ + absl::Hours(2) + absl::Minutes(32));
  EXPECT_EQ(registry_->active_runs(), 0);
}

TEST_F(RunRegistryTest, TheRetiredListKeepsTheLatestRunOfAReusedId) {
  options_.max_retired_runs = 2;
  Halt();
  Boot(NewInMemoryHistoryStore());
  for (const char* name : {"svc-a", "svc-b", "svc-c"}) RegisterManaged(name);

  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  ASSERT_TRUE(registry_->CancelRun("run-1").ok());
  ASSERT_TRUE(Prewarm(Chain("run-1", absl::Seconds(90))).ok());  // The id again.
  ASSERT_TRUE(registry_->CancelRun("run-1").ok());
  ASSERT_TRUE(Prewarm(Chain("run-2")).ok());
  ASSERT_TRUE(registry_->CancelRun("run-2").ok());
  // The two latest retirements are run-1 (the second one) and run-2.
  absl::StatusOr<v1::RunPlan> plan = registry_->GetPlan("run-1");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(T(plan->start_time()), t0_ + absl::Seconds(90));
  EXPECT_TRUE(registry_->GetPlan("run-2").ok());
  ASSERT_TRUE(Prewarm(Chain("run-3")).ok());
  ASSERT_TRUE(registry_->CancelRun("run-3").ok());
  EXPECT_EQ(registry_->GetPlan("run-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(registry_->GetPlan("run-2").ok());
  EXPECT_TRUE(registry_->GetPlan("run-3").ok());
}

// A store that holds back the first write of one run's record (snapshot or event) until that
// run's DeleteRun arrives (or a second passes): it plays a thread that is preempted between
// updating a run and writing its record while another thread retires the run.
class HoldingStore final : public ForwardingStore {
 public:
  HoldingStore(std::unique_ptr<HistoryStore> inner, std::string run_id)
      : ForwardingStore(std::move(inner)), run_id_(std::move(run_id)) {}

  void PutRun(std::string run_id, std::string serialized, CommitCallback done) override {
    MaybeHold(run_id);
    inner_->PutRun(std::move(run_id), std::move(serialized), std::move(done));
  }
  void AppendRunEvent(std::string run_id, std::string serialized, CommitCallback done) override {
    MaybeHold(run_id);
    inner_->AppendRunEvent(std::move(run_id), std::move(serialized), std::move(done));
  }
  void MaybeHold(const std::string& run_id) {
    bool hold = false;
    {
      absl::MutexLock lock(&mu_);
      if (armed_ && run_id == run_id_) {
        armed_ = false;
        holding_ = true;
        hold = true;
      }
    }
    if (hold) {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&deleted_), absl::Seconds(1));
      holding_ = false;
    }
  }
  void DeleteRun(std::string run_id, CommitCallback done) override {
    inner_->DeleteRun(run_id, std::move(done));
    absl::MutexLock lock(&mu_);
    if (run_id == run_id_) deleted_ = true;
  }

  void Arm() {
    absl::MutexLock lock(&mu_);
    armed_ = true;
  }
  // Waits until a run write is being held.
  bool WaitUntilHolding() {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&holding_), kPatience);
  }

 private:
  const std::string run_id_;
  absl::Mutex mu_;
  bool armed_ ABSL_GUARDED_BY(mu_) = false;
  bool holding_ ABSL_GUARDED_BY(mu_) = false;
  bool deleted_ ABSL_GUARDED_BY(mu_) = false;
};

TEST_F(RunRegistryTest, ARetiredRunIsNotResurrectedByAConcurrentEventsSnapshot) {
  Halt();
  auto holding = std::make_unique<HoldingStore>(NewInMemoryHistoryStore(), "run-1");
  HoldingStore* store = holding.get();
  Boot(std::move(holding));
  for (const char* name : {"svc-a", "svc-b"}) RegisterManaged(name);
  v1::PrewarmRequest request;
  request.set_run_id("run-1");
  request.set_workflow_id("wf");
  request.add_tasks()->set_task_id("x");
  request.add_tasks()->set_task_id("y");
  ASSERT_TRUE(Prewarm(request).ok());

  // x and y finish at the same moment on two threads; y's event, the last, retires the run.
  store->Arm();
  std::thread x([&] { EXPECT_TRUE(Report("run-1", "x", v1::TASK_EVENT_TYPE_FINISHED).ok()); });
  ASSERT_TRUE(store->WaitUntilHolding());
  absl::StatusOr<v1::ReportTimingResponse> y = Report("run-1", "y", v1::TASK_EVENT_TYPE_FINISHED);
  x.join();
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_TRUE(y->run_finished());

  std::vector<std::string> stored;
  ASSERT_TRUE(
      store->LoadRuns([&](absl::string_view id, absl::string_view) { stored.emplace_back(id); })
          .ok());
  EXPECT_TRUE(stored.empty()) << "a restart would resurrect " << stored.front();
  int events = 0;
  ASSERT_TRUE(store->LoadRunEvents([&](absl::string_view, absl::string_view) { ++events; }).ok());
  EXPECT_EQ(events, 0) << "the retired run's events outlived it";
}

// Issue 11, defect 4: a store callback that ran after the registry was freed (heap-use-after-
// free under ASan). The registry's destructor now waits for them.
TEST_F(RunRegistryTest, DestroyingTheRegistryWaitsForItsStoreCallbacks) {
  Halt();
  auto deferring = std::make_unique<DeferringStore>(NewInMemoryHistoryStore());
  DeferringStore* store = deferring.get();
  Boot(std::move(deferring));
  RegisterManaged("svc-a");
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());

  // CancelRun does not wait for its write: its callback (which uses the registry) is left to the
  // store's writer.
  store->Defer();
  ASSERT_TRUE(registry_->CancelRun("run-1").ok());
  ASSERT_GE(store->held(), 1u);

  warmer_->Shutdown();
  absl::Notification destroyed;
  std::thread destroyer([&] {
    registry_.reset();
    destroyed.Notify();
  });
  // Correct code never returns here while a callback is held, so this wait cannot fail it; a
  // destructor that does not wait returns well within it.
  EXPECT_FALSE(destroyed.WaitForNotificationWithTimeout(absl::Milliseconds(50)))
      << "the registry was destroyed with store callbacks outstanding";
  store->Release();  // Under the old code: use after free.
  destroyer.join();
  EXPECT_TRUE(destroyed.HasBeenNotified());
  EXPECT_THAT(Metric("prewarm_store_writes_total", {{"result", "ok"}}),
              Optional(::testing::Ge(1.0)));
}

// A summary answer is as durable as a full one: it waits for the store's commit, and carries its
// failure.
TEST_F(RunRegistryTest, ASummaryAnswerWaitsForTheCommit) {
  Halt();
  std::unique_ptr<HistoryStore> inner = NewInMemoryHistoryStore();
  auto* memory = dynamic_cast<InMemoryHistoryStore*>(inner.get());
  ASSERT_NE(memory, nullptr);
  auto deferring = std::make_unique<DeferringStore>(std::move(inner));
  DeferringStore* store = deferring.get();
  Boot(std::move(deferring));
  RegisterManaged("svc-a");
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  v1::ReportTimingRequest request;
  request.set_run_id("run-1");
  request.set_task_id("a");
  request.set_event(v1::TASK_EVENT_TYPE_STARTED);
  request.set_view(v1::REPORT_TIMING_VIEW_SUMMARY);
  store->Defer();
  v1::ReportTimingResponse response;
  std::optional<absl::Status> answered;
  registry_->ReportTiming(request, &response, [&](absl::Status st) { answered = std::move(st); });
  ASSERT_GE(store->held(), 1u);
  EXPECT_FALSE(answered.has_value()) << "answered before the commit";
  store->Release();
  ASSERT_TRUE(answered.has_value());
  EXPECT_TRUE(answered->ok()) << *answered;
  EXPECT_EQ(response.replanned_task_count(), 3);

  memory->SetWriteError(absl::ResourceExhaustedError("disk full"));
  request.set_event(v1::TASK_EVENT_TYPE_FINISHED);
  absl::StatusOr<v1::ReportTimingResponse> failed = Report(request);
  memory->SetWriteError(absl::OkStatus());
  EXPECT_FALSE(store_->Flush().ok());  // Takes the injected error, which Close() would report.
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(failed.status().message(), ::testing::HasSubstr("disk full"));
}

// Issue 11: an acknowledged cancel must survive a kill -9. The acknowledgement (`committed`)
// waits for the retirement's commit; before this it was answered as soon as the delete was
// queued, and the durability test saw cancelled runs come back after a restart.
TEST_F(RunRegistryTest, CancelRunIsAcknowledgedOnlyOnceTheRetirementIsCommitted) {
  Halt();
  auto deferring = std::make_unique<DeferringStore>(NewInMemoryHistoryStore());
  DeferringStore* store = deferring.get();
  Boot(std::move(deferring));
  RegisterManaged("svc-a");
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());

  store->Defer();
  std::optional<absl::StatusOr<int>> acknowledged;
  absl::StatusOr<int> cancelled = registry_->CancelRun(
      "run-1", [&](absl::StatusOr<int> committed) { acknowledged = std::move(committed); });
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_FALSE(acknowledged.has_value()) << "acknowledged before the store committed";
  store->Release();
  ASSERT_TRUE(acknowledged.has_value());
  ASSERT_TRUE(acknowledged->ok()) << acknowledged->status();
  EXPECT_EQ(**acknowledged, *cancelled);
}

// Issue 11, defect 1: memory stays flat under an endless stream of new names.
TEST_F(RunRegistryTest, HistoryKeysAndCountersStayAtTheirCapsUnderNewNames) {
  Halt();
  constexpr int kCap = 100;
  options_.history.max_keys = kCap;
  options_.max_unregistered_service_counters = 10;
  Boot(NewInMemoryHistoryStore());
  RegisterManaged("svc-a");
  constexpr int kRuns = 3 * kCap;  // Each teaches 3 new keys: 9 times the cap.
  for (int i = 0; i < kRuns; ++i) {
    OneRunOfNewNames(i);
    if (i % 50 == 0) {
      ASSERT_THAT(Metric("prewarm_history_keys"), Optional(::testing::Le(kCap))) << i;
    }
  }
  EXPECT_THAT(Metric("prewarm_history_keys"), Optional(static_cast<double>(kCap)));
  EXPECT_THAT(Metric("prewarm_history_keys_evicted_total"), Optional(::testing::Gt(kCap)));
  EXPECT_EQ(StoredKeys(), static_cast<size_t>(kCap)) << "evictions are mirrored in the store";
  // Counters are kept for registered services + 10 services; svc-a has none yet.
  EXPECT_THAT(Metric("prewarm_service_counters_evicted_total"), Optional(kRuns - 11.0));

  // The newest names are learned; the oldest are forgotten (not registered, no history left).
  const v1::GetServiceStatsResponse newest = Stats(absl::StrCat("tenant-", kRuns - 1));
  EXPECT_EQ(newest.duration().sample_count(), 1);
  EXPECT_EQ(newest.miss_count(), 1);
  EXPECT_EQ(registry_->GetServiceStats("tenant-0").status().code(), absl::StatusCode::kNotFound);
  // Recent enough to keep its history, too old to keep its counters.
  const v1::GetServiceStatsResponse older = Stats(absl::StrCat("tenant-", kRuns - 20));
  EXPECT_EQ(older.duration().sample_count(), 1);
  EXPECT_EQ(older.miss_count() + older.hit_count() + older.late_count(), 0);
  // A registered service's counters are never evicted.
  EXPECT_TRUE(registry_->GetServiceStats("svc-a").ok());
}

// --- Bad input: the right code and a message naming the field or task. ---

class RunRegistryErrorTest : public RunRegistryTest {
 protected:
  void SetUp() override {
    RunRegistryTest::SetUp();
    ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  }

  void ExpectPrewarmError(const v1::PrewarmRequest& request, absl::StatusCode code,
                          absl::string_view names) {
    absl::StatusOr<v1::RunPlan> plan = Prewarm(request);
    EXPECT_EQ(plan.status().code(), code) << plan.status();
    EXPECT_THAT(plan.status().message(), HasSubstr(names));
  }

  void ExpectReportError(const v1::ReportTimingRequest& request, absl::StatusCode code,
                         absl::string_view names) {
    absl::StatusOr<v1::ReportTimingResponse> plan = Report(request);
    EXPECT_EQ(plan.status().code(), code) << plan.status();
    EXPECT_THAT(plan.status().message(), HasSubstr(names));
  }

  v1::ReportTimingRequest MakeEvent(std::string task = "a",
                                    v1::TaskEventType type = v1::TASK_EVENT_TYPE_STARTED) {
    v1::ReportTimingRequest r;
    r.set_run_id("run-1");
    r.set_task_id(std::move(task));
    r.set_event(type);
    return r;
  }
};

TEST_F(RunRegistryErrorTest, UnknownRunOrTaskIsNotFound) {
  v1::ReportTimingRequest r = MakeEvent();
  r.set_run_id("no-such-run");
  ExpectReportError(r, absl::StatusCode::kNotFound, "no-such-run");
  ExpectReportError(MakeEvent("zz"), absl::StatusCode::kNotFound, "'zz'");
  EXPECT_EQ(registry_->GetPlan("no-such-run").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(registry_->GetPlan("no-such-run").status().message(), HasSubstr("no-such-run"));
  EXPECT_EQ(registry_->CancelRun("no-such-run").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry_->GetServiceStats("never-seen").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RunRegistryErrorTest, EmptyIdsAreInvalid) {
  v1::ReportTimingRequest r = MakeEvent();
  r.set_run_id("");
  ExpectReportError(r, absl::StatusCode::kInvalidArgument, "run_id");
  EXPECT_EQ(registry_->GetPlan("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_->CancelRun("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_->GetServiceStats("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_->GetServiceStats("bad name").status().code(),
            absl::StatusCode::kInvalidArgument);

  v1::PrewarmRequest p = Chain("");
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "run_id");
  p = Chain("run-2");
  p.clear_workflow_id();
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "workflow_id");
  p = Chain("run-2");
  p.mutable_tasks(1)->clear_task_id();
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "tasks[1].task_id");
  p = Chain("run-2");
  p.clear_tasks();
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "no tasks");
  p = Chain("run-2");
  p.mutable_tasks(2)->set_service("bad service!");
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "'c'");
}

TEST_F(RunRegistryErrorTest, DuplicateActiveRunIsAlreadyExists) {
  ExpectPrewarmError(Chain("run-1"), absl::StatusCode::kAlreadyExists, "run-1");
}

TEST_F(RunRegistryErrorTest, BadDagsAreInvalid) {
  v1::PrewarmRequest p = Chain("run-2");
  p.mutable_tasks(0)->add_upstream_task_ids("c");  // a -> b -> c -> a
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "cycle");

  p = Chain("run-2");
  p.mutable_tasks(2)->set_task_id("b");
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "duplicate task id 'b'");

  p = Chain("run-2");
  p.mutable_tasks(1)->add_upstream_task_ids("ghost");
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "ghost");

  p = Chain("run-2");
  p.mutable_tasks(1)->add_upstream_task_ids("b");
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "itself");
  EXPECT_EQ(registry_->active_runs(), 1);
  EXPECT_EQ(registry_->pending_warmups(), 3);
}

TEST_F(RunRegistryErrorTest, BadTimesAndRatiosAreInvalid) {
  v1::PrewarmRequest p = Chain("run-2", absl::Hours(24 * 8));
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "start_time");

  p = Chain("run-2");
  p.mutable_start_time()->set_nanos(-1);
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "start_time");
  p.mutable_start_time()->set_nanos(1'000'000'000);
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "start_time");

  p = Chain("run-2");
  p.set_delay_cost_ratio(-1);
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "delay_cost_ratio");
  p.set_delay_cost_ratio(std::numeric_limits<double>::quiet_NaN());
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "delay_cost_ratio");
  p.set_delay_cost_ratio(std::numeric_limits<double>::infinity());
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "delay_cost_ratio");

  v1::ReportTimingRequest r = MakeEvent();
  *r.mutable_event_time() = ToProtoTimestamp(clock_.Now() + absl::Hours(1));
  ExpectReportError(r, absl::StatusCode::kInvalidArgument, "event_time");
  r = MakeEvent();
  r.mutable_event_time()->set_seconds(absl::ToUnixSeconds(clock_.Now()));
  r.mutable_event_time()->set_nanos(-5);
  ExpectReportError(r, absl::StatusCode::kInvalidArgument, "event_time");
  r = MakeEvent();
  r.mutable_event_time()->set_seconds(std::numeric_limits<int64_t>::max());
  ExpectReportError(r, absl::StatusCode::kInvalidArgument, "event_time");

  r = MakeEvent();
  *r.mutable_cold_start() = ToProtoDuration(absl::Seconds(-1));
  ExpectReportError(r, absl::StatusCode::kInvalidArgument, "cold_start");

  r = MakeEvent();
  r.set_event(v1::TASK_EVENT_TYPE_UNSPECIFIED);
  ExpectReportError(r, absl::StatusCode::kInvalidArgument, "event");
  r.set_event(static_cast<v1::TaskEventType>(99));
  ExpectReportError(r, absl::StatusCode::kInvalidArgument, "event");

  // Nothing of it was applied.
  EXPECT_EQ(Task("run-1", "a").task_state(), v1::TASK_STATE_PENDING);
}

TEST_F(RunRegistryErrorTest, LimitsAreResourceExhausted) {
  v1::PrewarmRequest big;
  big.set_run_id("big");
  big.set_workflow_id("wf");
  for (int i = 0; i < 9; ++i) big.add_tasks()->set_task_id(absl::StrCat("t", i));
  ExpectPrewarmError(big, absl::StatusCode::kResourceExhausted, "8");

  for (int i = 2; i <= 4; ++i) ASSERT_TRUE(Prewarm(Chain(absl::StrCat("run-", i))).ok());
  EXPECT_EQ(registry_->active_runs(), 4);
  ExpectPrewarmError(Chain("run-5"), absl::StatusCode::kResourceExhausted, "4");
  // A dry run keeps no state, so the limit does not apply to it.
  v1::PrewarmRequest dry = Chain("run-5");
  dry.set_dry_run(true);
  EXPECT_TRUE(Prewarm(dry).ok());
}

TEST_F(RunRegistryErrorTest, EventsThatContradictTheTaskStateAreFailedPrecondition) {
  clock_.AdvanceTo(t0_ + absl::Seconds(60));
  ASSERT_TRUE(Report(MakeEvent("a", v1::TASK_EVENT_TYPE_STARTED)).ok());
  clock_.AdvanceTo(t0_ + absl::Seconds(70));
  ASSERT_TRUE(Report(MakeEvent("a", v1::TASK_EVENT_TYPE_FINISHED)).ok());
  // A repeated FINISHED is a redelivery, not a contradiction (see RepeatedEvents... below).
  ExpectReportError(MakeEvent("a", v1::TASK_EVENT_TYPE_FAILED),
                    absl::StatusCode::kFailedPrecondition, "'a'");
  ExpectReportError(MakeEvent("a", v1::TASK_EVENT_TYPE_SKIPPED),
                    absl::StatusCode::kFailedPrecondition, "'a'");
  ExpectReportError(MakeEvent("a", v1::TASK_EVENT_TYPE_STARTED),
                    absl::StatusCode::kFailedPrecondition, "'a'");

  ASSERT_TRUE(Report(MakeEvent("b", v1::TASK_EVENT_TYPE_STARTED)).ok());
  v1::ReportTimingRequest before_start = MakeEvent("b", v1::TASK_EVENT_TYPE_FINISHED);
  *before_start.mutable_event_time() = ToProtoTimestamp(t0_ + absl::Seconds(65));
  ExpectReportError(before_start, absl::StatusCode::kInvalidArgument, "'b'");
  ExpectReportError(MakeEvent("b", v1::TASK_EVENT_TYPE_SKIPPED),
                    absl::StatusCode::kFailedPrecondition, "'b'");
  // The refused events left no trace in the learned history.
  EXPECT_EQ(Stats("svc-a").duration().sample_count(), 1);
}

// Issue 11: a proto3 string must be UTF-8, or the stored run does not parse at the next start.
TEST_F(RunRegistryErrorTest, IdsThatAreNotUtf8AreInvalid) {
  const std::string bad = "\xff\xff\xff\xff\xff";
  ExpectPrewarmError(Chain(bad), absl::StatusCode::kInvalidArgument, "run_id");
  v1::PrewarmRequest p = Chain("run-2");
  p.set_workflow_id(bad);
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "workflow_id");
  p = Chain("run-2");
  p.mutable_tasks(2)->set_task_id(bad);
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "tasks[2].task_id");
  p = Chain("run-2");
  p.mutable_tasks(2)->set_upstream_task_ids(0, "b\xc3");
  ExpectPrewarmError(p, absl::StatusCode::kInvalidArgument, "upstream");
  EXPECT_EQ(registry_->active_runs(), 1);

  v1::ReportTimingRequest r = MakeEvent();
  r.set_run_id(bad);
  ExpectReportError(r, absl::StatusCode::kInvalidArgument, "run_id");
  ExpectReportError(MakeEvent(bad), absl::StatusCode::kInvalidArgument, "task_id");
  EXPECT_THAT(registry_->GetPlan(bad).status().message(), HasSubstr("not valid UTF-8"));
  EXPECT_EQ(registry_->CancelRun(bad).status().code(), absl::StatusCode::kInvalidArgument);
  // Multi-byte characters are ids like any other.
  ASSERT_TRUE(Prewarm(Chain("caf\xc3\xa9-\xf0\x9f\x9a\x80")).ok());
}

// Issue 11, event storms: a scheduler that delivers at least once may repeat any event. A repeat
// is acknowledged, but neither stored (it would be replayed at every restart) nor re-planned.
TEST_F(RunRegistryTest, RepeatedEventsAreAcknowledgedWithoutStoringOrReplanning) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  auto stored_events = [&] {
    EXPECT_TRUE(store_->Flush().ok());
    int n = 0;
    EXPECT_TRUE(store_->LoadRunEvents([&](absl::string_view, absl::string_view) { ++n; }).ok());
    return n;
  };
  clock_.AdvanceTo(t0_ + absl::Seconds(60));
  absl::StatusOr<v1::ReportTimingResponse> first =
      Report("run-1", "a", v1::TASK_EVENT_TYPE_STARTED);
  ASSERT_TRUE(first.ok()) << first.status();
  const int events = stored_events();
  const v1::RunPlan before = registry_->GetPlan("run-1").value();
  for (int i = 0; i < 500; ++i) {
    clock_.AdvanceTo(clock_.Now() + absl::Milliseconds(10));
    absl::StatusOr<v1::ReportTimingResponse> again =
        Report("run-1", "a", v1::TASK_EVENT_TYPE_STARTED);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->replanned_tasks_size(), 0);
    EXPECT_EQ(again->replan_count(), first->replan_count());
  }
  EXPECT_EQ(stored_events(), events);
  // The first start stands.
  EXPECT_EQ(T(Task("run-1", "a").actual_start_time()), t0_ + absl::Seconds(60));
  EXPECT_EQ(registry_->GetPlan("run-1")->replan_count(), before.replan_count());

  // SERVICE_INVOKED and FINISHED repeat the same way; a repeat with news is applied.
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_SERVICE_INVOKED).ok());
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_SERVICE_INVOKED).ok());
  EXPECT_EQ(stored_events(), events + 1);
  clock_.AdvanceTo(t0_ + absl::Seconds(70));
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_FINISHED).ok());
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<v1::ReportTimingResponse> again =
        Report("run-1", "a", v1::TASK_EVENT_TYPE_FINISHED);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_FALSE(again->run_finished());
  }
  EXPECT_EQ(stored_events(), events + 2);
  EXPECT_EQ(Stats("svc-a").duration().sample_count(), 1) << "a repeat teaches nothing";
  // What contradicts the task's state is still refused.
  absl::StatusOr<v1::ReportTimingResponse> skipped =
      Report("run-1", "a", v1::TASK_EVENT_TYPE_SKIPPED);
  EXPECT_EQ(skipped.status().code(), absl::StatusCode::kFailedPrecondition);

  // The last event of a run, repeated after the run ended: acknowledged as finished.
  for (const char* task : {"b", "c"}) {
    ASSERT_TRUE(Report("run-1", task, v1::TASK_EVENT_TYPE_STARTED).ok());
    ASSERT_TRUE(Report("run-1", task, v1::TASK_EVENT_TYPE_FINISHED).ok());
  }
  EXPECT_EQ(registry_->active_runs(), 0);
  absl::StatusOr<v1::ReportTimingResponse> late =
      Report("run-1", "c", v1::TASK_EVENT_TYPE_FINISHED);
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_TRUE(late->run_finished());
  EXPECT_EQ(Report("run-1", "c", v1::TASK_EVENT_TYPE_STARTED).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(Report("run-1", "c", v1::TASK_EVENT_TYPE_SKIPPED).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RunRegistryTest, ARunStoresAtMostMaxEventsPerRun) {
  Halt();
  options_.max_events_per_run = 3;
  Boot(NewInMemoryHistoryStore());
  RegisterManaged("svc-a");
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_STARTED).ok());
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_FAILED).ok());
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_STARTED).ok());  // a retry
  absl::StatusOr<v1::ReportTimingResponse> past = Report("run-1", "a", v1::TASK_EVENT_TYPE_FAILED);
  EXPECT_EQ(past.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(past.status().message(), HasSubstr("'run-1'"));
  EXPECT_THAT(past.status().message(), HasSubstr("3"));
  EXPECT_EQ(Task("run-1", "a").task_state(), v1::TASK_STATE_RUNNING) << "nothing applied";
  // Repeats are still acknowledged at the cap, and other runs have their own.
  EXPECT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_STARTED).ok());
  ASSERT_TRUE(Prewarm(Chain("run-2")).ok());
  EXPECT_TRUE(Report("run-2", "a", v1::TASK_EVENT_TYPE_STARTED).ok());
}

// An HttpWarmer whose Fire() blocks until the test lets it go, to hold a timer callback of the
// registry in progress. After Shutdown() it fails requests at once, as the real one does.
class BlockingWarmer final : public HttpWarmer {
 public:
  void Fire(WarmupRequest request, std::function<void(const WarmupResult&)> done) override {
    entered_.Notify();
    release_.WaitForNotification();
    WarmupResult r;
    r.id = request.id;
    r.error = "shut down";
    done(r);
  }
  int in_flight() const override { return 0; }
  void Shutdown() override {}
  absl::Notification entered_, release_;
};

// Issue 11: TimerQueue::Cancel cannot stop a callback that is already running, so the registry's
// destructor waits for it (and queued ones find the registry gone and do nothing).
TEST_F(RunRegistryTest, DestroyingTheRegistryWaitsForARunningTimerCallback) {
  Halt();
  auto owned = std::make_unique<BlockingWarmer>();
  BlockingWarmer* warmer = owned.get();
  Boot(NewInMemoryHistoryStore(), std::move(owned));
  RegisterManaged("svc-a");
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  clock_.AdvanceTo(t0_ + absl::Seconds(59));
  std::thread timer_thread([&] { timers_->RunDue(); });  // a's warm-up: Fire blocks in the warmer
  warmer->entered_.WaitForNotification();

  absl::Notification destroyed;
  std::thread destroyer([&] {
    registry_.reset();
    destroyed.Notify();
  });
  // Correct code never returns here while the callback runs; a destructor that does not wait
  // returns well within it.
  EXPECT_FALSE(destroyed.WaitForNotificationWithTimeout(absl::Milliseconds(50)))
      << "the registry was destroyed while its timer callback ran";
  warmer->release_.Notify();  // The callback reports the failed warm-up to the registry.
  timer_thread.join();
  destroyer.join();
  EXPECT_TRUE(destroyed.HasBeenNotified());
  // The destructor cancelled the rest (b's and c's warm-ups, the expiry).
  clock_.AdvanceTo(t0_ + absl::Hours(1));
  EXPECT_EQ(timers_->RunDue(), 0);
}

// --- Durability: a restarted server resumes its runs. ---

class RunRegistryRestartTest : public RunRegistryTest {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "run_registry_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    RunRegistryTest::SetUp();
    Restart();  // Over SQLite from the start.
    for (const char* name : {"svc-a", "svc-b", "svc-c"}) RegisterManaged(name);
  }
  void TearDown() override {
    RunRegistryTest::TearDown();
    std::filesystem::remove_all(dir_);
  }

  // Stops everything and starts again over the same SQLite file.
  void Restart() {
    Halt();
    absl::StatusOr<std::unique_ptr<HistoryStore>> store =
        HistoryStore::OpenSqlite({.path = dir_ + "/prewarm.db", .max_batch_delay = {}});
    ASSERT_TRUE(store.ok()) << store.status();
    Boot(*std::move(store));
  }

  std::string dir_;
};

// Lazy planning on (the server's default): with the priors (10 s tasks, 2 s cold starts, 1 s
// gaps) and a 60 s horizon, a task is decided once it starts within 62 s.
class RunRegistryLazyTest : public RunRegistryTest {
 protected:
  RunRegistryLazyTest() { lazy_planning_ = true; }
};

TEST_F(RunRegistryLazyTest, DeferredWarmupsAreDecidedOnTheirTimerAndFireAsEagerly) {
  // a starts at 60 s (warmed at 58), b at 71 (69), c at 82 (80): b and c wait.
  absl::StatusOr<v1::RunPlan> plan = Prewarm(Chain("run-1"));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(TaskOf(*plan, "a").decision(), v1::WARMUP_DECISION_WARM);
  EXPECT_EQ(TaskOf(*plan, "b").decision(), v1::WARMUP_DECISION_DEFERRED);
  EXPECT_THAT(TaskOf(*plan, "b").reason(), HasSubstr("decided at"));
  EXPECT_FALSE(TaskOf(*plan, "b").has_warmup_time());
  EXPECT_EQ(TaskOf(*plan, "c").decision(), v1::WARMUP_DECISION_DEFERRED);
  EXPECT_THAT(TaskOf(*plan, "c").reason(), HasSubstr("upstream task 'b'"));
  EXPECT_EQ(registry_->pending_warmups(), 1);
  // b's decision is due at 71 - 62 = 9 s.
  EXPECT_EQ(timers_->NextDeadline(), t0_ + absl::Seconds(9));

  EXPECT_EQ(RunUntil(t0_ + absl::Seconds(9) - absl::Milliseconds(1)), 0);
  EXPECT_EQ(Task("run-1", "b").decision(), v1::WARMUP_DECISION_DEFERRED);
  EXPECT_EQ(RunUntil(t0_ + absl::Seconds(9)), 1);
  EXPECT_EQ(Task("run-1", "b").decision(), v1::WARMUP_DECISION_WARM);
  EXPECT_EQ(Task("run-1", "b").warmup_state(), v1::WARMUP_STATE_PENDING);
  EXPECT_EQ(T(Task("run-1", "b").warmup_time()), t0_ + absl::Seconds(69));
  EXPECT_EQ(Task("run-1", "c").decision(), v1::WARMUP_DECISION_DEFERRED);
  EXPECT_EQ(registry_->pending_warmups(), 2);
  EXPECT_EQ(timers_->NextDeadline(), t0_ + absl::Seconds(20));  // c's decision
  RunUntil(t0_ + absl::Seconds(20));
  EXPECT_EQ(T(Task("run-1", "c").warmup_time()), t0_ + absl::Seconds(80));
  EXPECT_EQ(registry_->pending_warmups(), 3);
  EXPECT_THAT(Metric("prewarm_pending_warmups"), Optional(3.0));

  // From here on as with eager planning (WarmupsFireWhenTheClockReachesTheirDeadlines).
  EXPECT_EQ(RunUntil(t0_ + absl::Seconds(58)), 1);
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "a", v1::WARMUP_STATE_READY));
  RunUntil(t0_ + absl::Seconds(69) - absl::Milliseconds(1));
  EXPECT_EQ(Requests("/svc-b"), 0);
  RunUntil(t0_ + absl::Seconds(69));
  ExpectChainsLastWarmupsAt69And80();
}

TEST_F(RunRegistryLazyTest, AnEventBringsADeferredTaskCloser) {
  ASSERT_TRUE(Prewarm(Chain("run-1", absl::ZeroDuration())).ok());
  // a starts at once (cold, 2 s): b at 13 s, c at 24 s, both within 62 s.
  EXPECT_EQ(Task("run-1", "c").decision(), v1::WARMUP_DECISION_WARM);
  ASSERT_TRUE(Prewarm(Chain("run-2", absl::Seconds(100))).ok());
  EXPECT_EQ(Task("run-2", "a").decision(), v1::WARMUP_DECISION_DEFERRED);
  // run-2's a reports an early start (at 30 s): the re-plan decides a (started) and b, c.
  RunUntil(t0_ + absl::Seconds(30));
  absl::StatusOr<v1::ReportTimingResponse> r =
      Report("run-2", "a", v1::TASK_EVENT_TYPE_STARTED, {.cold = false});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Task("run-2", "b").decision(), v1::WARMUP_DECISION_WARM);
  EXPECT_EQ(T(Task("run-2", "b").warmup_time()), t0_ + absl::Seconds(39));
  EXPECT_EQ(Task("run-2", "c").decision(), v1::WARMUP_DECISION_WARM);
}

TEST_F(RunRegistryLazyTest, ADryRunShowsEveryDecision) {
  v1::PrewarmRequest request = Chain("run-1");
  request.set_dry_run(true);
  absl::StatusOr<v1::RunPlan> plan = Prewarm(request);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(TaskOf(*plan, "c").decision(), v1::WARMUP_DECISION_WARM);
  EXPECT_EQ(T(TaskOf(*plan, "c").warmup_time()), t0_ + absl::Seconds(80));
}

TEST_F(RunRegistryLazyTest, ACancelledRunDecidesNothingMore) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  EXPECT_EQ(timers_->NextDeadline(), t0_ + absl::Seconds(9));
  ASSERT_TRUE(registry_->CancelRun("run-1").ok());
  // Its deferred timer is gone: next is a's cancelled warm-up's slot or the expiry timer only.
  EXPECT_GT(timers_->NextDeadline(), t0_ + absl::Seconds(58));
  RunUntil(t0_ + absl::Seconds(100));
  EXPECT_EQ(TotalRequests(), 0);
}

TEST_F(RunRegistryRestartTest, ARestartedRegistryResumesPendingWarmups) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  Restart();
  // The server was down while a's deadline passed.
  clock_.AdvanceTo(t0_ + absl::Seconds(59));
  ASSERT_TRUE(registry_->Restore().ok());
  EXPECT_EQ(registry_->active_runs(), 1);
  EXPECT_EQ(services_->size(), 3u);
  absl::StatusOr<v1::RunPlan> plan = registry_->GetPlan("run-1");
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->tasks_size(), 3);
  EXPECT_EQ(TaskOf(*plan, "a").warmup_state(), v1::WARMUP_STATE_PENDING);
  EXPECT_EQ(TaskOf(*plan, "b").warmup_state(), v1::WARMUP_STATE_PENDING);
  // The plan is the one made before the restart: a's warm-up fires 1 s late (at 59 instead of
  // 58), like any late timer, and b is still warmed at 69.
  EXPECT_EQ(T(TaskOf(*plan, "b").warmup_time()), t0_ + absl::Seconds(69));
  EXPECT_EQ(registry_->pending_warmups(), 3);

  EXPECT_EQ(timers_->RunDue(), 1);  // The passed deadline fires at once.
  ASSERT_GE(Requests("/svc-a"), 1);
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "a", v1::WARMUP_STATE_READY));
  RunUntil(t0_ + absl::Seconds(70));
  ASSERT_GE(Requests("/svc-b"), 1);

  // Events keep working on the restored run.
  clock_.AdvanceTo(t0_ + absl::Seconds(70));
  EXPECT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_STARTED).ok());
}

TEST_F(RunRegistryRestartTest, ARestartKeepsEventsFiredWarmupsAndHistory) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  RunUntil(t0_ + absl::Seconds(60));  // a's warm-up fires.
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "a", v1::WARMUP_STATE_READY));
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_STARTED).ok());
  RunUntil(t0_ + absl::Seconds(69));  // b's warm-up fires while a runs.
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "b", v1::WARMUP_STATE_READY));
  clock_.AdvanceTo(t0_ + absl::Seconds(70));
  ASSERT_TRUE(Report("run-1", "a", v1::TASK_EVENT_TYPE_FINISHED).ok());
  ASSERT_TRUE(store_->Flush().ok());

  Restart();
  ASSERT_TRUE(registry_->Restore().ok());
  absl::StatusOr<v1::RunPlan> plan = registry_->GetPlan("run-1");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(TaskOf(*plan, "a").task_state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(T(TaskOf(*plan, "a").actual_start_time()), t0_ + absl::Seconds(60));
  // Fired warm-ups are not fired again; only c's is pending.
  EXPECT_NE(TaskOf(*plan, "a").warmup_state(), v1::WARMUP_STATE_PENDING);
  EXPECT_NE(TaskOf(*plan, "b").warmup_state(), v1::WARMUP_STATE_PENDING);
  EXPECT_EQ(TaskOf(*plan, "c").warmup_state(), v1::WARMUP_STATE_PENDING);
  EXPECT_EQ(registry_->pending_warmups(), 1);
  EXPECT_THAT(Metric("prewarm_pending_warmups"), Optional(1.0));
  EXPECT_EQ(Stats("svc-a").duration().sample_count(), 1);

  EXPECT_EQ(RunUntil(t0_ + absl::Minutes(2)), 1);  // c's warm-up only: no stale timer.
  ASSERT_GE(Requests("/svc-c"), 1);
  EXPECT_EQ(Requests("/svc-a"), 1);
  EXPECT_EQ(Requests("/svc-b"), 1);
}

TEST_F(RunRegistryRestartTest, ADurationHintPlansTheFirstRunAndSurvivesARestart) {
  v1::PrewarmRequest request = Chain("run-1");
  *request.mutable_tasks(0)->mutable_expected_duration() = ToProtoDuration(absl::Seconds(30));
  absl::StatusOr<v1::RunPlan> plan = Prewarm(request);
  ASSERT_TRUE(plan.ok()) << plan.status();
  // a runs about 30 s (its hint, spread log-normally: 20.1 s to 44.0 s) instead of the 10 s
  // prior; b and c have no hint. b's expected start is the mean, 60 + 30.59 + 1 (gap).
  auto at = [&](const google::protobuf::Timestamp& t) { return absl::ToDoubleSeconds(T(t) - t0_); };
  EXPECT_NEAR(at(TaskOf(*plan, "b").expected_start_time()), 91.59, 0.05);
  EXPECT_NEAR(at(TaskOf(*plan, "c").expected_start_time()), 102.59, 0.05);
  // The warm-up covers a run of a as short as the hint allows: 60 + 20.14 + 1 - 2 (cold start).
  EXPECT_NEAR(at(TaskOf(*plan, "b").warmup_time()), 79.14, 0.05);

  ASSERT_TRUE(store_->Flush().ok());
  Restart();
  ASSERT_TRUE(registry_->Restore().ok());
  absl::StatusOr<v1::RunPlan> restored = registry_->GetPlan("run-1");
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(T(TaskOf(*restored, "b").expected_start_time()),
            T(TaskOf(*plan, "b").expected_start_time()));
  EXPECT_EQ(T(TaskOf(*restored, "b").warmup_time()), T(TaskOf(*plan, "b").warmup_time()));
}

// planning.duration_hint_spread: how far a hinted task may stray from its hint. A wider spread
// widens the start times of the tasks after it, and warms them earlier to cover a short run.
TEST_F(RunRegistryTest, AWiderDurationHintSpreadWidensTheStartsAfterTheHintedTask) {
  v1::PrewarmRequest request = Chain("run-1");
  *request.mutable_tasks(0)->mutable_expected_duration() = ToProtoDuration(absl::Seconds(30));
  auto plan_with = [&](double spread) -> v1::RunPlan {
    Halt();
    options_.history.duration_hint_spread = spread;
    Boot(NewInMemoryHistoryStore());
    for (const char* name : {"svc-a", "svc-b", "svc-c"}) RegisterManaged(name);
    absl::StatusOr<v1::RunPlan> plan = Prewarm(request);
    EXPECT_TRUE(plan.ok()) << plan.status();
    return plan.value_or(v1::RunPlan());
  };
  auto spread_of_b = [&](const v1::RunPlan& plan) {
    const v1::TaskPlan& b = TaskOf(plan, "b");
    return absl::ToDoubleSeconds(T(b.start_time_p90()) - T(b.start_time_p10()));
  };
  const v1::RunPlan narrow = plan_with(0.25);  // The default.
  const v1::RunPlan wide = plan_with(1.0);
  // a's hint, 30 s, at the 10th and 90th percentiles: x0.73..x1.38 (about 19 s apart) at 0.25,
  // x0.28..x3.6 (about 100 s apart) at 1.
  EXPECT_GT(spread_of_b(narrow), 10);
  EXPECT_GT(spread_of_b(wide), 3 * spread_of_b(narrow));
  EXPECT_LT(T(TaskOf(wide, "b").warmup_time()), T(TaskOf(narrow, "b").warmup_time()));
}

// route -> b | c -> d, where exactly one of b and c runs: the registry learns their joint
// outcome, so d's plan is certain, and a restored run keeps that model.
TEST_F(RunRegistryRestartTest, ExclusiveBranchesAreLearnedTogetherAndKeptAcrossARestart) {
  auto branchy = [&](const std::string& run_id) {
    v1::PrewarmRequest r;
    r.set_run_id(run_id);
    r.set_workflow_id("wf");
    auto add = [&](const char* id, const char* service, std::vector<const char*> upstream) {
      v1::Task* t = r.add_tasks();
      t->set_task_id(id);
      t->set_service(service);
      for (const char* u : upstream) t->add_upstream_task_ids(u);
    };
    add("route", "svc-a", {});
    add("b", "svc-b", {"route"});
    add("c", "svc-c", {"route"});
    add("d", "", {"b", "c"});
    *r.mutable_start_time() = ToProtoTimestamp(clock_.Now());
    return r;
  };
  auto step = [&] { clock_.AdvanceTo(clock_.Now() + absl::Seconds(1)); };
  for (int i = 0; i < 8; ++i) {
    const std::string run = absl::StrCat("run-", i);
    const std::string taken = i % 2 == 0 ? "b" : "c";
    const std::string other = i % 2 == 0 ? "c" : "b";
    ASSERT_TRUE(Prewarm(branchy(run)).ok());
    ASSERT_TRUE(Report(run, "route", v1::TASK_EVENT_TYPE_STARTED).ok());
    step();
    ASSERT_TRUE(Report(run, "route", v1::TASK_EVENT_TYPE_FINISHED).ok());
    ASSERT_TRUE(Report(run, taken, v1::TASK_EVENT_TYPE_STARTED).ok());
    ASSERT_TRUE(Report(run, other, v1::TASK_EVENT_TYPE_SKIPPED).ok());
    step();
    ASSERT_TRUE(Report(run, taken, v1::TASK_EVENT_TYPE_FINISHED).ok());
    ASSERT_TRUE(Report(run, "d", v1::TASK_EVENT_TYPE_STARTED).ok());
    step();
    ASSERT_TRUE(Report(run, "d", v1::TASK_EVENT_TYPE_FINISHED).ok());
  }
  absl::StatusOr<v1::RunPlan> plan = Prewarm(branchy("run-next"));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_NEAR(TaskOf(*plan, "b").run_probability(), 0.5, 0.1);
  EXPECT_NEAR(TaskOf(*plan, "c").run_probability(), 0.5, 0.1);
  // Drawn independently, about a quarter of the samples would run neither branch.
  EXPECT_DOUBLE_EQ(TaskOf(*plan, "d").run_probability(), 1.0);

  ASSERT_TRUE(store_->Flush().ok());
  Restart();
  ASSERT_TRUE(registry_->Restore().ok());
  absl::StatusOr<v1::RunPlan> restored = registry_->GetPlan("run-next");
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_DOUBLE_EQ(TaskOf(*restored, "d").run_probability(), 1.0);
  // The history came back too: a new run is planned the same way.
  absl::StatusOr<v1::RunPlan> after = Prewarm(branchy("run-after"));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_DOUBLE_EQ(TaskOf(*after, "d").run_probability(), 1.0);
}

// The teardown order of issue 11's use after free, over the real store: the registry goes first,
// while the writer still holds its callbacks (a batch delay keeps them queued), then the store.
TEST_F(RunRegistryRestartTest, TheRegistryMayBeDestroyedBeforeTheStoreIsClosed) {
  Halt();
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(
      {.path = dir_ + "/prewarm.db", .max_batch_delay = absl::Milliseconds(50)});
  ASSERT_TRUE(store.ok()) << store.status();
  Boot(*std::move(store));
  ASSERT_TRUE(registry_->Restore().ok());
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  ASSERT_TRUE(Prewarm(Chain("run-2")).ok());
  ASSERT_TRUE(registry_->CancelRun("run-1").ok());  // Queued; not waited for.
  ASSERT_TRUE(registry_->CancelRun("run-2").ok());
  warmer_->Shutdown();
  registry_.reset();  // Waits for the callbacks of both deletions.
  EXPECT_TRUE(store_->Close().ok());
}

// Issue 11, defect 1: the store holds the live keys only, a restart reloads them in their
// recency order, and a restart with a smaller cap keeps the most recently observed.
TEST_F(RunRegistryRestartTest, ARestartLoadsOnlyTheLiveKeysNewestFirst) {
  Halt();
  options_.history.max_keys = 100;
  Restart();
  ASSERT_TRUE(registry_->Restore().ok());
  for (int i = 0; i < 60; ++i) OneRunOfNewNames(i);
  EXPECT_EQ(StoredKeys(), 100u);

  Restart();
  ASSERT_TRUE(registry_->Restore().ok());
  EXPECT_THAT(Metric("prewarm_history_keys"), Optional(100.0));
  EXPECT_EQ(StoredKeys(), 100u);
  // The order survived: the next new names evict the oldest keys, not the newest.
  OneRunOfNewNames(60);
  EXPECT_EQ(Stats("tenant-59").duration().sample_count(), 1);

  options_.history.max_keys = 50;
  Restart();
  ASSERT_TRUE(registry_->Restore().ok());
  EXPECT_THAT(Metric("prewarm_history_keys"), Optional(50.0));
  EXPECT_EQ(StoredKeys(), 50u) << "keys past the new cap leave the store";
  EXPECT_EQ(Stats("tenant-60").duration().sample_count(), 1);
  EXPECT_EQ(Stats("tenant-59").duration().sample_count(), 1);
  EXPECT_EQ(registry_->GetServiceStats("tenant-30").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RunRegistryRestartTest, RetiredRunsAreNotRestored) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  ASSERT_TRUE(Prewarm(Chain("run-2")).ok());
  ASSERT_TRUE(registry_->CancelRun("run-1").ok());
  ASSERT_TRUE(store_->Flush().ok());
  Restart();
  ASSERT_TRUE(registry_->Restore().ok());
  EXPECT_EQ(registry_->active_runs(), 1);
  EXPECT_TRUE(registry_->GetPlan("run-2").ok());
  EXPECT_EQ(registry_->GetPlan("run-1").status().code(), absl::StatusCode::kNotFound);
}

// Issue 11, defect 3: a run in flight across a restart behaves as if nothing happened. The same
// script (two runs sharing svc-a: warm-ups, a claimed container, a refresh, every task event) runs
// once without and then with a restart after each step; the plans after every step (times
// relative to the script's start), the warm-ups sent and the outcomes counted are the same.
class RunRegistryLazyRestartTest : public RunRegistryRestartTest {
 protected:
  RunRegistryLazyRestartTest() { lazy_planning_ = true; }
};

TEST_F(RunRegistryLazyRestartTest, ARestoredRunDecidesItsDeferredTasksOnTime) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  RunUntil(t0_ + absl::Seconds(5));
  Restart();
  // Down while b's decision (9 s) was due.
  clock_.AdvanceTo(t0_ + absl::Seconds(15));
  ASSERT_TRUE(registry_->Restore().ok());
  EXPECT_LE(timers_->NextDeadline(), clock_.Now());  // decided at once
  timers_->RunDue();
  EXPECT_EQ(Task("run-1", "b").decision(), v1::WARMUP_DECISION_WARM);
  EXPECT_EQ(T(Task("run-1", "b").warmup_time()), t0_ + absl::Seconds(69));
  EXPECT_EQ(Task("run-1", "c").decision(), v1::WARMUP_DECISION_DEFERRED);
  RunUntil(t0_ + absl::Seconds(20));
  EXPECT_EQ(T(Task("run-1", "c").warmup_time()), t0_ + absl::Seconds(80));
  RunUntil(t0_ + absl::Seconds(58));
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "a", v1::WARMUP_STATE_READY));
  RunUntil(t0_ + absl::Seconds(69));
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "b", v1::WARMUP_STATE_READY));
  RunUntil(t0_ + absl::Seconds(80));
  ASSERT_TRUE(AnswerAndExpectWarmup("run-1", "c", v1::WARMUP_STATE_READY));
  EXPECT_EQ(TotalRequests(), 3);
}

TEST_F(RunRegistryLazyRestartTest, ADeferredDecisionIsReplayedAsOfWhenItWasMade) {
  ASSERT_TRUE(Prewarm(Chain("run-1")).ok());
  // b's decision was due at 9 s; the timer runs late, at 75 s (a stalled process), when b's
  // warm-up time (69 s) has passed: what it decides depends on when it ran.
  RunUntil(t0_ + absl::Seconds(75));
  const v1::TaskPlan before = Task("run-1", "b");
  ASSERT_NE(before.decision(), v1::WARMUP_DECISION_DEFERRED);
  ASSERT_TRUE(store_->Flush().ok());
  Restart();
  clock_.AdvanceTo(t0_ + absl::Seconds(80));
  ASSERT_TRUE(registry_->Restore().ok());
  const v1::TaskPlan after = Task("run-1", "b");
  EXPECT_EQ(after.decision(), before.decision());
  EXPECT_EQ(T(after.warmup_time()), T(before.warmup_time()));
  EXPECT_EQ(T(after.expected_start_time()), T(before.expected_start_time()));
  EXPECT_EQ(after.reason(), before.reason());
}

class RunRegistryEquivalenceTest : public RunRegistryRestartTest {
 protected:
  struct Trace {
    std::vector<std::string> plans;        // after each step
    std::vector<std::string> warmups;      // "step: url @offset"
    std::map<std::string, double> starts;  // prewarm_task_starts_total by outcome, this script
  };

  static void Shift(google::protobuf::Timestamp* t, absl::Time base) {
    if (t->seconds() == 0 && t->nanos() == 0) return;
    *t = ToProtoTimestamp(absl::UnixEpoch() + (T(*t) - base));
  }
  static std::string Relative(v1::RunPlan plan, absl::Time base) {
    Shift(plan.mutable_start_time(), base);
    Shift(plan.mutable_plan_time(), base);
    for (v1::TaskPlan& t : *plan.mutable_tasks()) {
      for (auto* ts :
           {t.mutable_expected_start_time(), t.mutable_start_time_p10(), t.mutable_start_time_p90(),
            t.mutable_warmup_time(), t.mutable_actual_start_time()}) {
        Shift(ts, base);
      }
    }
    // Reasons name times of day ("warm until 10:18:36.000", "decided at ..."): as offsets too.
    const double base_tod = absl::ToDoubleSeconds(
        base - absl::FromUnixSeconds(absl::ToUnixSeconds(base) / 86400 * 86400));
    static const std::regex kTimeOfDay(R"((\d\d):(\d\d):(\d\d(\.\d+)?))");
    for (v1::TaskPlan& t : *plan.mutable_tasks()) {
      std::string reason;
      std::string::const_iterator from = t.reason().begin();
      for (std::sregex_iterator it(t.reason().begin(), t.reason().end(), kTimeOfDay), end;
           it != end; ++it) {
        const std::smatch& m = *it;
        const double tod =
            std::stod(m[1].str()) * 3600 + std::stod(m[2].str()) * 60 + std::stod(m[3].str());
        reason.append(from, m[0].first);
        absl::StrAppend(&reason, "+", std::fmod(tod - base_tod + 86400, 86400), "s");
        from = m[0].second;
      }
      reason.append(from, t.reason().cend());
      t.set_reason(reason);
    }
    return plan.DebugString();
  }
  // prewarm_task_starts_total{outcome} over the three services.
  double Starts(const char* outcome) {
    double sum = 0;
    for (const char* service : {"svc-a", "svc-b", "svc-c"}) {
      sum += Metric("prewarm_task_starts_total", {{"service", service}, {"outcome", outcome}})
                 .value_or(0);
    }
    return sum;
  }

  void BootFresh() {
    Halt();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    Reboot();
    for (const char* name : {"svc-a", "svc-b", "svc-c"}) RegisterManaged(name);
  }
  // A new process over the same file, with a FakeHttpWarmer (nothing in flight at the restarts).
  void Reboot() {
    Halt();
    absl::StatusOr<std::unique_ptr<HistoryStore>> store =
        HistoryStore::OpenSqlite({.path = dir_ + "/prewarm.db", .max_batch_delay = {}});
    ASSERT_TRUE(store.ok()) << store.status();
    auto warmer = std::make_unique<FakeHttpWarmer>();
    warmer_fake_ = warmer.get();
    Boot(*std::move(store), std::move(warmer));
    ASSERT_TRUE(registry_->Restore().ok());
  }

  // Runs the script; `restart_after` lists the steps after which the server restarts.
  Trace Script(const std::set<int>& restart_after) {
    BootFresh();
    clock_.AdvanceTo(clock_.Now() + absl::Hours(1));
    const absl::Time base = clock_.Now();
    std::map<std::string, double> starts_before;
    for (const char* o : {"hit", "miss", "late"}) {
      starts_before[o] = Starts(o);
    }
    Trace trace;
    auto at = [&](int s) { clock_.AdvanceTo(base + absl::Seconds(s)); };
    auto run_until = [&](int s) {
      at(s);
      timers_->RunDue();
    };
    auto answer = [&](absl::Duration latency) {
      for (const WarmupRequest& r : warmer_fake_->pending()) {
        trace.warmups.push_back(absl::StrCat(trace.plans.size(), ": ", r.url, " @",
                                             absl::FormatDuration(clock_.Now() - base)));
      }
      warmer_fake_->CompleteAll(FakeHttpWarmer::Success(latency));
    };
    auto event = [&](int s, const char* run, const char* task, v1::TaskEventType type) {
      at(s);
      absl::StatusOr<v1::ReportTimingResponse> r = Report(run, task, type);
      EXPECT_TRUE(r.ok()) << run << " " << task << ": " << r.status();
    };
    v1::PrewarmRequest second;
    second.set_run_id("run-2");
    second.set_workflow_id("wf-2");
    second.add_tasks()->set_task_id("x");
    second.mutable_tasks(0)->set_service("svc-a");
    *second.mutable_start_time() = ToProtoTimestamp(base + absl::Seconds(100));
    const std::vector<std::function<void()>> steps = {
        [&] {
          EXPECT_TRUE(Prewarm(Chain("run-1")).ok());
          EXPECT_TRUE(Prewarm(second).ok());
        },
        [&] {
          run_until(58);
          answer(absl::Seconds(2));
        },  // a's warm-up, cold
        [&] { event(60, "run-1", "a", v1::TASK_EVENT_TYPE_STARTED); },
        [&] {
          run_until(69);
          answer(absl::Seconds(2));
        },  // b's warm-up
        [&] { event(70, "run-1", "a", v1::TASK_EVENT_TYPE_FINISHED); },
        [&] {
          run_until(99);
          answer(absl::Seconds(2));
        },  // x claims a's container
        [&] { event(100, "run-2", "x", v1::TASK_EVENT_TYPE_STARTED); },
        [&] { event(110, "run-2", "x", v1::TASK_EVENT_TYPE_FINISHED); },
        [&] {
          run_until(124);
          answer(absl::Milliseconds(5));
        },  // b's refresh
        [&] { event(150, "run-1", "b", v1::TASK_EVENT_TYPE_STARTED); },
        [&] {
          run_until(175);
          answer(absl::Seconds(2));
        },  // c's warm-up
        [&] { event(176, "run-1", "b", v1::TASK_EVENT_TYPE_FINISHED); },
        [&] { event(177, "run-1", "c", v1::TASK_EVENT_TYPE_STARTED); },
        [&] { event(187, "run-1", "c", v1::TASK_EVENT_TYPE_FINISHED); },
    };
    for (int i = 0; i < static_cast<int>(steps.size()); ++i) {
      steps[i]();
      std::string plans;
      for (const char* run : {"run-1", "run-2"}) {
        // Final plans of ended runs are kept in memory only (max_retired_runs): not compared.
        absl::StatusOr<v1::RunPlan> plan = registry_->GetPlan(run);
        const bool ended =
            !plan.ok() ||
            std::all_of(plan->tasks().begin(), plan->tasks().end(), [](const v1::TaskPlan& t) {
              return t.task_state() == v1::TASK_STATE_SUCCEEDED ||
                     t.task_state() == v1::TASK_STATE_FAILED ||
                     t.task_state() == v1::TASK_STATE_SKIPPED;
            });
        absl::StrAppend(&plans, run, ": ", ended ? "ended\n" : Relative(*plan, base));
      }
      trace.plans.push_back(std::move(plans));
      if (restart_after.contains(i)) {
        EXPECT_TRUE(store_->Flush().ok());
        Reboot();
        timers_->RunDue();  // What a restarted server does at once (nothing, if all is well).
        answer(absl::Seconds(2));
      }
    }
    for (const char* o : {"hit", "miss", "late"}) {
      trace.starts[o] = Starts(o) - starts_before[o];
    }
    return trace;
  }

  // The script with restarts after each step (and after several) gives `straight`'s trace.
  void ExpectRestartsChangeNothing(const Trace& straight) {
    for (const std::set<int>& restarts : std::vector<std::set<int>>{{0},
                                                                    {1},
                                                                    {2},
                                                                    {3},
                                                                    {4},
                                                                    {5},
                                                                    {6},
                                                                    {7},
                                                                    {8},
                                                                    {9},
                                                                    {10},
                                                                    {11},
                                                                    {12},
                                                                    {1, 3, 5, 8, 10}}) {
      SCOPED_TRACE(absl::StrCat("restarts after steps ", absl::StrJoin(restarts, ",")));
      const Trace restarted = Script(restarts);
      ASSERT_EQ(restarted.plans.size(), straight.plans.size());
      for (size_t i = 0; i < straight.plans.size(); ++i) {
        EXPECT_EQ(restarted.plans[i], straight.plans[i]) << "after step " << i;
      }
      EXPECT_EQ(restarted.warmups, straight.warmups);
      EXPECT_EQ(restarted.starts, straight.starts);
    }
  }

  FakeHttpWarmer* warmer_fake_ = nullptr;
};

TEST_F(RunRegistryEquivalenceTest, ARunAcrossRestartsBehavesAsIfNothingHappened) {
  const Trace straight = Script({});
  ASSERT_EQ(straight.plans.size(), 14u);
  // a, b, c (early: b starts late), b's refresh, c's refresh; x claims the container a left.
  EXPECT_EQ(straight.warmups.size(), 5u) << absl::StrJoin(straight.warmups, "\n");
  EXPECT_EQ(straight.starts.at("hit"), 4) << "a, x (claimed), b (refreshed) and c found warm";
  EXPECT_EQ(straight.starts.at("miss") + straight.starts.at("late"), 0);
  ExpectRestartsChangeNothing(straight);
}

// The same with lazy planning (the server's default): b and c are deferred at first and decided
// by the run's timer or by a's events, which a restart must replay as they happened.
TEST_F(RunRegistryEquivalenceTest, ALazilyPlannedRunAcrossRestartsBehavesAsIfNothingHappened) {
  const Trace eager = Script({});
  options_.planner.lazy_planning = true;
  const Trace straight = Script({});
  ASSERT_EQ(straight.plans.size(), 14u);
  EXPECT_THAT(straight.plans[0], HasSubstr("WARMUP_DECISION_DEFERRED"));
  // Once decided, lazy plans are eager plans: the same warm-ups at the same times.
  EXPECT_EQ(straight.warmups, eager.warmups);
  EXPECT_EQ(straight.starts, eager.starts);
  ExpectRestartsChangeNothing(straight);
}

}  // namespace
}  // namespace prewarm
