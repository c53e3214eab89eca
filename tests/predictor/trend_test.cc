#include "predictor/trend.h"

#include <numeric>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "predictor/random.h"

namespace prewarm {
namespace {

TEST(TrendTest, AClearTrendIsProjectedToTheNewestSample) {
  // 100 runs whose duration grows from 20 s to 50 s, with 10% noise.
  Rng rng(7);
  std::vector<float> v;
  for (int i = 0; i < 100; ++i) v.push_back((20 + 0.3 * i) * (0.9 + 0.2 * rng.Uniform()));
  ASSERT_TRUE(ProjectTrendToNewest(v));
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
  EXPECT_NEAR(mean, 49.7, 1.5);  // the newest level, not the window's 35
  // The spread stays about the noise's (+-10% of the level), not the trend's 30 s.
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  EXPECT_LT(*hi - *lo, 0.35 * 50);
}

TEST(TrendTest, AStationaryWindowIsLeftAlone) {
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    Rng rng(seed);
    std::vector<float> v;
    for (int i = 0; i < 128; ++i) v.push_back(10 * (0.5 + rng.Uniform()));
    const std::vector<float> before = v;
    EXPECT_FALSE(ProjectTrendToNewest(v)) << "seed " << seed;
    EXPECT_EQ(v, before);
  }
}

TEST(TrendTest, FewSamplesOrAFlatLineAreLeftAlone) {
  std::vector<float> few = {1, 2, 3, 4, 5};
  EXPECT_FALSE(ProjectTrendToNewest(few));
  std::vector<float> flat(20, 3.0f);
  EXPECT_FALSE(ProjectTrendToNewest(flat));
}

TEST(TrendTest, AFallingTrendIsClampedAtZero) {
  std::vector<float> v;
  for (int i = 0; i < 20; ++i) v.push_back(20 - i);  // 20 down to 1: the next would be 0
  ASSERT_TRUE(ProjectTrendToNewest(v));
  for (float x : v) EXPECT_NEAR(x, 1, 1e-4);
}

}  // namespace
}  // namespace prewarm
