// The gRPC face of prewarmd, end to end in process: a real prewarm::Server on loopback ports
// with its SQLite store in a temporary directory, called through a real channel.
#include "server/prewarm_service.h"

#include <stdlib.h>

#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "prewarm/v1/prewarm.grpc.pb.h"
#include "server/config.h"
#include "server/proto_time.h"
#include "server/server.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_http_target.h"
#include "tests/fakes/fake_http_warmer.h"
#include "tests/fakes/forwarding_history_store.h"
#include "tests/fakes/in_memory_history_store.h"
#include "tests/server/postgres_test_server.h"

namespace prewarm {
namespace {

using ::prewarm::testing::FakeHttpTarget;
using ::prewarm::testing::FakeHttpWarmer;
using ::testing::HasSubstr;

// Generous: only a broken server comes near it, however loaded the machine.
constexpr absl::Duration kPatience = absl::Seconds(30);

std::string MakeTempDir() {
  std::string pattern = ::testing::TempDir() + "prewarm_service_test_XXXXXX";
  EXPECT_NE(mkdtemp(pattern.data()), nullptr);
  return pattern;
}

class PrewarmServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    target_ = FakeHttpTarget::Start();
    target_->SetRoute("/warmup", {});
    options_.grpc_address = "127.0.0.1:0";
    // No /metrics listener by default (fewer threads and ports); the lifecycle test serves one on
    // port 0. Scrape() works either way.
    options_.metrics_address = "";
    options_.registry.planner.lazy_planning = false;  // The tests read every decision at once.
    options_.store_path = dir_ + "/prewarm.db";
    options_.log_level = LogLevel::kWarning;
  }

  void TearDown() override {
    stub_.reset();
    if (server_ != nullptr) {
      EXPECT_TRUE(server_->Shutdown().ok());
    }
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StartServer() {
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options_, clock_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->grpc_port(), 0);
    if (!options_.metrics_address.empty()) {
      ASSERT_GT(server_->metrics_port(), 0);
    }
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->grpc_port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::PrewarmService::NewStub(channel_);
  }

  // A context with a deadline (a broken server fails the call instead of hanging the test) and
  // the bearer token when given.
  std::unique_ptr<grpc::ClientContext> Context(std::optional<std::string> token = std::nullopt) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoSeconds(kPatience));
    if (token.has_value()) context->AddMetadata("authorization", *token);
    return context;
  }

  v1::Service Managed(std::string name) {
    v1::Service s;
    s.set_name(std::move(name));
    s.set_warmup_url(target_->Url("/warmup"));
    return s;
  }

  grpc::Status Register(const v1::Service& service, v1::RegisterServiceResponse* response) {
    v1::RegisterServiceRequest request;
    *request.mutable_service() = service;
    return stub_->RegisterService(Context().get(), request, response);
  }

  // A chain a -> b on services svc-a and svc-b, starting `lead` after now.
  v1::PrewarmRequest Chain(const std::string& run_id, absl::Duration lead = absl::Seconds(60)) {
    v1::PrewarmRequest r;
    r.set_run_id(run_id);
    r.set_workflow_id("wf");
    v1::Task* a = r.add_tasks();
    a->set_task_id("a");
    a->set_service("svc-a");
    v1::Task* b = r.add_tasks();
    b->set_task_id("b");
    b->set_service("svc-b");
    b->add_upstream_task_ids("a");
    *r.mutable_start_time() = ToProtoTimestamp(clock_.Now() + lead);
    return r;
  }

  // PostgreSQL store: whether `server` leads within kPatience.
  static bool WaitLeading(Server& server) {
    for (absl::Time end = absl::Now() + kPatience; absl::Now() < end && !server.leading();) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    return server.leading();
  }

  // PostgreSQL store, while server_ ("replica-a") leads: starts a standby, "replica-b", on the
  // same store (standby_channel_ and standby_stub_ reach it), and calls ListServices on it with
  // `authorization` until the answer names the leader (before its first poll it has not seen who
  // leads), returning that answer in `*named`.
  std::unique_ptr<Server> StartStandby(std::optional<std::string> authorization,
                                       grpc::Status* named) {
    ServerOptions standby_options = options_;
    standby_options.replica_id = "replica-b";
    absl::StatusOr<std::unique_ptr<Server>> standby = Server::Start(standby_options, clock_);
    EXPECT_TRUE(standby.ok()) << standby.status();
    if (!standby.ok()) return nullptr;
    standby_channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*standby)->grpc_port()),
                                           grpc::InsecureChannelCredentials());
    standby_stub_ = v1::PrewarmService::NewStub(standby_channel_);
    v1::ListServicesResponse list;
    for (absl::Time end = absl::Now() + kPatience; absl::Now() < end;) {
      *named = standby_stub_->ListServices(Context(authorization).get(), {}, &list);
      if (absl::StrContains(named->error_message(), "replica-a")) break;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return *std::move(standby);
  }

  FakeClock clock_;
  std::string dir_;
  std::unique_ptr<FakeHttpTarget> target_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PrewarmService::Stub> stub_;
  std::shared_ptr<grpc::Channel> standby_channel_;
  std::unique_ptr<v1::PrewarmService::Stub> standby_stub_;
};

