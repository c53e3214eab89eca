#include "predictor/warmup_optimizer.h"

#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace prewarm {
namespace {

constexpr double kNoEarliest = -std::numeric_limits<double>::infinity();
constexpr double kNoCliff = 0;

// x evenly spread over [0, 100): quantile q of X is 100q.
std::vector<float> UniformGrid(int n) {
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i) x[i] = 100.0f * i / n;
  return x;
}

struct NewsvendorCase {
  double alpha;
  double beta;
};

class NewsvendorTest : public ::testing::TestWithParam<NewsvendorCase> {};

// Without the keep-alive cliff, and with cold starts too long for the cap to bind, the optimum
// is the newsvendor quantile w* = F^-1(beta / (alpha + beta)).
TEST_P(NewsvendorTest, MatchesTheAnalyticQuantile) {
  const auto [alpha, beta] = GetParam();
  const int n = 1000;
  std::vector<float> x = UniformGrid(n);
  std::vector<float> c(n, 1000.0f);
  WarmupOptimizer optimizer;
  WarmupChoice choice = optimizer.Choose(x, c, n, kNoCliff, kNoEarliest, alpha, beta);
  ASSERT_TRUE(choice.warm);
  const double expected = 100.0 * beta / (alpha + beta);
  EXPECT_NEAR(choice.fire_at, expected, 0.2) << "alpha=" << alpha << " beta=" << beta;
  EXPECT_NEAR(choice.late_probability, beta / (alpha + beta), 0.002);
  // The expected cost at the optimum, analytically for X ~ U(0, 100):
  // alpha * E[(w-X)+] + beta * E[(X-w)+] = (alpha w^2 + beta (100-w)^2) / 200.
  const double w = expected;
  EXPECT_NEAR(choice.expected_cost, (alpha * w * w + beta * (100 - w) * (100 - w)) / 200, 0.2);
}

INSTANTIATE_TEST_SUITE_P(CostRatios, NewsvendorTest,
                         ::testing::Values(NewsvendorCase{1, 1}, NewsvendorCase{3, 1},
                                           NewsvendorCase{19, 1}, NewsvendorCase{1, 4}));

TEST(WarmupOptimizerTest, DeterministicStartFiresExactlyAtTheLatestUsefulTime) {
  std::vector<float> x(64, 9.0f);
  std::vector<float> c(64, 1.0f);
  WarmupOptimizer optimizer;
  WarmupChoice choice = optimizer.Choose(x, c, 64, 60, 0, 20, 1);
  ASSERT_TRUE(choice.warm);
  EXPECT_DOUBLE_EQ(choice.fire_at, 9.0);
  EXPECT_DOUBLE_EQ(choice.expected_delay, 0);
  EXPECT_DOUBLE_EQ(choice.expected_idle, 0);
  EXPECT_DOUBLE_EQ(choice.cost_without, 20.0);
}

TEST(WarmupOptimizerTest, NeverFiresBeforeEarliest) {
  std::vector<float> x(10, 10.0f);
  std::vector<float> c(10, 1.0f);
  WarmupOptimizer optimizer;
  // Half a second late: still hides half the cold start.
  WarmupChoice late = optimizer.Choose(x, c, 10, 60, 10.5, 20, 1);
  ASSERT_TRUE(late.warm);
  EXPECT_DOUBLE_EQ(late.fire_at, 10.5);
  EXPECT_NEAR(late.expected_delay, 0.5, 1e-6);
  // After the task has started (x + C = 11): a warm-up hides nothing and is not fired.
  WarmupChoice useless = optimizer.Choose(x, c, 10, 60, 11.5, 20, 1);
  EXPECT_FALSE(useless.warm);
  EXPECT_NEAR(useless.expected_delay, 1.0, 1e-6);
}

