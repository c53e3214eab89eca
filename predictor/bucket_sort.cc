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

}  // namespace prewarm