TEST_F(PrewarmServiceTest, RegisterAndListServices) {
  StartServer();
  v1::RegisterServiceResponse registered;
  grpc::Status status = Register(Managed("svc-b"), &registered);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(registered.replaced());
  EXPECT_EQ(registered.service().warmup_method(), "GET");
  EXPECT_TRUE(registered.service().has_keep_alive());
  ASSERT_TRUE(Register(Managed("svc-a"), &registered).ok());
  ASSERT_TRUE(Register(Managed("svc-a"), &registered).ok());
  EXPECT_TRUE(registered.replaced());

  v1::ListServicesResponse list;
  ASSERT_TRUE(stub_->ListServices(Context().get(), {}, &list).ok());
  ASSERT_EQ(list.services_size(), 2);
  EXPECT_EQ(list.services(0).name(), "svc-a");
  EXPECT_EQ(list.services(1).name(), "svc-b");
}

TEST_F(PrewarmServiceTest, RegisterServiceErrors) {
  StartServer();
  v1::RegisterServiceResponse response;
  grpc::Status status =
      stub_->RegisterService(Context().get(), v1::RegisterServiceRequest(), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("service"));

  v1::Service outside = Managed("svc-a");
  outside.set_warmup_url("http://metadata.google.internal/computeMetadata/v1/");
  status = Register(outside, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("warmup_url"));
  EXPECT_THAT(status.error_message(), HasSubstr("metadata.google.internal"));

  status = Register(Managed("bad name"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("service.name"));
}

TEST_F(PrewarmServiceTest, RunLifecycleRoundTrips) {
  options_.metrics_address = "127.0.0.1:0";
  StartServer();
  v1::RegisterServiceResponse registered;
  ASSERT_TRUE(Register(Managed("svc-a"), &registered).ok());
  ASSERT_TRUE(Register(Managed("svc-b"), &registered).ok());

  v1::PrewarmResponse prewarm;
  grpc::Status status = stub_->Prewarm(Context().get(), Chain("run-1"), &prewarm);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(prewarm.plan().tasks_size(), 2);
  EXPECT_EQ(prewarm.plan().run_id(), "run-1");
  EXPECT_EQ(prewarm.plan().tasks(1).decision(), v1::WARMUP_DECISION_WARM);
  EXPECT_EQ(prewarm.plan().tasks(1).warmup_state(), v1::WARMUP_STATE_PENDING);

  v1::ReportTimingRequest started;
  started.set_run_id("run-1");
  started.set_task_id("a");
  started.set_event(v1::TASK_EVENT_TYPE_STARTED);
  v1::ReportTimingResponse timing;
  status = stub_->ReportTiming(Context().get(), started, &timing);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(timing.replanned_tasks_size(), 2);
  EXPECT_EQ(timing.replan_count(), 1);
  EXPECT_FALSE(timing.run_finished());

  v1::GetPlanRequest get;
  get.set_run_id("run-1");
  v1::GetPlanResponse plan;
  ASSERT_TRUE(stub_->GetPlan(Context().get(), get, &plan).ok());
  EXPECT_EQ(plan.plan().tasks(0).task_state(), v1::TASK_STATE_RUNNING);
  EXPECT_EQ(plan.plan().replan_count(), 1);

  v1::CancelRunRequest cancel;
  cancel.set_run_id("run-1");
  v1::CancelRunResponse cancelled;
  ASSERT_TRUE(stub_->CancelRun(Context().get(), cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.cancelled_warmups(), 1);  // b's; a started, so its warm-up was dropped.
  ASSERT_TRUE(stub_->GetPlan(Context().get(), get, &plan).ok());
  EXPECT_EQ(plan.plan().tasks(1).warmup_state(), v1::WARMUP_STATE_CANCELLED);

  v1::GetServiceStatsRequest stats_request;
  stats_request.set_service("svc-a");
  v1::GetServiceStatsResponse stats;
  ASSERT_TRUE(stub_->GetServiceStats(Context().get(), stats_request, &stats).ok());
  EXPECT_EQ(stats.service(), "svc-a");

  const std::string metrics = server_->metrics().Scrape();
  EXPECT_THAT(metrics, HasSubstr("prewarm_rpcs_total{"));
  EXPECT_THAT(metrics, HasSubstr("method=\"Prewarm\""));
  EXPECT_THAT(metrics, HasSubstr("method=\"CancelRun\""));
}

TEST_F(PrewarmServiceTest, BadInputGetsTheRightCodeAndMessage) {
  StartServer();
  v1::PrewarmResponse prewarm;
  ASSERT_TRUE(stub_->Prewarm(Context().get(), Chain("run-1"), &prewarm).ok());

  grpc::Status status = stub_->Prewarm(Context().get(), Chain("run-1"), &prewarm);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(), HasSubstr("run-1"));

  v1::PrewarmRequest cycle = Chain("run-2");
  cycle.mutable_tasks(0)->add_upstream_task_ids("b");
  status = stub_->Prewarm(Context().get(), cycle, &prewarm);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("cycle"));

  v1::PrewarmRequest bad_ratio = Chain("run-2");
  bad_ratio.set_delay_cost_ratio(-2);
  status = stub_->Prewarm(Context().get(), bad_ratio, &prewarm);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("delay_cost_ratio"));

  v1::ReportTimingRequest report;
  report.set_run_id("run-1");
  report.set_task_id("nope");
  report.set_event(v1::TASK_EVENT_TYPE_STARTED);
  v1::ReportTimingResponse timing;
  status = stub_->ReportTiming(Context().get(), report, &timing);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("nope"));

  report.set_task_id("a");
  report.set_event(v1::TASK_EVENT_TYPE_UNSPECIFIED);
  status = stub_->ReportTiming(Context().get(), report, &timing);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("event"));

  report.set_event(v1::TASK_EVENT_TYPE_FINISHED);
  ASSERT_TRUE(stub_->ReportTiming(Context().get(), report, &timing).ok());
  // A repeat is acknowledged (delivery may be at least once); a contradiction is not.
  ASSERT_TRUE(stub_->ReportTiming(Context().get(), report, &timing).ok());
  report.set_event(v1::TASK_EVENT_TYPE_SKIPPED);
  status = stub_->ReportTiming(Context().get(), report, &timing);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("'a'"));

  v1::GetPlanRequest get;
  get.set_run_id("unknown-run");
  v1::GetPlanResponse plan;
  status = stub_->GetPlan(Context().get(), get, &plan);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("unknown-run"));

  v1::ReportWarmupRequest warmup;
  warmup.set_warmup_id("12345");
  v1::ReportWarmupResponse warmup_response;
  status = stub_->ReportWarmup(Context().get(), warmup, &warmup_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);

  v1::GetServiceStatsRequest stats_request;
  stats_request.set_service("never-seen");
  v1::GetServiceStatsResponse stats;
  status = stub_->GetServiceStats(Context().get(), stats_request, &stats);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);

  EXPECT_THAT(server_->metrics().Scrape(), HasSubstr("code=\"ALREADY_EXISTS\""));
}

