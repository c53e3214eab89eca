#include "predictor/bucket_sort.h"

#include <algorithm>
#include <cmath>
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

}  // namespace
}  // namespace prewarm