TEST(WarmupOptimizerTest, KeepAliveCliffForbidsWarmingTooEarly) {
  // Half the samples need the service at 0, half at 100; a container lives 10 s idle. Warming
  // for the early half leaves the late half reclaimed (they pay C and K idle seconds); warming
  // for the late half costs the early half their cold start only. The late half wins.
  std::vector<float> x;
  for (int i = 0; i < 50; ++i) x.push_back(0);
  for (int i = 0; i < 50; ++i) x.push_back(100);
  std::vector<float> c(100, 1.0f);
  WarmupOptimizer optimizer;
  WarmupChoice choice = optimizer.Choose(x, c, 100, 10, kNoEarliest, 20, 1);
  ASSERT_TRUE(choice.warm);
  EXPECT_DOUBLE_EQ(choice.fire_at, 100);
  EXPECT_NEAR(choice.expected_delay, 0.5, 1e-6);  // the early half pays C = 1
  EXPECT_NEAR(choice.expected_idle, 0, 1e-6);
}

TEST(WarmupOptimizerTest, ALateWarmupsSpareContainerIsPriced) {
  // x spread evenly over [0, 10), C = 2, alpha/beta = 20. Without the spare, the optimum leaves
  // a small share of samples late (newsvendor: 1/21 of them). A late warm-up that also leaves a
  // spare container idle for K = 60 s makes lateness 60 idle seconds dearer: fire earlier.
  std::vector<float> x, c;
  for (int i = 0; i < 100; ++i) {
    x.push_back(i / 10.0f);
    c.push_back(2);
  }
  WarmupOptimizer optimizer;
  const WarmupChoice plain = optimizer.Choose(x, c, 100, kNoCliff, kNoEarliest, 20, 1);
  const WarmupChoice spare = optimizer.Choose(x, c, 100, kNoCliff, kNoEarliest, 20, 1, 60);
  ASSERT_TRUE(plain.warm);
  ASSERT_TRUE(spare.warm);
  EXPECT_GT(plain.late_probability, 0);
  EXPECT_LT(spare.fire_at, plain.fire_at);
  EXPECT_LT(spare.late_probability, plain.late_probability);
  // A sample already started when the warm-up fires is not charged (the server drops it).
  const std::vector<float> one_x = {0}, one_c = {1};
  const WarmupChoice after = optimizer.Choose(one_x, one_c, 1, kNoCliff, 5, 20, 1, 60);
  EXPECT_FALSE(after.warm);
}

TEST(WarmupOptimizerTest, ReclaimedWarmupsCountTheirIdleTime) {
  // One sample far beyond the keep-alive of an early warm-up: priced as delay C plus K idle.
  std::vector<float> x = {0, 50};
  std::vector<float> c = {1, 1};
  WarmupOptimizer optimizer;
  WarmupChoice choice = optimizer.Choose(x, c, 2, 10, 0, 1, 1);
  // Candidates: 0 (x=50 reclaimed: 1 + 10), 40 (x=0 late: 1; x=50 idle 10), 50 (x=0 late: 1).
  ASSERT_TRUE(choice.warm);
  EXPECT_DOUBLE_EQ(choice.fire_at, 50);
  EXPECT_NEAR(choice.expected_cost, 0.5, 1e-9);
}

TEST(WarmupOptimizerTest, WarmAnywaySamplesDiluteTheCost) {
  // Only 1 of 4 samples needs a warm-up; the averages are over all 4.
  std::vector<float> x = {5};
  std::vector<float> c = {2};
  WarmupOptimizer optimizer;
  WarmupChoice choice = optimizer.Choose(x, c, 4, 60, 0, 10, 1);
  ASSERT_TRUE(choice.warm);
  EXPECT_DOUBLE_EQ(choice.cost_without, 10 * 2 / 4.0);
  EXPECT_DOUBLE_EQ(choice.expected_cost, 0);
}

TEST(WarmupOptimizerTest, NothingToWarm) {
  WarmupOptimizer optimizer;
  WarmupChoice choice = optimizer.Choose({}, {}, 8, 60, 0, 10, 1);
  EXPECT_FALSE(choice.warm);
  EXPECT_DOUBLE_EQ(choice.cost_without, 0);
}

}  // namespace
}  // namespace prewarm
