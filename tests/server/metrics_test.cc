#include "server/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/metric_family.h"
#include "prometheus/metric_type.h"
#include "server/process_collector.h"

namespace prewarm {
namespace {

using ::testing::Contains;
using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::Ge;
using ::testing::Gt;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

using Labels = std::map<std::string, std::string>;

// One sample line of the text exposition format.
struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
};

// Parses the sample lines of `text`; comments are skipped. Fails the test on a malformed line.
std::vector<Sample> ParseSamples(absl::string_view text) {
  std::vector<Sample> samples;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "#")) continue;
    Sample sample;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    sample.name = std::string(line.substr(0, i));
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find("=\"", i);
        EXPECT_NE(eq, absl::string_view::npos) << line;
        if (eq == absl::string_view::npos) return samples;
        std::string name(line.substr(i, eq - i));
        std::string value;
        for (i = eq + 2; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\' && i + 1 < line.size()) {
            ++i;
            value.push_back(line[i] == 'n' ? '\n' : line[i]);
          } else {
            value.push_back(line[i]);
          }
        }
        sample.labels[name] = value;
        ++i;                                         // closing quote
        if (i < line.size() && line[i] == ',') ++i;  // next label
      }
      ++i;  // '}'
    }
    const absl::string_view value = absl::StripAsciiWhitespace(line.substr(i));
    if (value == "+Inf") {
      sample.value = INFINITY;
    } else {
      EXPECT_TRUE(absl::SimpleAtod(value, &sample.value)) << line;
    }
    samples.push_back(std::move(sample));
  }
  return samples;
}

bool SameLabels(const Labels& got, const Labels& want) {
  if (got.size() != want.size()) return false;
  for (const auto& [name, value] : want) {
    auto it = got.find(name);
    if (it == got.end()) return false;
    if (name == "le") {
      // Bucket bounds are numbers, whatever their formatting.
      double a, b;
      if (value == "+Inf" || it->second == "+Inf") {
        if (value != it->second) return false;
      } else if (!absl::SimpleAtod(it->second, &a) || !absl::SimpleAtod(value, &b) ||
                 std::abs(a - b) > 1e-12) {
        return false;
      }
    } else if (it->second != value) {
      return false;
    }
  }
  return true;
}

// The value of the series `name{labels}` in `text`, if present.
std::optional<double> Value(absl::string_view text, absl::string_view name, Labels labels = {}) {
  for (const Sample& sample : ParseSamples(text)) {
    if (sample.name == name && SameLabels(sample.labels, labels)) return sample.value;
  }
  return std::nullopt;
}

// The distinct values of label `label` among the series of `name`.
std::set<std::string> LabelValues(absl::string_view text, absl::string_view name,
                                  const std::string& label) {
  std::set<std::string> values;
  for (const Sample& sample : ParseSamples(text)) {
    auto it = sample.labels.find(label);
    if (sample.name == name && it != sample.labels.end()) values.insert(it->second);
  }
  return values;
}

std::unique_ptr<Metrics> NewMetrics(MetricsOptions options = {.listen_address = ""}) {
  absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::Create(std::move(options));
  EXPECT_TRUE(metrics.ok()) << metrics.status();
  return metrics.ok() ? std::move(*metrics) : nullptr;
}

// GET `path` from 127.0.0.1:`port` over HTTP/1.0; the body of a 200 response.
absl::StatusOr<std::string> HttpGet(int port, absl::string_view path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket");
  timeval timeout{.tv_sec = 10, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("connect to port ", port));
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  if (::send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return absl::InternalError("send");
  }
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof(buffer), 0)) > 0;) response.append(buffer, n);
  ::close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos) return absl::DataLossError("no end of headers: " + response);
  if (!absl::StartsWith(response, "HTTP/1.1 200")) {
    return absl::FailedPreconditionError(response.substr(0, response.find("\r\n")));
  }
  return response.substr(body + 4);
}

struct ToolRun {
  int exit_code;
  std::string output;
};

// Runs `promtool check metrics` on `text`; nullopt when promtool is not installed.
std::optional<ToolRun> PromtoolCheckMetrics(const std::string& text) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) return std::nullopt;
  const std::string path = absl::StrCat(::testing::TempDir(), "metrics_test_scrape.txt");
  std::ofstream(path) << text;
  FILE* pipe = ::popen(absl::StrCat("promtool check metrics < '", path, "' 2>&1").c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  ToolRun run;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0;)
    run.output.append(buffer, n);
  const int status = ::pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::remove(path.c_str());
  return run;
}

