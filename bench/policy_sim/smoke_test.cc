// Quick checks of the policy simulation: the platform model, and one small workload through the
// real RunRegistry. Simulated time only; nothing here measures the machine.

#include <vector>

#include "absl/time/time.h"
#include "bench/policy_sim/platform.h"
#include "bench/policy_sim/report.h"
#include "bench/policy_sim/simulator.h"
#include "bench/policy_sim/workloads.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_clock.h"

namespace prewarm::sim {
namespace {

class PlatformTest : public ::testing::Test {
 protected:
  PlatformTest() : platform_(events_, clock_, {Service()}, 1) {}

  static ServiceConfig Service() {
    ServiceConfig c;
    c.name = "svc";
    c.cold_start = absl::Seconds(2);
    c.cold_start_jitter = 0;
    c.keep_alive = absl::Seconds(60);
    return c;
  }
  void RunUntil(absl::Time t) {
    while (!events_.empty() && events_.next() <= t) {
      clock_.AdvanceTo(events_.next());
      events_.RunNext();
    }
    clock_.AdvanceTo(t);
  }
  absl::Duration Call(absl::Duration work) {
    absl::Duration waited = absl::InfiniteDuration();
    platform_.Invoke(
        0, work, [&](absl::Duration w) { waited = w; }, [] {});
    RunUntil(clock_.Now() + absl::Seconds(30));  // cold start + work, at most
    return waited;
  }

  FakeClock clock_;
  EventQueue events_;
  Platform platform_;
};

TEST_F(PlatformTest, ColdThenWarmThenReclaimed) {
  platform_.StartMeasurement(clock_.Now());
  EXPECT_EQ(Call(absl::Seconds(1)), absl::Seconds(2));      // cold
  EXPECT_EQ(Call(absl::Seconds(1)), absl::ZeroDuration());  // kept alive
  RunUntil(clock_.Now() + absl::Seconds(61));               // idle > keep-alive: reclaimed
  EXPECT_EQ(Call(absl::Seconds(1)), absl::Seconds(2));
  EXPECT_EQ(platform_.stats().containers_started, 2);
  EXPECT_EQ(platform_.stats().policy_idle_s, 0);  // no warm-ups: only the platform's own idle
  EXPECT_GT(platform_.stats().platform_idle_s, 60);
}

TEST_F(PlatformTest, WarmupHidesTheColdStartAndCountsItsIdleTime) {
  platform_.StartMeasurement(clock_.Now());
  absl::Duration latency;
  platform_.Warmup(0, [&](absl::Duration l) { latency = l; });
  RunUntil(clock_.Now() + absl::Seconds(10));
  EXPECT_EQ(latency, absl::Seconds(2) + Platform::kWarmLatency);
  EXPECT_EQ(Call(absl::Seconds(1)), absl::ZeroDuration());
  // Ready at 2.005 s, used at 10 s.
  EXPECT_NEAR(platform_.stats().policy_idle_s, 10 - 2.005, 1e-6);
}

TEST_F(PlatformTest, OneContainerPerConcurrentRequest) {
  std::vector<absl::Duration> waited(3, absl::InfiniteDuration());
  for (int i = 0; i < 3; ++i) {
    platform_.Invoke(
        0, absl::Seconds(5), [&waited, i](absl::Duration w) { waited[i] = w; }, [] {});
  }
  RunUntil(clock_.Now() + absl::Seconds(10));
  for (absl::Duration w : waited) EXPECT_EQ(w, absl::Seconds(2));
  EXPECT_EQ(platform_.stats().containers_started, 3);
}

TEST(PolicySimTest, SeedChainThroughTheRunRegistry) {
  WorkloadOptions options;
  options.training_runs = 8;
  options.measured_runs = 6;
  const Workload w = MakeWorkload("seed_chain", options, absl::FromUnixSeconds(1'700'000'000));
  std::vector<SimResult> results;
  for (const PolicySpec& p : std::vector<PolicySpec>{
           {PolicyKind::kNone}, {PolicyKind::kEager}, {PolicyKind::kPrewarm, 20}}) {
    results.push_back(Simulate(w, p, {}));
  }
  const std::vector<Row> rows = Summarize(results);
  for (const Row& row : rows) {
    SCOPED_TRACE(row.result.policy);
    EXPECT_EQ(row.result.errors, 0);
    EXPECT_EQ(row.result.measured_runs, 6);
    EXPECT_EQ(row.result.tasks_run, 18);
  }
  // Runs are far apart: without warm-ups every task is cold.
  EXPECT_EQ(rows[0].result.hideable_cold_tasks, rows[0].result.hideable_tasks);
  EXPECT_EQ(rows[0].result.warmups, 0);
  ASSERT_TRUE(rows[1].hidden_share.has_value());
  // Eager: the chain's tasks are short, so every downstream task is warm; only the roots of
  // scheduled runs, which eager does not warm, stay cold.
  EXPECT_GT(*rows[1].hidden_share, 0.6);
  ASSERT_TRUE(rows[2].hidden_share.has_value());
  EXPECT_GT(*rows[2].hidden_share, 0.5);  // prewarm, after a short history
  EXPECT_GT(rows[2].result.warmups, 0);
  EXPECT_LT(rows[2].result.policy_idle_s, rows[1].result.policy_idle_s);
}

// --sample_count reaches the planner of the simulated server: one sample per task (a single
// guess of each start) plans other warm-ups than the default's 128.
TEST(PolicySimTest, SampleCountReachesThePlanner) {
  WorkloadOptions options;
  options.training_runs = 8;
  options.measured_runs = 6;
  const Workload w = MakeWorkload("seed_chain", options, absl::FromUnixSeconds(1'700'000'000));
  const PolicySpec prewarm{PolicyKind::kPrewarm, 200};
  const SimResult by_default = Simulate(w, prewarm, {});
  SimOptions one_sample;
  one_sample.sample_count = 1;
  const SimResult single = Simulate(w, prewarm, one_sample);
  EXPECT_EQ(single.errors, 0);
  EXPECT_EQ(single.tasks_run, by_default.tasks_run);
  EXPECT_NE(single.policy_idle_s, by_default.policy_idle_s);
}

}  // namespace
}  // namespace prewarm::sim
