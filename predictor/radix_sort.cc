#include "predictor/radix_sort.h"

#include <array>

namespace prewarm {

void RadixSortByHighKey(std::vector<uint64_t>& items, std::vector<uint64_t>& scratch) {
  const size_t n = items.size();
  if (n < 2) return;
  std::array<std::array<uint32_t, 256>, 4> counts{};
  for (uint64_t item : items) {
    const uint32_t key = static_cast<uint32_t>(item >> 32);
    ++counts[0][key & 0xff];
    ++counts[1][(key >> 8) & 0xff];
    ++counts[2][(key >> 16) & 0xff];
    ++counts[3][key >> 24];
  }
  scratch.resize(n);
  std::vector<uint64_t>* from = &items;
  std::vector<uint64_t>* to = &scratch;
  for (int pass = 0; pass < 4; ++pass) {
    std::array<uint32_t, 256>& count = counts[pass];
    const int shift = 32 + 8 * pass;
    if (count[((*from)[0] >> shift) & 0xff] == n) continue;  // One bucket: already in order.
    uint32_t offset = 0;
    for (uint32_t& c : count) {
      const uint32_t here = c;
      c = offset;
      offset += here;
    }
    for (uint64_t item : *from) (*to)[count[(item >> shift) & 0xff]++] = item;
    std::swap(from, to);
  }
  if (from != &items) items.swap(scratch);
}

void RadixSortFloats(std::vector<float>& values, std::vector<uint64_t>& scratch_a,
                     std::vector<uint64_t>& scratch_b) {
  scratch_a.resize(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    scratch_a[i] = static_cast<uint64_t>(OrderedKey(values[i])) << 32;
  }
  RadixSortByHighKey(scratch_a, scratch_b);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = FromOrderedKey(static_cast<uint32_t>(scratch_a[i] >> 32));
  }
}

}  // namespace prewarm
