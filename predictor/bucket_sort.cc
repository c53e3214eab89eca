#include "predictor/bucket_sort.h"

#include <algorithm>
#include <cmath>

namespace prewarm {
namespace {

// Buckets this small are finished by insertion sort; larger ones by std::sort.
constexpr uint32_t kInsertionLimit = 16;

float KeyOf(const KeyedFloat& k) { return k.key; }
float KeyOf(float f) { return f; }

template <typename T>
void InsertionSort(T* first, T* last) {
  for (T* i = first + 1; i < last; ++i) {
    T value = *i;
    T* j = i;
    while (j > first && KeyOf(*(j - 1)) > KeyOf(value)) {
      *j = *(j - 1);
      --j;
    }
    *j = value;
  }
}

template <typename T>
void SortImpl(std::vector<T>& items, std::vector<T>& scratch, std::vector<uint32_t>& counts) {
  const size_t n = items.size();
  if (n < 2) return;
  float lo = KeyOf(items[0]);
  float hi = lo;
  for (const T& item : items) {
    lo = std::min(lo, KeyOf(item));
    hi = std::max(hi, KeyOf(item));
  }
  if (!(hi > lo) || !std::isfinite(hi - lo)) {
    if (!(hi > lo)) return;  // All equal: already sorted.
    std::sort(items.begin(), items.end(),
              [](const T& a, const T& b) { return KeyOf(a) < KeyOf(b); });
    return;
  }
  const uint32_t buckets = static_cast<uint32_t>(n);
  const double scale = (buckets - 1) / (static_cast<double>(hi) - lo);
  // Each item's bucket, computed once for the count and the scatter. Monotone in the key, so equal
  // keys share a bucket and keep their order through the (stable) scatter.
  counts.assign(2 * static_cast<size_t>(buckets) + 1, 0);
  uint32_t* bucket = counts.data() + buckets + 1;
  for (size_t i = 0; i < n; ++i) {
    const auto b = static_cast<uint32_t>((static_cast<double>(KeyOf(items[i])) - lo) * scale);
    bucket[i] = std::min(b, buckets - 1);
    ++counts[bucket[i] + 1];
  }
  for (uint32_t b = 0; b < buckets; ++b) counts[b + 1] += counts[b];
  scratch.resize(n);
  // counts[b] is now the start of bucket b; scatter advances it to the bucket's end.
  uint32_t* next = counts.data();
  for (size_t i = 0; i < n; ++i) scratch[next[bucket[i]]++] = items[i];
  // Bucket b now spans [previous end, next[b]).
  uint32_t begin = 0;
  for (uint32_t b = 0; b < buckets; ++b) {
    const uint32_t end = next[b];
    if (end - begin > kInsertionLimit) {
      std::sort(scratch.begin() + begin, scratch.begin() + end,
                [](const T& a, const T& c) { return KeyOf(a) < KeyOf(c); });
    } else if (end - begin > 1) {
      InsertionSort(scratch.data() + begin, scratch.data() + end);
    }
    begin = end;
  }
  items.swap(scratch);
}

}  // namespace

void BucketSort(std::vector<KeyedFloat>& items, std::vector<KeyedFloat>& scratch,
                std::vector<uint32_t>& counts) {
  SortImpl(items, scratch, counts);
}

void BucketSort(std::vector<float>& values, std::vector<float>& scratch,
                std::vector<uint32_t>& counts) {
  SortImpl(values, scratch, counts);
}

RankPair SelectRanks(std::span<const float> values, size_t low, size_t high,
                     std::vector<float>& scratch, std::vector<uint32_t>& counts) {
  const size_t n = values.size();
  float lo = values[0];
  float hi = lo;
  for (float v : values) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (!(hi > lo)) return {lo, lo};  // All equal.
  if (!std::isfinite(hi - lo)) {
    scratch.assign(values.begin(), values.end());
    std::nth_element(scratch.begin(), scratch.begin() + high, scratch.end());
    const float at_high = scratch[high];
    std::nth_element(scratch.begin(), scratch.begin() + low, scratch.begin() + high);
    return {scratch[low], at_high};
  }
  const auto buckets = static_cast<uint32_t>(n);
  const double scale = (buckets - 1) / (static_cast<double>(hi) - lo);
  const auto bucket_of = [&](float v) {
    return std::min(static_cast<uint32_t>((static_cast<double>(v) - lo) * scale), buckets - 1);
  };
  counts.assign(buckets, 0);
  for (float v : values) ++counts[bucket_of(v)];
  // The buckets holding the two ranks, and how many values lie in the buckets before each.
  uint32_t low_bucket = 0;
  uint32_t high_bucket = 0;
  size_t below_low = 0;
  size_t below_high = 0;
  size_t seen = 0;
  for (uint32_t b = 0; b < buckets; ++b) {
    if (seen <= low && low < seen + counts[b]) {
      low_bucket = b;
      below_low = seen;
    }
    if (seen <= high && high < seen + counts[b]) {
      high_bucket = b;
      below_high = seen;
      break;
    }
    seen += counts[b];
  }
  // One pass gathers both buckets: the low one's values first, then the high one's (if another).
  const size_t low_count = counts[low_bucket];
  const size_t high_count = high_bucket == low_bucket ? 0 : counts[high_bucket];
  scratch.resize(low_count + high_count);
  size_t next_low = 0;
  size_t next_high = low_count;
  for (float v : values) {
    const uint32_t b = bucket_of(v);
    if (b == low_bucket) {
      scratch[next_low++] = v;
    } else if (b == high_bucket) {
      scratch[next_high++] = v;
    }
  }
  const auto low_begin = scratch.begin();
  const auto low_end = scratch.begin() + static_cast<ptrdiff_t>(low_count);
  std::nth_element(low_begin, low_begin + static_cast<ptrdiff_t>(low - below_low), low_end);
  const float at_low = low_begin[static_cast<ptrdiff_t>(low - below_low)];
  if (high_bucket == low_bucket) {
    const auto at = low_begin + static_cast<ptrdiff_t>(high - below_low);
    std::nth_element(low_begin, at, low_end);
    return {at_low, *at};
  }
  const auto at = low_end + static_cast<ptrdiff_t>(high - below_high);
  std::nth_element(low_end, at, scratch.end());
  return {at_low, *at};
}

}  // namespace prewarm
