#include "server/config.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/proto_time.h"

namespace prewarm {
namespace {

using ::testing::HasSubstr;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "config_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  // Parses `json` as a config file and applies it over defaults.
  absl::Status Apply(const std::string& json) {
    absl::StatusOr<config::v1::ServerConfig> config = ReadConfigFile(Write("c.json", json));
    if (!config.ok()) return config.status();
    return ApplyConfig(*config, options_);
  }

  std::string dir_;
  ServerOptions options_;
};

TEST_F(ConfigTest, DefaultsStartWithNoArguments) {
  EXPECT_EQ(options_.grpc_address, "127.0.0.1:50051");
  EXPECT_EQ(options_.metrics_address, "127.0.0.1:9464");
  EXPECT_EQ(options_.store_path, "./prewarm.db");
  EXPECT_FALSE(options_.store_accept_empty);
  EXPECT_EQ(options_.registry.history.max_keys, 100'000);
  EXPECT_TRUE(options_.bearer_token.empty());
  EXPECT_TRUE(options_.services.empty());
}

TEST_F(ConfigTest, AFullFileIsApplied) {
  const std::string token = Write("token", "  t0ken\n");
  const absl::Status status = Apply(R"({
    "grpc_address": "0.0.0.0:6000",
    "metricsAddress": "127.0.0.1:6001",
    "store_path": "/var/lib/prewarm/prewarm.db",
    "store_sync": "FULL",
    "store_accept_empty": true,
    "log_level": "warning",
    "allowlist": ["loopback", "10.0.0.0/8"],
    "services": [
      {"name": "svc-a", "warmup_url": "http://127.0.0.1:8080/warmup", "keep_alive": "90s"},
      {"name": "lambda", "mode": "WARMUP_MODE_DELEGATED"}
    ],
    "limits": {"max_active_runs": 7, "max_tasks_per_dag": 50, "max_edges_per_dag": 60,
               "max_services": 5, "max_message_bytes": 65536, "max_history_keys": 5000,
               "max_unregistered_service_counters": 50, "max_events_per_run": 40},
    "planning": {"delay_cost_ratio": 4.5, "sample_count": 256, "window_size": 64,
                 "max_warmup_refreshes": 3, "ignore_trends": true, "default_keep_alive": "75s", "cold_start_prior": "3s",
                 "duration_prior": "1.5s", "duration_hint_spread": 0.5},
    "bearer_token_file": ")" + token +
                                    R"("
  })");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(options_.grpc_address, "0.0.0.0:6000");
  EXPECT_EQ(options_.metrics_address, "127.0.0.1:6001");
  EXPECT_EQ(options_.store_path, "/var/lib/prewarm/prewarm.db");
  EXPECT_TRUE(options_.store_sync_full);
  EXPECT_TRUE(options_.store_accept_empty);
  EXPECT_EQ(options_.registry.history.max_keys, 5000);
  EXPECT_EQ(options_.registry.max_unregistered_service_counters, 50);
  EXPECT_EQ(options_.registry.max_events_per_run, 40);
  EXPECT_EQ(options_.log_level, LogLevel::kWarning);
  EXPECT_EQ(options_.allowlist, (std::vector<std::string>{"loopback", "10.0.0.0/8"}));
  ASSERT_EQ(options_.services.size(), 2u);
  EXPECT_EQ(options_.services[0].name(), "svc-a");
  EXPECT_EQ(FromProto(options_.services[0].keep_alive(), "").value(), absl::Seconds(90));
  EXPECT_EQ(options_.services[1].mode(), v1::WARMUP_MODE_DELEGATED);
  EXPECT_EQ(options_.registry.max_active_runs, 7);
  EXPECT_EQ(options_.registry.dag.max_tasks, 50);
  EXPECT_EQ(options_.registry.dag.max_edges, 60);
  EXPECT_EQ(options_.service_defaults.max_services, 5);
  EXPECT_EQ(options_.max_message_bytes, 65536);
  EXPECT_DOUBLE_EQ(options_.registry.planner.delay_cost_ratio, 4.5);
  EXPECT_EQ(options_.registry.planner.sample_count, 256);
  EXPECT_EQ(options_.registry.history.window_size, 64);
  EXPECT_EQ(options_.registry.max_warmup_refreshes, 3);
  EXPECT_FALSE(options_.registry.history.follow_trends);
  EXPECT_EQ(options_.service_defaults.keep_alive, absl::Seconds(75));
  EXPECT_EQ(options_.registry.history.cold_start_prior, absl::Seconds(3));
  EXPECT_EQ(options_.registry.history.duration_prior, absl::Milliseconds(1500));
  EXPECT_DOUBLE_EQ(options_.registry.history.duration_hint_spread, 0.5);
  EXPECT_EQ(options_.bearer_token, "t0ken");
}

TEST_F(ConfigTest, AnEmptyFileKeepsTheDefaults) {
  ASSERT_TRUE(Apply("{}").ok());
  const ServerOptions defaults;
  EXPECT_EQ(options_.grpc_address, defaults.grpc_address);
  EXPECT_EQ(options_.allowlist, defaults.allowlist);
  EXPECT_EQ(options_.registry.max_active_runs, defaults.registry.max_active_runs);
  EXPECT_EQ(options_.max_message_bytes, defaults.max_message_bytes);
  EXPECT_EQ(options_.service_defaults.keep_alive, defaults.service_defaults.keep_alive);
  EXPECT_EQ(options_.registry.max_warmup_refreshes, 60);
  EXPECT_TRUE(options_.registry.history.follow_trends);
  EXPECT_DOUBLE_EQ(options_.registry.history.duration_hint_spread, 0.25);
  ASSERT_TRUE(Apply(R"({"planning": {"duration_hint_spread": 0}})").ok());  // 0: the default
  EXPECT_DOUBLE_EQ(options_.registry.history.duration_hint_spread, 0.25);
  ASSERT_TRUE(Apply(R"({"planning": {"duration_hint_spread": 3}})").ok());  // The largest.
  EXPECT_DOUBLE_EQ(options_.registry.history.duration_hint_spread, 3);
  ASSERT_TRUE(Apply(R"({"planning": {"max_warmup_refreshes": -1}})").ok());
  EXPECT_EQ(options_.registry.max_warmup_refreshes, 0);  // -1: never refresh
}

TEST_F(ConfigTest, AMissingFileIsNamed) {
  absl::StatusOr<config::v1::ServerConfig> config = ReadConfigFile(dir_ + "/nope.json");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(config.status().message(), HasSubstr("nope.json"));
}

TEST_F(ConfigTest, MalformedJsonIsRefusedNamingTheFile) {
  absl::StatusOr<config::v1::ServerConfig> config = ReadConfigFile(Write("bad.json", "{\"grpc"));
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("bad.json"));
}

