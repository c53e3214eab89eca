#include "predictor/distribution.h"

#include "gtest/gtest.h"

namespace prewarm {
namespace {

TEST(DistributionTest, PointAlwaysYieldsItsValue) {
  Distribution d = Distribution::Point(2.5);
  Rng rng(1);
  for (int i = 0; i < 10; ++i) EXPECT_FLOAT_EQ(d.Draw(rng), 2.5f);
  EXPECT_DOUBLE_EQ(d.Mean(), 2.5);
}

TEST(DistributionTest, DrawsOnlyObservedValuesWithTheirFrequencies) {
  Distribution d = Distribution::FromSamples({3, 1, 2, 1});
  Rng rng(7);
  int ones = 0;
  constexpr int kDraws = 40'000;
  for (int i = 0; i < kDraws; ++i) {
    const double x = d.Draw(rng);
    ASSERT_TRUE(x == 1 || x == 2 || x == 3) << x;
    ones += x == 1;
  }
  EXPECT_NEAR(ones / static_cast<double>(kDraws), 0.5, 0.02);
  EXPECT_DOUBLE_EQ(d.Mean(), 1.75);
  EXPECT_DOUBLE_EQ(d.Quantile(0), 1);
  EXPECT_DOUBLE_EQ(d.Quantile(1), 3);
  EXPECT_DOUBLE_EQ(d.Quantile(0.5), 1.5);
}

TEST(DistributionTest, DrawAtLeastConditionsOnElapsedTime) {
  Distribution d = Distribution::FromSamples({1, 2, 3, 10});
  Rng rng(3);
  for (int i = 0; i < 100; ++i) {
    const double x = d.DrawAtLeast(2.5, rng);
    EXPECT_TRUE(x == 3 || x == 10) << x;
  }
  // Longer than anything seen: the elapsed time itself.
  EXPECT_DOUBLE_EQ(d.DrawAtLeast(20, rng), 20);
}

TEST(DistributionTest, SameSeedSameDraws) {
  Distribution d = Distribution::FromSamples({1, 2, 3, 4, 5, 6, 7, 8});
  Rng a(42), b(42);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(d.Draw(a), d.Draw(b));
}

}  // namespace
}  // namespace prewarm
