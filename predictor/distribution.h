#pragma once

#include <span>
#include <vector>

#include "predictor/random.h"

namespace prewarm {

// An immutable empirical distribution of a quantity in seconds: a sorted snapshot of a history
// window (or a single prior value) that the planner draws from. Drawing resamples the observed
// values (bootstrap), so no distribution family is assumed. Thread-compatible (const methods are
// safe to call concurrently).
class Distribution {
 public:
  // A distribution that always yields `seconds`.
  static Distribution Point(double seconds);
  // REQUIRES: !samples.empty().
  static Distribution FromSamples(std::vector<float> samples);

  double Draw(Rng& rng) const { return sorted_[rng.Below(static_cast<uint32_t>(sorted_.size()))]; }

  // Whether every sample is the same value, samples().front(): then every Draw() yields it, and
  // `n` draws in a row are rng.Skip(n) (the same stream position afterwards, without hashing).
  bool constant() const { return sorted_.front() == sorted_.back(); }

  // A draw conditioned on being at least `floor` (a task that has already run for `floor`
  // seconds): uniform over the samples >= floor, or `floor` itself when none is that large.
  double DrawAtLeast(double floor, Rng& rng) const { return DrawFrom(AtLeast(floor), floor, rng); }
  // What DrawAtLeast(floor, ...) draws from: the samples >= floor. For many draws with one
  // floor, find them once and draw with DrawFrom (the same draws as DrawAtLeast's).
  std::span<const float> AtLeast(double floor) const;
  static double DrawFrom(std::span<const float> at_least, double floor, Rng& rng) {
    if (at_least.empty()) return floor;
    return at_least[rng.Below(static_cast<uint32_t>(at_least.size()))];
  }

  double Mean() const { return mean_; }
  // Quantile q in [0, 1] by linear interpolation.
  double Quantile(double q) const;
  int size() const { return static_cast<int>(sorted_.size()); }
  // The samples, ascending (FromSamples of them gives this distribution back).
  const std::vector<float>& samples() const { return sorted_; }

 private:
  explicit Distribution(std::vector<float> sorted);

  std::vector<float> sorted_;
  double mean_ = 0;
};

}  // namespace prewarm