TEST_F(PrewarmServiceTest, BearerTokenIsRequiredWhenConfigured) {
  options_.bearer_token = "s3cret";
  StartServer();
  v1::ListServicesResponse list;
  grpc::Status status = stub_->ListServices(Context().get(), {}, &list);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("authorization"));
  status = stub_->ListServices(Context("Bearer wrong").get(), {}, &list);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  for (const char* refused :
       {"s3cret", "Bearer s3cre", "Bearer s3cretX", "Bearer ", "Basic s3cret", "Bearer  s3cret"}) {
    status = stub_->ListServices(Context(refused).get(), {}, &list);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << refused;
  }
  status = stub_->ListServices(Context("Bearer s3cret").get(), {}, &list);
  EXPECT_TRUE(status.ok()) << status.error_message();
  status = stub_->ListServices(Context("bearer s3cret").get(), {}, &list);  // RFC 7235
  EXPECT_TRUE(status.ok()) << status.error_message();

  v1::PrewarmResponse prewarm;
  status = stub_->Prewarm(Context().get(), Chain("run-1"), &prewarm);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(server_->registry().active_runs(), 0);

  std::unique_ptr<grpc::ClientContext> context = Context();
  std::unique_ptr<grpc::ClientReader<v1::WatchWarmupsResponse>> reader =
      stub_->WatchWarmups(context.get(), {});
  v1::WatchWarmupsResponse instruction;
  EXPECT_FALSE(reader->Read(&instruction));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(PrewarmServiceTest, OversizedMessagesAreResourceExhausted) {
  options_.max_message_bytes = 4096;
  StartServer();
  v1::PrewarmRequest big = Chain("run-1");
  for (int i = 0; i < 100; ++i) {
    big.add_tasks()->set_task_id(absl::StrCat("task-", i, "-", std::string(60, 'x')));
  }
  ASSERT_GT(big.ByteSizeLong(), 4096u);
  v1::PrewarmResponse prewarm;
  grpc::Status status = stub_->Prewarm(Context().get(), big, &prewarm);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(server_->registry().active_runs(), 0);
  // A request under the limit still works on the same channel.
  EXPECT_TRUE(stub_->Prewarm(Context().get(), Chain("run-2"), &prewarm).ok());
}