// Calls every recording method, including with values that must land on "_other".
void ExerciseEverything(Metrics& metrics) {
  metrics.RpcHandled("Prewarm", "OK", absl::Milliseconds(3));
  metrics.RpcHandled("ReportTiming", "INVALID_ARGUMENT", absl::Microseconds(150));
  metrics.RpcHandled("GetPlan", "NO_SUCH_CODE", absl::Seconds(20));
  for (const char* result : {kWarmupFired, kWarmupReady, kWarmupFailed, kWarmupSkippedWarm,
                             kWarmupSkippedUnlikely, kWarmupCancelled, "bogus"}) {
    metrics.WarmupResult("svc-a", result);
  }
  metrics.WarmupLatency("svc-a", absl::Milliseconds(1500));
  metrics.ColdStartObserved("svc-a", absl::Milliseconds(1400));
  metrics.WarmupLateness(absl::Milliseconds(2));
  for (const char* outcome : {kTaskHit, kTaskMiss, kTaskLate, "bogus"}) {
    metrics.TaskStart("svc-b", outcome);
  }
  metrics.ColdStartHidden("svc-b", absl::Seconds(2));
  metrics.IdleWarmSeconds("svc-b", absl::Seconds(5));
  metrics.PredictionError(absl::Seconds(-3));
  metrics.SetActiveRuns(4);
  metrics.SetPendingWarmups(7);
  metrics.SetRegisteredServices(2);
  metrics.SetHistoryKeys(7);
  metrics.HistoryKeysEvicted(3);
  metrics.ServiceCountersEvicted(1);
  metrics.StoreWrite(true, absl::Milliseconds(4));
  metrics.StoreWrite(false, absl::Milliseconds(40));
  metrics.StoreRoundTrip(absl::Milliseconds(3));
  metrics.SetLeader(true);
  metrics.LeaderTakeover();
  metrics.ObservationRecorded("task_duration");
  metrics.RunStarted();
  metrics.RunFinished(kRunFinished);
  metrics.RunFinished("bogus");
  metrics.WarmupResult("", kWarmupFired);
  metrics.TaskStart("svc \"quoted\"\\ and\nnewline", kTaskHit);
}

TEST(MetricsTest, RpcsByMethodAndCode) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  metrics->RpcHandled("Prewarm", "OK", absl::Milliseconds(3));
  metrics->RpcHandled("Prewarm", "OK", absl::Milliseconds(4));
  metrics->RpcHandled("Prewarm", "INVALID_ARGUMENT", absl::Microseconds(200));
  const std::string text = metrics->Scrape();

  EXPECT_THAT(Value(text, "prewarm_rpcs_total", {{"method", "Prewarm"}, {"code", "OK"}}),
              Optional(2.0));
  EXPECT_THAT(
      Value(text, "prewarm_rpcs_total", {{"method", "Prewarm"}, {"code", "INVALID_ARGUMENT"}}),
      Optional(1.0));
  EXPECT_THAT(Value(text, "prewarm_rpc_duration_seconds_count", {{"method", "Prewarm"}}),
              Optional(3.0));
  EXPECT_THAT(Value(text, "prewarm_rpc_duration_seconds_sum", {{"method", "Prewarm"}}),
              Optional(DoubleNear(0.0072, 1e-6)));
  EXPECT_THAT(
      Value(text, "prewarm_rpc_duration_seconds_bucket", {{"method", "Prewarm"}, {"le", "0.0001"}}),
      Optional(0.0));
  EXPECT_THAT(Value(text, "prewarm_rpc_duration_seconds_bucket",
                    {{"method", "Prewarm"}, {"le", "0.00025"}}),
              Optional(1.0));
  EXPECT_THAT(
      Value(text, "prewarm_rpc_duration_seconds_bucket", {{"method", "Prewarm"}, {"le", "0.005"}}),
      Optional(3.0));
  EXPECT_THAT(
      Value(text, "prewarm_rpc_duration_seconds_bucket", {{"method", "Prewarm"}, {"le", "10"}}),
      Optional(3.0));
  EXPECT_THAT(
      Value(text, "prewarm_rpc_duration_seconds_bucket", {{"method", "Prewarm"}, {"le", "+Inf"}}),
      Optional(3.0));
}

TEST(MetricsTest, UnknownCodeIsOther) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  metrics->RpcHandled("Prewarm", "NOT_A_CODE", absl::Milliseconds(1));
  EXPECT_THAT(LabelValues(metrics->Scrape(), "prewarm_rpcs_total", "code"), ElementsAre("_other"));
}