TEST_F(ConfigTest, UnknownFieldsAreRefusedNamingThem) {
  absl::Status status = Apply(R"({"grpc_adress": "127.0.0.1:1"})");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("grpc_adress"));
  EXPECT_THAT(status.message(), HasSubstr("c.json"));

  status = Apply(R"({"limits": {"max_runs": 3}})");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("max_runs"));

  status = Apply(R"({"services": [{"name": "a", "warmupUrl": "http://x/", "colour": "red"}]})");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("colour"));
}

TEST_F(ConfigTest, WronglyTypedValuesAreRefused) {
  EXPECT_EQ(Apply(R"({"limits": {"max_active_runs": "many"}})").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Apply(R"({"planning": {"default_keep_alive": "60"}})").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Apply(R"({"services": [{"name": "a", "mode": "SOMETIMES"}]})").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ConfigTest, BadValuesAreRefusedNamingTheField) {
  struct Case {
    const char* json;
    const char* names;
  };
  const Case cases[] = {
      {R"({"limits": {"max_active_runs": -1}})", "limits.max_active_runs"},
      {R"({"limits": {"max_tasks_per_dag": -1}})", "limits.max_tasks_per_dag"},
      {R"({"limits": {"max_edges_per_dag": -1}})", "limits.max_edges_per_dag"},
      {R"({"limits": {"max_services": -1}})", "limits.max_services"},
      {R"({"limits": {"max_message_bytes": -1}})", "limits.max_message_bytes"},
      {R"({"limits": {"max_history_keys": 99}})", "limits.max_history_keys must be at least 100"},
      {R"({"limits": {"max_history_keys": -1}})", "limits.max_history_keys"},
      {R"({"limits": {"max_unregistered_service_counters": -1}})",
       "limits.max_unregistered_service_counters"},
      {R"({"limits": {"max_events_per_run": -1}})", "limits.max_events_per_run"},
      {R"({"store_sync": "sometimes"})", "store_sync"},
      {R"({"log_level": "loud"})", "log_level"},
      {R"({"planning": {"delay_cost_ratio": -1}})", "planning.delay_cost_ratio"},
      {R"({"planning": {"delay_cost_ratio": 1e9}})", "planning.delay_cost_ratio"},
      {R"({"planning": {"sample_count": -5}})", "planning.sample_count"},
      {R"({"planning": {"sample_count": 1000000}})", "planning.sample_count"},
      {R"({"planning": {"window_size": -5}})", "planning.window_size"},
      {R"({"planning": {"max_warmup_refreshes": -2}})", "planning.max_warmup_refreshes"},
      {R"({"planning": {"max_warmup_refreshes": 100001}})", "planning.max_warmup_refreshes"},
      {R"({"planning": {"default_keep_alive": "-5s"}})", "planning.default_keep_alive"},
      {R"({"planning": {"default_keep_alive": "0s"}})", "planning.default_keep_alive"},
      {R"({"planning": {"cold_start_prior": "-1s"}})", "planning.cold_start_prior"},
      {R"({"planning": {"duration_prior": "0s"}})", "planning.duration_prior"},
      {R"({"planning": {"duration_hint_spread": -0.25}})", "planning.duration_hint_spread"},
      {R"({"planning": {"duration_hint_spread": 3.01}})", "planning.duration_hint_spread"},
      {R"({"planning": {"duration_hint_spread": "NaN"}})", "planning.duration_hint_spread"},
      {R"({"planning": {"duration_hint_spread": "Infinity"}})", "planning.duration_hint_spread"},
      {R"({"allowlist": ["loopback", "10.0.0.1/8"]})", "10.0.0.1/8"},
      {R"({"bearer_token_file": "/nonexistent/token"})", "/nonexistent/token"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json);
    options_ = ServerOptions();
    const absl::Status status = Apply(c.json);
    EXPECT_FALSE(status.ok());
    EXPECT_THAT(status.message(), HasSubstr(c.names));
  }
}

TEST_F(ConfigTest, LazyPlanningIsConfigured) {
  EXPECT_TRUE(options_.registry.planner.lazy_planning);
  EXPECT_EQ(options_.registry.planner.planning_horizon, absl::Seconds(60));
  ASSERT_TRUE(Apply(R"({"planning": {"planning_horizon": "90s"}})").ok());
  EXPECT_EQ(options_.registry.planner.planning_horizon, absl::Seconds(90));
  EXPECT_TRUE(options_.registry.planner.lazy_planning);
  ASSERT_TRUE(Apply(R"({"planning": {"eager_planning": true}})").ok());
  EXPECT_FALSE(options_.registry.planner.lazy_planning);
  for (const char* bad : {"0.5s", "-1s", "100000s"}) {
    const absl::Status status =
        Apply(absl::StrCat(R"({"planning": {"planning_horizon": ")", bad, R"("}})"));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(status.message(), HasSubstr("planning.planning_horizon")) << bad;
  }
}

TEST_F(ConfigTest, AnEmptyTokenFileIsRefused) {
  const std::string token = Write("token", " \n");
  const absl::Status status = Apply(R"({"bearer_token_file": ")" + token + R"("})");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("empty"));
}

}  // namespace
}  // namespace prewarm