// The standard grpc.health.v1.Health/Check, called generically: Debian ships no generated health
// stubs. HealthCheckRequest is {string service = 1}; HealthCheckResponse is {ServingStatus status
// = 1} with SERVING = 1, NOT_SERVING = 2, i.e. the bytes 08 01 or 08 02.
grpc::Status CheckHealth(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                         std::string* bytes) {
  grpc::GenericStub generic(channel);
  std::string request_bytes;
  if (!service.empty()) {
    request_bytes.push_back(0x0a);
    request_bytes.push_back(static_cast<char>(service.size()));
    request_bytes += service;
  }
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoSeconds(kPatience));
  std::promise<grpc::Status> done;
  generic.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                    &response, [&](grpc::Status s) { done.set_value(s); });
  grpc::Status status = done.get_future().get();
  std::vector<grpc::Slice> slices;
  if (status.ok() && !response.Dump(&slices).ok()) return grpc::Status(grpc::INTERNAL, "dump");
  bytes->clear();
  for (const grpc::Slice& s : slices) {
    bytes->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return status;
}

const std::string kServing("\x08\x01", 2);
const std::string kNotServing("\x08\x02", 2);

TEST_F(PrewarmServiceTest, HealthServiceAnswersServing) {
  StartServer();
  for (const std::string service : {"", "prewarm.v1.PrewarmService"}) {
    SCOPED_TRACE(service);
    std::string bytes;
    grpc::Status status = CheckHealth(channel_, service, &bytes);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(bytes, kServing);
  }
}