TEST(MetricsTest, WarmupResultsCreateTheServicesOtherResultsAtZero) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  metrics->WarmupResult("svc", kWarmupFired);
  metrics->WarmupResult("svc", kWarmupFired);
  metrics->WarmupResult("svc", kWarmupReady);
  metrics->WarmupResult("svc", "unheard_of");
  const std::string text = metrics->Scrape();

  EXPECT_THAT(Value(text, "prewarm_warmups_total", {{"service", "svc"}, {"result", "fired"}}),
              Optional(2.0));
  EXPECT_THAT(Value(text, "prewarm_warmups_total", {{"service", "svc"}, {"result", "ready"}}),
              Optional(1.0));
  for (const char* result : {"failed", "skipped_warm", "skipped_unlikely", "cancelled", "refreshed",
                             "refresh_failed", "displaced"}) {
    EXPECT_THAT(Value(text, "prewarm_warmups_total", {{"service", "svc"}, {"result", result}}),
                Optional(0.0))
        << result;
  }
  EXPECT_THAT(Value(text, "prewarm_warmups_total", {{"service", "svc"}, {"result", "_other"}}),
              Optional(1.0));
  // A service's task-start and seconds counters exist from its first appearance too.
  EXPECT_THAT(Value(text, "prewarm_task_starts_total", {{"service", "svc"}, {"outcome", "hit"}}),
              Optional(0.0));
  EXPECT_THAT(Value(text, "prewarm_cold_start_hidden_seconds_total", {{"service", "svc"}}),
              Optional(0.0));
  EXPECT_THAT(Value(text, "prewarm_idle_warm_seconds_total", {{"service", "svc"}}), Optional(0.0));
}

TEST(MetricsTest, WarmupLatencyAndColdStartHistogramsPerService) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  metrics->WarmupLatency("svc", absl::Milliseconds(4));     // a warm answer
  metrics->WarmupLatency("svc", absl::Milliseconds(1800));  // a cold one
  metrics->ColdStartObserved("svc", absl::Milliseconds(1800));
  metrics->ColdStartObserved("other-svc", absl::Seconds(90));  // beyond the largest bucket
  const std::string text = metrics->Scrape();

  EXPECT_THAT(Value(text, "prewarm_warmup_latency_seconds_count", {{"service", "svc"}}),
              Optional(2.0));
  EXPECT_THAT(Value(text, "prewarm_warmup_latency_seconds_sum", {{"service", "svc"}}),
              Optional(DoubleNear(1.804, 1e-6)));
  EXPECT_THAT(
      Value(text, "prewarm_warmup_latency_seconds_bucket", {{"service", "svc"}, {"le", "0.005"}}),
      Optional(1.0));
  EXPECT_THAT(
      Value(text, "prewarm_warmup_latency_seconds_bucket", {{"service", "svc"}, {"le", "2.5"}}),
      Optional(2.0));
  EXPECT_THAT(Value(text, "prewarm_cold_start_seconds_bucket", {{"service", "svc"}, {"le", "1"}}),
              Optional(0.0));
  EXPECT_THAT(Value(text, "prewarm_cold_start_seconds_bucket", {{"service", "svc"}, {"le", "2"}}),
              Optional(1.0));
  EXPECT_THAT(
      Value(text, "prewarm_cold_start_seconds_bucket", {{"service", "svc"}, {"le", "0.01"}}),
      Optional(0.0));
  EXPECT_THAT(
      Value(text, "prewarm_cold_start_seconds_bucket", {{"service", "other-svc"}, {"le", "60"}}),
      Optional(0.0));
  EXPECT_THAT(
      Value(text, "prewarm_cold_start_seconds_bucket", {{"service", "other-svc"}, {"le", "+Inf"}}),
      Optional(1.0));
  EXPECT_THAT(Value(text, "prewarm_cold_start_seconds_sum", {{"service", "other-svc"}}),
              Optional(DoubleNear(90, 1e-6)));
}

TEST(MetricsTest, LatenessCountsEarlyAsZeroAndIgnoresInfinity) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  metrics->WarmupLateness(absl::Milliseconds(3));
  metrics->WarmupLateness(absl::Milliseconds(-50));
  metrics->WarmupLateness(absl::InfiniteDuration());
  const std::string text = metrics->Scrape();

  EXPECT_THAT(Value(text, "prewarm_warmup_lateness_seconds_count"), Optional(2.0));
  EXPECT_THAT(Value(text, "prewarm_warmup_lateness_seconds_sum"),
              Optional(DoubleNear(0.003, 1e-6)));
  EXPECT_THAT(Value(text, "prewarm_warmup_lateness_seconds_bucket", {{"le", "0.0005"}}),
              Optional(1.0));
  EXPECT_THAT(Value(text, "prewarm_warmup_lateness_seconds_bucket", {{"le", "0.005"}}),
              Optional(2.0));
}

