// The gate in front of every prewarm RPC, on a real gRPC server on a loopback port: the bearer
// token is checked before anything else, so that a caller without it learns nothing about the
// leadership. (The open gate forwarding to a leader's service is covered end to end by
// prewarm_service_test.cc.)
#include "server/gated_service.h"

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "prewarm/v1/prewarm.grpc.pb.h"
#include "server/metrics.h"

namespace prewarm {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kReason[] = "standby: replica \"replica-a\" leads at epoch 7";

class GatedServiceTest : public ::testing::Test {
 protected:
  // A closed gate (a standby) requiring `token` when non-empty.
  void Start(std::string token) {
    absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::Create({.listen_address = ""});
    ASSERT_TRUE(metrics.ok()) << metrics.status();
    metrics_ = *std::move(metrics);
    gate_ = std::make_unique<GatedPrewarmService>(*metrics_, std::move(token), kReason);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(gate_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    stub_ = v1::PrewarmService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
  }

  // A context with a deadline (a broken gate fails the call instead of hanging the test) and the
  // authorization header when given.
  static std::unique_ptr<grpc::ClientContext> Context(
      std::optional<std::string> authorization = std::nullopt) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    if (authorization.has_value()) context->AddMetadata("authorization", *authorization);
    return context;
  }

  // The status of a unary call, a stream and a call on the hot path, all with `authorization`.
  std::vector<grpc::Status> CallEach(std::optional<std::string> authorization) {
    std::vector<grpc::Status> statuses;
    v1::ListServicesResponse list;
    statuses.push_back(stub_->ListServices(Context(authorization).get(), {}, &list));
    v1::ReportTimingRequest report;
    report.set_run_id("run-1");
    v1::ReportTimingResponse reported;
    statuses.push_back(stub_->ReportTiming(Context(authorization).get(), report, &reported));
    std::unique_ptr<grpc::ClientContext> context = Context(authorization);
    auto reader = stub_->WatchWarmups(context.get(), {});
    v1::WatchWarmupsResponse instruction;
    EXPECT_FALSE(reader->Read(&instruction));
    statuses.push_back(reader->Finish());
    return statuses;
  }

  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<GatedPrewarmService> gate_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::PrewarmService::Stub> stub_;
};

TEST_F(GatedServiceTest, AStandbyRefusesCallsWithoutTheTokenBeforeNamingTheLeader) {
  Start("s3cret");
  for (const std::optional<std::string>& refused :
       {std::optional<std::string>(), std::optional<std::string>("Bearer wrong"),
        std::optional<std::string>("s3cret"), std::optional<std::string>("Bearer s3cre")}) {
    for (const grpc::Status& status : CallEach(refused)) {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
          << refused.value_or("(none)") << ": " << status.error_message();
      EXPECT_THAT(status.error_message(), Not(HasSubstr("replica")));
      EXPECT_THAT(status.error_message(), Not(HasSubstr("standby")));
    }
  }
  for (const grpc::Status& status : CallEach("Bearer s3cret")) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    EXPECT_EQ(status.error_message(), kReason);
  }
  const std::string scrape = metrics_->Scrape();
  EXPECT_THAT(scrape, HasSubstr("code=\"UNAUTHENTICATED\""));
  EXPECT_THAT(scrape, HasSubstr("code=\"UNAVAILABLE\""));
}

TEST_F(GatedServiceTest, AStandbyWithoutATokenNamesTheLeaderToEveryone) {
  Start("");
  for (const grpc::Status& status : CallEach(std::nullopt)) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    EXPECT_EQ(status.error_message(), kReason);
  }
}

}  // namespace
}  // namespace prewarm