TEST_F(PrewarmServiceTest, WatchWarmupsStreamsDelegatedWarmupsAndReportWarmupAcceptsThem) {
  StartServer();
  v1::Service lambda;
  lambda.set_name("lambda");
  lambda.set_mode(v1::WARMUP_MODE_DELEGATED);
  v1::RegisterServiceResponse registered;
  ASSERT_TRUE(Register(lambda, &registered).ok());

  std::unique_ptr<grpc::ClientContext> watch_context = Context();
  v1::WatchWarmupsRequest watch;
  watch.add_services("lambda");
  std::unique_ptr<grpc::ClientReader<v1::WatchWarmupsResponse>> reader =
      stub_->WatchWarmups(watch_context.get(), watch);
  // The headers arrive once the subscription is registered, before any instruction: no polling.
  // (Without them this would wait out the call's deadline, and the Read below would fail.)
  reader->WaitForInitialMetadata();
  ASSERT_EQ(server_->delegated().subscribers(), 1u);

  // The task starts in 1 s and its cold start is 2 s: the warm-up is due at once.
  v1::PrewarmRequest request;
  request.set_run_id("run-1");
  request.set_workflow_id("wf");
  request.add_tasks()->set_task_id("x");
  request.mutable_tasks(0)->set_service("lambda");
  *request.mutable_start_time() = ToProtoTimestamp(clock_.Now() + absl::Seconds(1));
  v1::PrewarmResponse prewarm;
  grpc::Status status = stub_->Prewarm(Context().get(), request, &prewarm);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(prewarm.plan().tasks(0).decision(), v1::WARMUP_DECISION_WARM)
      << prewarm.plan().tasks(0).reason();

  v1::WatchWarmupsResponse instruction;
  ASSERT_TRUE(reader->Read(&instruction));
  EXPECT_EQ(instruction.service(), "lambda");
  EXPECT_EQ(instruction.run_id(), "run-1");
  EXPECT_EQ(instruction.task_id(), "x");
  EXPECT_FALSE(instruction.warmup_id().empty());

  v1::ReportWarmupRequest report;
  report.set_warmup_id(instruction.warmup_id());
  report.set_success(true);
  *report.mutable_latency() = ToProtoDuration(absl::Milliseconds(1500));
  v1::ReportWarmupResponse reported;
  status = stub_->ReportWarmup(Context().get(), report, &reported);
  ASSERT_TRUE(status.ok()) << status.error_message();
  status = stub_->ReportWarmup(Context().get(), report, &reported);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);

  v1::GetPlanRequest get;
  get.set_run_id("run-1");
  v1::GetPlanResponse plan;
  ASSERT_TRUE(stub_->GetPlan(Context().get(), get, &plan).ok());
  EXPECT_EQ(plan.plan().tasks(0).warmup_state(), v1::WARMUP_STATE_READY);

  v1::GetServiceStatsRequest stats_request;
  stats_request.set_service("lambda");
  v1::GetServiceStatsResponse stats;
  ASSERT_TRUE(stub_->GetServiceStats(Context().get(), stats_request, &stats).ok());
  EXPECT_EQ(stats.cold_start().sample_count(), 1);

  watch_context->TryCancel();
  EXPECT_FALSE(reader->Read(&instruction));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  const absl::Time gone = absl::Now() + kPatience;
  while (server_->delegated().subscribers() != 0 && absl::Now() < gone) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(server_->delegated().subscribers(), 0u);
}

TEST_F(PrewarmServiceTest, WatchWarmupsRejectsBadServiceNames) {
  StartServer();
  std::unique_ptr<grpc::ClientContext> context = Context();
  v1::WatchWarmupsRequest watch;
  watch.add_services("ok");
  watch.add_services("not ok");
  std::unique_ptr<grpc::ClientReader<v1::WatchWarmupsResponse>> reader =
      stub_->WatchWarmups(context.get(), watch);
  v1::WatchWarmupsResponse instruction;
  EXPECT_FALSE(reader->Read(&instruction));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("services[1]"));
}

TEST_F(PrewarmServiceTest, ConfiguredServicesAreRegisteredAtStart) {
  options_.services.push_back(Managed("svc-a"));
  StartServer();
  v1::ListServicesResponse list;
  ASSERT_TRUE(stub_->ListServices(Context().get(), {}, &list).ok());
  ASSERT_EQ(list.services_size(), 1);
  EXPECT_EQ(list.services(0).name(), "svc-a");
}

TEST_F(PrewarmServiceTest, StartFailsNamingARefusedConfiguredService) {
  v1::Service outside = Managed("svc-a");
  outside.set_warmup_url("http://example.com/warmup");
  options_.services.push_back(outside);
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options_, clock_);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(), HasSubstr("svc-a"));
}

TEST_F(PrewarmServiceTest, StartFailsNamingABadAddress) {
  options_.grpc_address = "256.1.1.1:99999";
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options_, clock_);
  EXPECT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("256.1.1.1:99999"));
}

TEST_F(PrewarmServiceTest, ARestartedServerResumesItsRuns) {
  StartServer();
  v1::RegisterServiceResponse registered;
  ASSERT_TRUE(Register(Managed("svc-a"), &registered).ok());
  v1::PrewarmResponse prewarm;
  ASSERT_TRUE(stub_->Prewarm(Context().get(), Chain("run-1"), &prewarm).ok());
  stub_.reset();
  ASSERT_TRUE(server_->Shutdown().ok());
  server_.reset();

  StartServer();
  v1::GetPlanRequest get;
  get.set_run_id("run-1");
  v1::GetPlanResponse plan;
  grpc::Status status = stub_->GetPlan(Context().get(), get, &plan);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(plan.plan().tasks(0).warmup_state(), v1::WARMUP_STATE_PENDING);
  v1::ListServicesResponse list;
  ASSERT_TRUE(stub_->ListServices(Context().get(), {}, &list).ok());
  EXPECT_EQ(list.services_size(), 1);
}