TEST(MetricsTest, TaskStartsByOutcome) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  metrics->TaskStart("svc", kTaskHit);
  metrics->TaskStart("svc", kTaskHit);
  metrics->TaskStart("svc", kTaskMiss);
  metrics->TaskStart("svc", kTaskLate);
  const std::string text = metrics->Scrape();

  EXPECT_THAT(Value(text, "prewarm_task_starts_total", {{"service", "svc"}, {"outcome", "hit"}}),
              Optional(2.0));
  EXPECT_THAT(Value(text, "prewarm_task_starts_total", {{"service", "svc"}, {"outcome", "miss"}}),
              Optional(1.0));
  EXPECT_THAT(Value(text, "prewarm_task_starts_total", {{"service", "svc"}, {"outcome", "late"}}),
              Optional(1.0));
  // No series for a value nobody used.
  EXPECT_THAT(LabelValues(text, "prewarm_task_starts_total", "outcome"),
              UnorderedElementsAre("hit", "miss", "late"));
}

TEST(MetricsTest, HiddenAndIdleSecondsAccumulate) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  metrics->ColdStartHidden("svc", absl::Milliseconds(1500));
  metrics->ColdStartHidden("svc", absl::Milliseconds(500));
  metrics->ColdStartHidden("svc", absl::Seconds(-1));  // ignored: a counter never decreases
  metrics->IdleWarmSeconds("svc", absl::Seconds(30));
  metrics->IdleWarmSeconds("svc", absl::InfiniteDuration());
  const std::string text = metrics->Scrape();

  EXPECT_THAT(Value(text, "prewarm_cold_start_hidden_seconds_total", {{"service", "svc"}}),
              Optional(DoubleNear(2.0, 1e-9)));
  EXPECT_THAT(Value(text, "prewarm_idle_warm_seconds_total", {{"service", "svc"}}),
              Optional(DoubleNear(30.0, 1e-9)));
}

TEST(MetricsTest, PredictionErrorIsAbsolute) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  metrics->PredictionError(absl::Seconds(-2));
  metrics->PredictionError(absl::Seconds(3));
  metrics->PredictionError(absl::Milliseconds(5));
  metrics->PredictionError(absl::Seconds(1000));
  const std::string text = metrics->Scrape();

  EXPECT_THAT(Value(text, "prewarm_start_prediction_error_seconds_count"), Optional(4.0));
  EXPECT_THAT(Value(text, "prewarm_start_prediction_error_seconds_sum"),
              Optional(DoubleNear(1005.005, 1e-6)));
  EXPECT_THAT(Value(text, "prewarm_start_prediction_error_seconds_bucket", {{"le", "0.01"}}),
              Optional(1.0));
  EXPECT_THAT(Value(text, "prewarm_start_prediction_error_seconds_bucket", {{"le", "2.5"}}),
              Optional(2.0));
  EXPECT_THAT(Value(text, "prewarm_start_prediction_error_seconds_bucket", {{"le", "600"}}),
              Optional(3.0));
}

TEST(MetricsTest, Gauges) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  EXPECT_THAT(Value(metrics->Scrape(), "prewarm_active_runs"), Optional(0.0));
  metrics->SetActiveRuns(12);
  metrics->SetPendingWarmups(30);
  metrics->SetRegisteredServices(5);
  metrics->SetActiveRuns(11);
  metrics->SetHistoryKeys(100);
  metrics->HistoryKeysEvicted(4);
  metrics->HistoryKeysEvicted(2);
  metrics->ServiceCountersEvicted(3);
  const std::string text = metrics->Scrape();

  EXPECT_THAT(Value(text, "prewarm_active_runs"), Optional(11.0));
  EXPECT_THAT(Value(text, "prewarm_pending_warmups"), Optional(30.0));
  EXPECT_THAT(Value(text, "prewarm_registered_services"), Optional(5.0));
  EXPECT_THAT(Value(text, "prewarm_history_keys"), Optional(100.0));
  EXPECT_THAT(Value(text, "prewarm_history_keys_evicted_total"), Optional(6.0));
  EXPECT_THAT(Value(text, "prewarm_service_counters_evicted_total"), Optional(3.0));
}

TEST(MetricsTest, LeadershipAndStoreRoundTrips) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  std::string text = metrics->Scrape();
  EXPECT_THAT(Value(text, "prewarm_leader"), Optional(0.0));
  EXPECT_THAT(Value(text, "prewarm_leader_takeovers_total"), Optional(0.0));
  metrics->SetLeader(true);
  metrics->LeaderTakeover();
  metrics->SetLeader(false);
  metrics->SetLeader(true);
  metrics->LeaderTakeover();
  metrics->StoreRoundTrip(absl::Microseconds(400));
  metrics->StoreRoundTrip(absl::Milliseconds(20));
  text = metrics->Scrape();
  EXPECT_THAT(Value(text, "prewarm_leader"), Optional(1.0));
  EXPECT_THAT(Value(text, "prewarm_leader_takeovers_total"), Optional(2.0));
  EXPECT_THAT(Value(text, "prewarm_store_round_trip_seconds_count"), Optional(2.0));
  EXPECT_THAT(Value(text, "prewarm_store_round_trip_seconds_bucket", {{"le", "0.0005"}}),
              Optional(1.0));
}

