#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"

namespace prewarm {

// A small, fast, seedable generator (SplitMix64): plans draw millions of samples, and a plan must
// be reproducible from its seed on every platform, which std::mt19937 + distributions are not.
// Not thread-safe; one per computation.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    uint64_t z = (state_ += kIncrement);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  // Uniform in [0, n). REQUIRES: n > 0. Lemire's multiply-shift: no division, negligible bias.
  uint32_t Below(uint32_t n) {
    return static_cast<uint32_t>(((Next() >> 32) * static_cast<uint64_t>(n)) >> 32);
  }

  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

  // Moves on as `n` calls of Next() would, in O(1): the state is a counter, each value a hash of
  // it. Draws whose value is known anyway (a distribution of one value) keep the stream's later
  // draws where they were.
  void Skip(uint64_t n) { state_ += n * kIncrement; }

 private:
  static constexpr uint64_t kIncrement = 0x9e3779b97f4a7c15ULL;
  uint64_t state_;
};

// Mixes values into a seed, so that (run, task, generation) streams are independent.
inline uint64_t MixSeed(uint64_t a, uint64_t b) {
  Rng rng(a ^ (b * 0xd6e8feb86659fd93ULL));
  return rng.Next();
}

// A seed that is stable across platforms and releases (FNV-1a): the same run id always gives the
// same plan for the same history.
inline uint64_t SeedFromString(absl::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

}  // namespace prewarm
