#include "predictor/bucket_sort.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "predictor/random.h"

namespace prewarm {
namespace {

std::vector<float> Sorted(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v;
}

void ExpectSortsLikeStdSort(std::vector<float> values) {
  std::vector<float> expected = Sorted(values);
  std::vector<float> scratch;
  std::vector<uint32_t> counts;
  BucketSort(values, scratch, counts);
  EXPECT_EQ(values, expected);
}

TEST(BucketSortTest, SortsUniformSkewedClusteredAndEqualValues) {
  Rng rng(17);
  std::vector<float> uniform, skewed, clustered, negative;
  for (int i = 0; i < 1000; ++i) {
    uniform.push_back(static_cast<float>(100 * rng.Uniform()));
    skewed.push_back(static_cast<float>(std::exp(8 * rng.Uniform())));  // heavy tail
    // 999 values within a millisecond and one far away: one huge bucket.
    clustered.push_back(i == 0 ? 1e6f : static_cast<float>(10 + 0.001 * rng.Uniform()));
    negative.push_back(static_cast<float>(rng.Uniform() - 0.5) * 1e-3f);
  }
  ExpectSortsLikeStdSort(uniform);
  ExpectSortsLikeStdSort(skewed);
  ExpectSortsLikeStdSort(clustered);
  ExpectSortsLikeStdSort(negative);
  ExpectSortsLikeStdSort(std::vector<float>(50, 3.0f));
  ExpectSortsLikeStdSort({});
  ExpectSortsLikeStdSort({2.0f});
  ExpectSortsLikeStdSort({-1e30f, 1e30f, 0.0f});
}

TEST(BucketSortTest, PayloadsTravelWithTheirKeys) {
  std::vector<KeyedFloat> items = {{3, 30}, {1, 10}, {2, 20}, {1, 10}};
  std::vector<KeyedFloat> scratch;
  std::vector<uint32_t> counts;
  BucketSort(items, scratch, counts);
  for (size_t i = 0; i < items.size(); ++i) {
    EXPECT_FLOAT_EQ(items[i].payload, items[i].key * 10);
    if (i > 0) {
      EXPECT_LE(items[i - 1].key, items[i].key);
    }
  }
}

// Ranks as a sort would place them, for every kind of input BucketSort meets, at ranks in one
// bucket, in two, at both ends, and equal.
TEST(SelectRanksTest, FindsTheValuesASortPutsAtBothRanks) {
  Rng rng(23);
  std::vector<std::vector<float>> inputs = {{5.0f},
                                            {2.0f, 1.0f},
                                            std::vector<float>(40, 7.0f),
                                            {-1e30f, 1e30f, 0.0f, 3.0f},
                                            {1.0f, std::numeric_limits<float>::infinity(), 0.5f}};
  for (int round = 0; round < 200; ++round) {
    const int n = 1 + static_cast<int>(300 * rng.Uniform());
    std::vector<float> v;
    for (int i = 0; i < n; ++i) {
      switch (round % 4) {
        case 0:
          v.push_back(static_cast<float>(100 * rng.Uniform()));
          break;
        case 1:
          v.push_back(static_cast<float>(std::exp(8 * rng.Uniform())));
          break;
        // Many samples floored at one value ("now"), the rest spread above it.
        case 2:
          v.push_back(rng.Uniform() < 0.6 ? 3.0f : static_cast<float>(3 + rng.Uniform()));
          break;
        default:
          v.push_back(i == 0 ? 1e6f : static_cast<float>(10 + 0.001 * rng.Uniform()));
      }
    }
    inputs.push_back(std::move(v));
  }
  std::vector<float> scratch;
  std::vector<uint32_t> counts;
  for (const std::vector<float>& values : inputs) {
    const std::vector<float> sorted = Sorted(values);
    const size_t last = values.size() - 1;
    const std::vector<std::pair<size_t, size_t>> ranks = {
        {static_cast<size_t>(0.1 * last), static_cast<size_t>(0.9 * last)},
        {0, last},
        {last / 2, last / 2},
        {last / 2, std::min(last, last / 2 + 1)}};
    for (const auto& [low, high] : ranks) {
      const RankPair got = SelectRanks(values, low, high, scratch, counts);
      EXPECT_EQ(got.low, sorted[low]) << "n=" << values.size() << " rank " << low;
      EXPECT_EQ(got.high, sorted[high]) << "n=" << values.size() << " rank " << high;
    }
  }
}

}  // namespace
}  // namespace prewarm