TEST(MetricsTest, StoreWrites) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  EXPECT_THAT(Value(metrics->Scrape(), "prewarm_store_writes_total", {{"result", "error"}}),
              Optional(0.0));
  metrics->StoreWrite(true, absl::Milliseconds(2));
  metrics->StoreWrite(true, absl::Microseconds(300));
  metrics->StoreWrite(false, absl::Seconds(1));
  const std::string text = metrics->Scrape();

  EXPECT_THAT(Value(text, "prewarm_store_writes_total", {{"result", "ok"}}), Optional(2.0));
  EXPECT_THAT(Value(text, "prewarm_store_writes_total", {{"result", "error"}}), Optional(1.0));
  EXPECT_THAT(Value(text, "prewarm_store_commit_latency_seconds_count"), Optional(3.0));
  EXPECT_THAT(Value(text, "prewarm_store_commit_latency_seconds_bucket", {{"le", "0.0005"}}),
              Optional(1.0));
  EXPECT_THAT(Value(text, "prewarm_store_commit_latency_seconds_bucket", {{"le", "0.0025"}}),
              Optional(2.0));
}

TEST(MetricsTest, ObservationsByKind) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  metrics->ObservationRecorded("task_duration");
  metrics->ObservationRecorded("task_duration");
  metrics->ObservationRecorded("cold_start");
  const std::string text = metrics->Scrape();

  EXPECT_THAT(Value(text, "prewarm_observations_total", {{"kind", "task_duration"}}),
              Optional(2.0));
  EXPECT_THAT(Value(text, "prewarm_observations_total", {{"kind", "cold_start"}}), Optional(1.0));
}

TEST(MetricsTest, Runs) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  std::string text = metrics->Scrape();
  EXPECT_THAT(Value(text, "prewarm_runs_started_total"), Optional(0.0));
  EXPECT_THAT(LabelValues(text, "prewarm_runs_finished_total", "outcome"),
              UnorderedElementsAre("finished", "cancelled", "expired"));

  for (int i = 0; i < 3; ++i) metrics->RunStarted();
  metrics->RunFinished(kRunFinished);
  metrics->RunFinished(kRunCancelled);
  metrics->RunFinished(kRunExpired);
  metrics->RunFinished(kRunExpired);
  metrics->RunFinished("exploded");
  text = metrics->Scrape();

  EXPECT_THAT(Value(text, "prewarm_runs_started_total"), Optional(3.0));
  EXPECT_THAT(Value(text, "prewarm_runs_finished_total", {{"outcome", "finished"}}), Optional(1.0));
  EXPECT_THAT(Value(text, "prewarm_runs_finished_total", {{"outcome", "cancelled"}}),
              Optional(1.0));
  EXPECT_THAT(Value(text, "prewarm_runs_finished_total", {{"outcome", "expired"}}), Optional(2.0));
  EXPECT_THAT(Value(text, "prewarm_runs_finished_total", {{"outcome", "_other"}}), Optional(1.0));
}

TEST(MetricsTest, ServiceLabelsAreCapped) {
  std::unique_ptr<Metrics> metrics = NewMetrics({.listen_address = "", .max_service_labels = 2});
  metrics->WarmupResult("a", kWarmupFired);
  metrics->TaskStart("b", kTaskHit);
  metrics->WarmupResult("c", kWarmupFired);  // past the cap
  metrics->TaskStart("d", kTaskHit);         // past the cap
  metrics->WarmupResult("a", kWarmupFired);  // admitted before the cap: keeps its label
  metrics->ColdStartObserved("e", absl::Seconds(1));
  const std::string text = metrics->Scrape();

  EXPECT_THAT(LabelValues(text, "prewarm_warmups_total", "service"),
              UnorderedElementsAre("a", "b", "_other"));
  EXPECT_THAT(Value(text, "prewarm_warmups_total", {{"service", "a"}, {"result", "fired"}}),
              Optional(2.0));
  EXPECT_THAT(Value(text, "prewarm_warmups_total", {{"service", "_other"}, {"result", "fired"}}),
              Optional(1.0));
  EXPECT_THAT(Value(text, "prewarm_task_starts_total", {{"service", "_other"}, {"outcome", "hit"}}),
              Optional(1.0));
  EXPECT_THAT(LabelValues(text, "prewarm_cold_start_seconds_count", "service"),
              ElementsAre("_other"));
}

TEST(MetricsTest, EmptyServiceIsOther) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  metrics->WarmupResult("", kWarmupFired);
  EXPECT_THAT(LabelValues(metrics->Scrape(), "prewarm_warmups_total", "service"),
              ElementsAre("_other"));
}

