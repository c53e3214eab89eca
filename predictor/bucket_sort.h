#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace prewarm {

// Sorting a few hundred floats per task dominates planning time. Samples of a task's times are
// spread smoothly, so a bucket sort with one bucket per element (by value between min and max),
// finishing each small bucket by insertion, sorts them in a few linear passes; buckets that end
// up large (clustered values) fall back to std::sort, so the worst case stays O(n log n).

// A float with a payload that travels with it.
struct KeyedFloat {
  float key;
  float payload;
};

// Sorts ascending by key. `scratch` is reusable storage. Keys must not be NaN.
void BucketSort(std::vector<KeyedFloat>& items, std::vector<KeyedFloat>& scratch,
                std::vector<uint32_t>& counts);

// Sorts floats ascending (no payload). Values must not be NaN.
void BucketSort(std::vector<float>& values, std::vector<float>& scratch,
                std::vector<uint32_t>& counts);

// The values at ranks `low` and `high` (0-based, low <= high < values.size()) of `values` sorted
// ascending, without sorting them: the same buckets as BucketSort, but only the one or two buckets
// that hold those ranks are ordered (nth_element), so most of a sort's passes are skipped. For a
// task's start quantiles, which need two ranks of each re-planned task's samples. Values must not
// be NaN.
struct RankPair {
  float low;
  float high;
};
RankPair SelectRanks(std::span<const float> values, size_t low, size_t high,
                     std::vector<float>& scratch, std::vector<uint32_t>& counts);

}  // namespace prewarm