// Issue 14: replicas on one PostgreSQL store. One leads; a standby answers health NOT_SERVING and
// every RPC UNAVAILABLE naming the leader, and when the leader goes it takes over with the
// services and runs.
TEST_F(PrewarmServiceTest, APostgresStandbyAnswersUnavailableThenTakesOverTheRuns) {
  PREWARM_SHARED_POSTGRES_OR_SKIP(postgres);
  absl::StatusOr<std::string> uri = postgres->CreateDatabase("replicas");
  ASSERT_TRUE(uri.ok()) << uri.status();
  options_.store_path = *uri;
  options_.leader_poll = absl::Milliseconds(50);
  options_.replica_id = "replica-a";
  StartServer();
  ASSERT_TRUE(WaitLeading(*server_));
  v1::RegisterServiceResponse registered;
  ASSERT_TRUE(Register(Managed("svc-a"), &registered).ok());
  v1::PrewarmResponse prewarm;
  ASSERT_TRUE(stub_->Prewarm(Context().get(), Chain("run-1"), &prewarm).ok());

  grpc::Status status;
  std::unique_ptr<Server> standby = StartStandby(std::nullopt, &status);
  ASSERT_NE(standby, nullptr);
  const std::shared_ptr<grpc::Channel>& channel = standby_channel_;
  v1::PrewarmService::Stub* stub = standby_stub_.get();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("standby: replica \"replica-a\" leads"));
  // Readiness (the service) says not here; liveness (the server) says alive.
  std::string health;
  ASSERT_TRUE(CheckHealth(channel, "prewarm.v1.PrewarmService", &health).ok());
  EXPECT_EQ(health, kNotServing);
  ASSERT_TRUE(CheckHealth(channel, "", &health).ok());
  EXPECT_EQ(health, kServing);
  EXPECT_FALSE(standby->leading());

  // The leader goes (released at once on shutdown; kill -9 drops its connection likewise).
  stub_.reset();
  ASSERT_TRUE(server_->Shutdown().ok());
  server_.reset();
  ASSERT_TRUE(WaitLeading(*standby));
  ASSERT_TRUE(CheckHealth(channel, "prewarm.v1.PrewarmService", &health).ok());
  EXPECT_EQ(health, kServing);
  v1::GetPlanRequest get;
  get.set_run_id("run-1");
  v1::GetPlanResponse plan;
  status = stub->GetPlan(Context().get(), get, &plan);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(plan.plan().tasks(0).warmup_state(), v1::WARMUP_STATE_PENDING);
  v1::ListServicesResponse list;
  ASSERT_TRUE(stub->ListServices(Context().get(), {}, &list).ok());
  EXPECT_EQ(list.services_size(), 1);
  EXPECT_THAT(standby->metrics().Scrape(), HasSubstr("\nprewarm_leader_takeovers_total 1\n"));
  EXPECT_THAT(standby->metrics().Scrape(), HasSubstr("\nprewarm_leader 1\n"));
  EXPECT_TRUE(standby->Shutdown().ok());
}