TEST(MetricsTest, MethodAndKindLabelsAreCapped) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  for (int i = 0; i < 100; ++i) {
    metrics->RpcHandled(absl::StrCat("Method", i), "OK", absl::Milliseconds(1));
    metrics->ObservationRecorded(absl::StrCat("kind", i));
  }
  const std::string text = metrics->Scrape();

  std::set<std::string> methods = LabelValues(text, "prewarm_rpcs_total", "method");
  EXPECT_EQ(methods.size(), 65u);
  EXPECT_THAT(methods, Contains("_other"));
  EXPECT_THAT(Value(text, "prewarm_rpcs_total", {{"method", "_other"}, {"code", "OK"}}),
              Optional(36.0));
  std::set<std::string> kinds = LabelValues(text, "prewarm_observations_total", "kind");
  EXPECT_EQ(kinds.size(), 33u);
  EXPECT_THAT(Value(text, "prewarm_observations_total", {{"kind", "_other"}}), Optional(68.0));
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  const std::string service = "svc \"quoted\"\\ and\nnewline";
  metrics->TaskStart(service, kTaskHit);
  const std::string text = metrics->Scrape();
  EXPECT_THAT(text, HasSubstr(R"(service="svc \"quoted\"\\ and\nnewline")"));
  EXPECT_THAT(Value(text, "prewarm_task_starts_total", {{"service", service}, {"outcome", "hit"}}),
              Optional(1.0));
}

TEST(MetricsTest, BuildInfo) {
  std::unique_ptr<Metrics> metrics =
      NewMetrics({.listen_address = "", .version = "1.2.3", .git_commit = "abc1234"});
  EXPECT_THAT(Value(metrics->Scrape(), "prewarm_build_info",
                    {{"version", "1.2.3"}, {"git_commit", "abc1234"}}),
              Optional(1.0));
}

TEST(MetricsTest, EveryMetricHasHelpAndType) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  ExerciseEverything(*metrics);
  const std::string text = metrics->Scrape();
  const std::vector<std::pair<std::string, std::string>> families = {
      {"prewarm_rpcs_total", "counter"},
      {"prewarm_warmups_total", "counter"},
      {"prewarm_task_starts_total", "counter"},
      {"prewarm_cold_start_hidden_seconds_total", "counter"},
      {"prewarm_idle_warm_seconds_total", "counter"},
      {"prewarm_store_writes_total", "counter"},
      {"prewarm_observations_total", "counter"},
      {"prewarm_runs_started_total", "counter"},
      {"prewarm_runs_finished_total", "counter"},
      {"prewarm_active_runs", "gauge"},
      {"prewarm_pending_warmups", "gauge"},
      {"prewarm_registered_services", "gauge"},
      {"prewarm_history_keys", "gauge"},
      {"prewarm_history_keys_evicted_total", "counter"},
      {"prewarm_service_counters_evicted_total", "counter"},
      {"prewarm_build_info", "gauge"},
      {"prewarm_rpc_duration_seconds", "histogram"},
      {"prewarm_warmup_latency_seconds", "histogram"},
      {"prewarm_cold_start_seconds", "histogram"},
      {"prewarm_warmup_lateness_seconds", "histogram"},
      {"prewarm_start_prediction_error_seconds", "histogram"},
      {"prewarm_store_commit_latency_seconds", "histogram"},
      {"prewarm_store_round_trip_seconds", "histogram"},
      {"prewarm_leader", "gauge"},
      {"prewarm_leader_takeovers_total", "counter"},
      {"process_cpu_seconds_total", "counter"},
      {"process_resident_memory_bytes", "gauge"},
      {"process_virtual_memory_bytes", "gauge"},
      {"process_open_fds", "gauge"},
      {"process_max_fds", "gauge"},
      {"process_start_time_seconds", "gauge"},
  };
  std::set<std::string> typed;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&line, "# TYPE ")) typed.insert(std::string(line));
  }
  EXPECT_EQ(typed.size(), families.size()) << text;
  for (const auto& [name, type] : families) {
    EXPECT_THAT(typed, Contains(absl::StrCat(name, " ", type)));
    EXPECT_THAT(text, HasSubstr(absl::StrCat("# HELP ", name, " ")));
  }
  // No series carries a label outside the bounded set.
  const std::set<std::string> allowed = {"service", "result", "method",  "code",      "outcome",
                                         "kind",    "le",     "version", "git_commit"};
  for (const Sample& sample : ParseSamples(text)) {
    for (const auto& [label, value] : sample.labels) {
      EXPECT_THAT(allowed, Contains(label)) << sample.name;
    }
  }
}

