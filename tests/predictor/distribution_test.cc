#include "predictor/distribution.h"

#include <span>

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

TEST(DistributionTest, ManyDrawsAtLeastOneFloorAreDrawAtLeastsDraws) {
  Distribution d = Distribution::FromSamples({1, 2, 3, 10, 4, 7});
  for (double floor : {0.0, 2.5, 3.0, 9.0, 20.0}) {
    Rng a(11), b(11);
    const std::span<const float> tail = d.AtLeast(floor);
    for (float x : tail) EXPECT_GE(x, floor);
    for (int i = 0; i < 50; ++i) {
      EXPECT_EQ(Distribution::DrawFrom(tail, floor, b), d.DrawAtLeast(floor, a)) << floor;
    }
    EXPECT_EQ(a.Next(), b.Next()) << "the streams moved on alike";
  }
  EXPECT_EQ(d.AtLeast(3).size(), 4u);  // 3, 4, 7, 10
  EXPECT_TRUE(d.AtLeast(11).empty());
}

TEST(DistributionTest, ConstantWhenEverySampleIsOneValue) {
  EXPECT_TRUE(Distribution::Point(2.5).constant());
  EXPECT_TRUE(Distribution::FromSamples({4, 4, 4}).constant());
  EXPECT_FALSE(Distribution::FromSamples({4, 4, 4.5}).constant());
  // What the planner relies on: a constant distribution's n draws are its value and Skip(n).
  Distribution d = Distribution::FromSamples({4, 4, 4});
  Rng drawn(5), skipped(5);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(d.Draw(drawn), 4);
  skipped.Skip(7);
  EXPECT_EQ(drawn.Next(), skipped.Next());
}

TEST(RngTest, SkipMovesOnAsNextWould) {
  for (uint64_t n : {0, 1, 2, 128, 1000}) {
    Rng next(99), skip(99);
    for (uint64_t i = 0; i < n; ++i) next.Next();
    skip.Skip(n);
    EXPECT_EQ(next.Next(), skip.Next()) << n;
    EXPECT_EQ(next.Uniform(), skip.Uniform()) << n;
  }
}

TEST(DistributionTest, SameSeedSameDraws) {
  Distribution d = Distribution::FromSamples({1, 2, 3, 4, 5, 6, 7, 8});
  Rng a(42), b(42);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(d.Draw(a), d.Draw(b));
}

}  // namespace
}  // namespace prewarm