// A standby checks the bearer token before anything else: a caller without it learns neither
// that the replica is a standby nor who leads. Health checks need no token and are unchanged.
TEST_F(PrewarmServiceTest, APostgresStandbyChecksTheBearerTokenBeforeNamingTheLeader) {
  PREWARM_SHARED_POSTGRES_OR_SKIP(postgres);
  absl::StatusOr<std::string> uri = postgres->CreateDatabase("token_replicas");
  ASSERT_TRUE(uri.ok()) << uri.status();
  options_.store_path = *uri;
  options_.leader_poll = absl::Milliseconds(50);
  options_.replica_id = "replica-a";
  options_.bearer_token = "s3cret";
  StartServer();
  ASSERT_TRUE(WaitLeading(*server_));

  // Once it has seen who leads, it names the leader to a caller with the token...
  grpc::Status status;
  std::unique_ptr<Server> standby = StartStandby("Bearer s3cret", &status);
  ASSERT_NE(standby, nullptr);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("standby: replica \"replica-a\" leads"));
  // ...and to no one else.
  for (const std::optional<std::string>& refused :
       {std::optional<std::string>(), std::optional<std::string>("Bearer wrong")}) {
    v1::ListServicesResponse list;
    status = standby_stub_->ListServices(Context(refused).get(), {}, &list);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
    EXPECT_THAT(status.error_message(), ::testing::Not(HasSubstr("replica")));
    v1::PrewarmResponse prewarm;
    status = standby_stub_->Prewarm(Context(refused).get(), Chain("run-1"), &prewarm);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
  }
  std::string health;
  ASSERT_TRUE(CheckHealth(standby_channel_, "prewarm.v1.PrewarmService", &health).ok());
  EXPECT_EQ(health, kNotServing);
  ASSERT_TRUE(CheckHealth(standby_channel_, "", &health).ok());
  EXPECT_EQ(health, kServing);
  EXPECT_TRUE(standby->Shutdown().ok());
}

// Shutdown's wait on PrewarmService itself (Server drains it, then destroys it once idle): a call
// counts as in flight until it is answered, here a RegisterService whose commit callback the
// store holds back, as a writer thread that has not reached it yet would.
TEST(PrewarmServiceDrainTest, WaitUntilIdleWaitsForAnUnansweredCallAndDrainRefusesNewOnes) {
  FakeClock clock;
  std::unique_ptr<Metrics> metrics = Metrics::Create({.listen_address = ""}).value();
  ServiceRegistry services(UrlAllowlist::Default(), ServiceDefaults{});
  TimerQueue timers(clock);
  DelegatedWarmups delegated;
  FakeHttpWarmer warmer;
  DeferringStore store(NewInMemoryHistoryStore());
  auto registry = std::make_unique<RunRegistry>(RunRegistryOptions{},
                                                RunRegistryDeps{.clock = &clock,
                                                                .services = &services,
                                                                .timers = &timers,
                                                                .warmer = &warmer,
                                                                .delegated = &delegated,
                                                                .store = &store,
                                                                .metrics = metrics.get()});
  auto service = std::make_unique<PrewarmService>(*registry, services, delegated, *metrics, clock);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = v1::PrewarmService::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  EXPECT_TRUE(service->WaitUntilIdle(absl::ZeroDuration()));

  store.Defer();
  v1::RegisterServiceRequest request;
  request.mutable_service()->set_name("svc");
  request.mutable_service()->set_warmup_url("http://127.0.0.1:9/");
  v1::RegisterServiceResponse response;
  grpc::ClientContext context;
  std::promise<grpc::Status> answered;
  std::future<grpc::Status> answer = answered.get_future();
  stub->async()->RegisterService(&context, &request, &response,
                                 [&answered](grpc::Status s) { answered.set_value(s); });
  // Should an assertion end the test early, the held call still ends before what it uses goes.
  absl::Cleanup release = [&store, &answer] {
    store.Release();
    if (answer.valid()) answer.wait_for(absl::ToChronoSeconds(kPatience));
  };
  const absl::Time give_up = absl::Now() + kPatience;
  while (store.held() == 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_EQ(store.held(), 1u) << "the call never reached the store";
  EXPECT_FALSE(service->WaitUntilIdle(absl::Milliseconds(50)))
      << "a call waiting for its commit is in flight";

  service->Drain();
  v1::ListServicesResponse listed;
  grpc::ClientContext list_context;
  const grpc::Status refused =
      stub->ListServices(&list_context, v1::ListServicesRequest(), &listed);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.error_message(), HasSubstr("shutting down"));
  EXPECT_FALSE(service->WaitUntilIdle(absl::Milliseconds(50)));

  store.Release();
  EXPECT_TRUE(service->WaitUntilIdle(kPatience));
  ASSERT_EQ(answer.wait_for(absl::ToChronoSeconds(kPatience)), std::future_status::ready);
  const grpc::Status status = answer.get();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.service().name(), "svc");

  // In Server's order: the service goes once idle, before the gRPC server has shut down.
  service.reset();
  server->Shutdown(std::chrono::system_clock::now());
  warmer.Shutdown();
  registry.reset();
}

}  // namespace
}  // namespace prewarm