TEST(MetricsTest, ProcessMetricsArePlausible) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  // Burn a little CPU so the counter has something to show.
  volatile double sink = 0;
  for (int i = 0; i < 20'000'000; ++i) sink = sink + std::sqrt(static_cast<double>(i));
  const std::string text = metrics->Scrape();
  const double now = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());

  EXPECT_THAT(Value(text, "process_cpu_seconds_total"), Optional(Gt(0.0)));
  std::optional<double> resident = Value(text, "process_resident_memory_bytes");
  std::optional<double> virtual_bytes = Value(text, "process_virtual_memory_bytes");
  ASSERT_TRUE(resident.has_value() && virtual_bytes.has_value()) << text;
  EXPECT_GT(*resident, 1 << 20);
  EXPECT_GE(*virtual_bytes, *resident);
  std::optional<double> open_fds = Value(text, "process_open_fds");
  EXPECT_THAT(open_fds, Optional(Ge(3.0)));  // stdin, stdout, stderr
  EXPECT_THAT(Value(text, "process_max_fds"), Optional(Ge(open_fds.value_or(3))));
  std::optional<double> start = Value(text, "process_start_time_seconds");
  ASSERT_TRUE(start.has_value());
  EXPECT_LE(*start, now + 1);  // Clock ticks round to 10 ms.
  EXPECT_GT(*start, now - 3600);
}

TEST(ProcessCollectorTest, ReadsAFakeProcTree) {
  const std::string root = absl::StrCat(::testing::TempDir(), "fake_proc");
  ASSERT_EQ(
      std::system(absl::StrCat("rm -rf '", root, "' && mkdir -p '", root, "/self/fd' && touch '",
                               root, "/self/fd/0' '", root, "/self/fd/1' '", root, "/self/fd/7'")
                      .c_str()),
      0);
  // The command name holds spaces and ')', which must not shift the fields.
  std::ofstream(root + "/self/stat")
      << "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 "
         "250 150 0 0 20 0 3 0 5000 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 "
         "17 1 0 0 0 0 0\n";
  std::ofstream(root + "/stat") << "cpu  1 2 3 4\nbtime 1700000000\nprocesses 10\n";
  std::ofstream(root + "/self/limits")
      << "Limit                     Soft Limit           Hard Limit           Units     \n"
         "Max cpu time              unlimited            unlimited            seconds   \n"
         "Max open files            4096                 524288               files     \n";

  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  std::map<std::string, std::pair<prometheus::MetricType, double>> got;
  for (const prometheus::MetricFamily& family : ProcessCollector(root).Collect()) {
    ASSERT_EQ(family.metric.size(), 1u) << family.name;
    EXPECT_FALSE(family.help.empty()) << family.name;
    const prometheus::ClientMetric& metric = family.metric[0];
    got[family.name] = {family.type, family.type == prometheus::MetricType::Counter
                                         ? metric.counter.value
                                         : metric.gauge.value};
  }
  using prometheus::MetricType;
  EXPECT_THAT(got, UnorderedElementsAre(
                       Pair("process_cpu_seconds_total",
                            Pair(MetricType::Counter, DoubleNear(400 / ticks, 1e-9))),
                       Pair("process_open_fds", Pair(MetricType::Gauge, 3.0)),
                       Pair("process_max_fds", Pair(MetricType::Gauge, 4096.0)),
                       Pair("process_virtual_memory_bytes", Pair(MetricType::Gauge, 104857600.0)),
                       Pair("process_resident_memory_bytes", Pair(MetricType::Gauge, 2560 * page)),
                       Pair("process_start_time_seconds",
                            Pair(MetricType::Gauge, DoubleNear(1700000000 + 5000 / ticks, 1e-6)))));
}

TEST(ProcessCollectorTest, LeavesOutWhatItCannotRead) {
  EXPECT_THAT(ProcessCollector(absl::StrCat(::testing::TempDir(), "no_such_proc")).Collect(),
              IsEmpty());
}

