#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace prewarm {

// Sorting hundreds of floats per task dominates planning time; an LSD radix sort on the floats'
// bit patterns is several times faster than std::sort at these sizes and has no data-dependent
// branches.

// Maps a float to an unsigned key with the same order (negative floats flip all bits, positive
// ones only the sign bit). NaNs are not expected.
inline uint32_t OrderedKey(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

inline float FromOrderedKey(uint32_t key) {
  const uint32_t bits = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Sorts `items` ascending by their top 32 bits (the rest is payload), with four 8-bit passes;
// passes where every item shares the digit are skipped. `scratch` is reused storage.
void RadixSortByHighKey(std::vector<uint64_t>& items, std::vector<uint64_t>& scratch);

// Sorts floats ascending.
void RadixSortFloats(std::vector<float>& values, std::vector<uint64_t>& scratch_a,
                     std::vector<uint64_t>& scratch_b);

}  // namespace prewarm