TEST(MetricsTest, ConcurrentUpdatesAreAllCounted) {
  std::unique_ptr<Metrics> metrics = NewMetrics({.listen_address = "", .max_service_labels = 5});
  constexpr int kThreads = 8;
  constexpr int kPerThread = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&metrics, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Ten services against a cap of five: admission races with lookups.
        const std::string service = absl::StrCat("svc", (t + i) % 10);
        metrics->WarmupResult(service, kWarmupFired);
        metrics->TaskStart(service, kTaskHit);
        metrics->RpcHandled("Prewarm", "OK", absl::Microseconds(100 + i));
        metrics->ColdStartHidden(service, absl::Milliseconds(1));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const std::string text = metrics->Scrape();

  double warmups = 0, starts = 0, hidden = 0;
  std::set<std::string> services;
  for (const Sample& sample : ParseSamples(text)) {
    if (sample.name == "prewarm_warmups_total") {
      warmups += sample.value;
      services.insert(sample.labels.at("service"));
    }
    if (sample.name == "prewarm_task_starts_total") starts += sample.value;
    if (sample.name == "prewarm_cold_start_hidden_seconds_total") hidden += sample.value;
  }
  EXPECT_EQ(warmups, kThreads * kPerThread);
  EXPECT_EQ(starts, kThreads * kPerThread);
  EXPECT_NEAR(hidden, kThreads * kPerThread * 0.001, 1e-6);
  EXPECT_EQ(services.size(), 6u);  // five admitted plus _other
  EXPECT_THAT(services, Contains("_other"));
  EXPECT_THAT(Value(text, "prewarm_rpcs_total", {{"method", "Prewarm"}, {"code", "OK"}}),
              Optional(Eq(kThreads * kPerThread)));
}

TEST(MetricsTest, ServesTheSameMetricsOverHttp) {
  absl::StatusOr<std::unique_ptr<Metrics>> created =
      Metrics::Create({.listen_address = "127.0.0.1:0"});
  ASSERT_TRUE(created.ok()) << created.status();
  Metrics& metrics = **created;
  ASSERT_GT(metrics.port(), 0);
  ExerciseEverything(metrics);

  absl::StatusOr<std::string> body = HttpGet(metrics.port(), "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  const std::string scrape = metrics.Scrape();

  // Everything but the process metrics, which move between the two reads, is identical. The
  // endpoint adds prometheus-cpp's own exposer_* metrics.
  auto stable_lines = [](absl::string_view text) {
    std::vector<std::string> lines;
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      absl::string_view name = line;
      absl::ConsumePrefix(&name, "# HELP ");
      absl::ConsumePrefix(&name, "# TYPE ");
      if (absl::StartsWith(name, "prewarm_")) lines.emplace_back(line);
    }
    return lines;
  };
  std::vector<std::string> served = stable_lines(*body);
  EXPECT_FALSE(served.empty());
  EXPECT_EQ(served, stable_lines(scrape));
  EXPECT_THAT(Value(*body, "process_open_fds"), Optional(Gt(0.0)));
  EXPECT_THAT(Value(*body, "process_start_time_seconds"),
              Value(scrape, "process_start_time_seconds"));
  EXPECT_THAT(Value(*body, "exposer_scrapes_total"), Optional(0.0));

  // The served page, exposer_* included, is as clean as Scrape().
  if (std::optional<ToolRun> run = PromtoolCheckMetrics(*body)) {
    EXPECT_EQ(run->exit_code, 0) << run->output;
    EXPECT_EQ(run->output, "") << "lint findings";
  }
}

TEST(MetricsTest, NoListenerWithoutAddress) {
  std::unique_ptr<Metrics> metrics = NewMetrics({.listen_address = ""});
  EXPECT_EQ(metrics->port(), 0);
  EXPECT_THAT(metrics->Scrape(), HasSubstr("prewarm_build_info"));
}

TEST(MetricsTest, PortInUseIsAnErrorNamingTheAddress) {
  std::unique_ptr<Metrics> first = NewMetrics({.listen_address = "127.0.0.1:0"});
  ASSERT_NE(first, nullptr);
  const std::string address = absl::StrCat("127.0.0.1:", first->port());
  absl::StatusOr<std::unique_ptr<Metrics>> second = Metrics::Create({.listen_address = address});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr(address));
}

TEST(MetricsTest, RejectsBadOptions) {
  for (const char* address : {"nonsense", "127.0.0.1:", ":9464", "127.0.0.1:99999",
                              "127.0.0.1:9464s", "127.0.0.1:9464,127.0.0.1:9465"}) {
    absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::Create({.listen_address = address});
    ASSERT_FALSE(metrics.ok()) << address;
    EXPECT_EQ(metrics.status().code(), absl::StatusCode::kInvalidArgument) << address;
    EXPECT_THAT(metrics.status().message(), HasSubstr(address));
  }
  absl::StatusOr<std::unique_ptr<Metrics>> metrics =
      Metrics::Create({.listen_address = "", .max_service_labels = 0});
  EXPECT_EQ(metrics.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MetricsTest, PassesPromtoolCheckMetrics) {
  std::unique_ptr<Metrics> metrics = NewMetrics();
  ExerciseEverything(*metrics);
  std::optional<ToolRun> run = PromtoolCheckMetrics(metrics->Scrape());
  if (!run) GTEST_SKIP() << "promtool is not installed";
  EXPECT_EQ(run->exit_code, 0) << run->output;
  EXPECT_EQ(run->output, "") << "lint findings";
}

}  // namespace
}  // namespace prewarm
