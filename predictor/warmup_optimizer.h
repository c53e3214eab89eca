#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "predictor/bucket_sort.h"

namespace prewarm {

// The cost of a warm-up time, per sample of the Monte Carlo plan, in the model of DESIGN §2.
// For a sample with latest useful firing time x = S - C (start minus cold start), firing at w:
//   w > x:          the task waits min(w - x, C)                      (delay)
//   x - K <= w <= x: the container idles x - w before use               (idle)
//   w < x - K:      reclaimed before use: the task pays C, K was idle   (both)
// plus, optionally, a fixed idle for late warm-ups (see Choose).
// Cost = alpha * delay + beta * idle. No warm-up at all costs alpha * C.
struct WarmupChoice {
  // The cheapest firing time (same time base as the inputs). Meaningless when !warm.
  double fire_at = 0;
  // Whether firing at fire_at is cheaper than not warming.
  bool warm = false;
  // Expectations over all samples (warm-anyway samples count as zero), with the warm-up fired at
  // fire_at.
  double expected_delay = 0;
  double expected_idle = 0;
  double expected_cost = 0;
  // Expected cost without a warm-up.
  double cost_without = 0;
  // Share of samples in which the warm-up comes after x: the task waits for part of the start.
  double late_probability = 0;
  // How many samples that is (late_probability * total_samples).
  int late_samples = 0;
};

// Finds the expected-cost-minimising warm-up time over candidate times. The cost between
// consecutive points of {x_i} and {x_i - K} is concave (a sum of linear pieces and capped
// delays), so its minimum over [earliest, inf) lies on such a point or on `earliest`; one
// sweep with prefix sums prices every candidate, so a choice costs O(n log n) for the sorts.
// Not thread-safe: holds scratch buffers reused across calls. One per thread.
class WarmupOptimizer {
 public:
  // `latest_fire[i]` and `cold_start[i]` describe the samples that need a warm-up; `total_samples`
  // (>= their count) includes the samples in which the service is warm anyway.
  // `keep_alive` <= 0 means containers are never reclaimed. `earliest`: no firing before it (now).
  // `late_idle`: idle a late warm-up causes besides the delay (a container that serves one
  // request at a time starts a second one for a task arriving during its warm-up's cold start;
  // that one idles until reclaimed), charged to samples with x < w <= x + C.
  // REQUIRES: latest_fire.size() == cold_start.size() <= total_samples; total_samples > 0.
  WarmupChoice Choose(std::span<const float> latest_fire, std::span<const float> cold_start,
                      int total_samples, double keep_alive, double earliest, double alpha,
                      double beta, double late_idle = 0);

  // The task starts (x + C) of the samples given to the last Choose(), ascending.
  std::span<const float> sorted_starts() const {
    return s_.empty() ? std::span<const float>() : std::span<const float>(s_.data(), s_.size() - 1);
  }

 private:
  // key: latest useful firing time x; payload: cold start C. Ascending by x.
  std::vector<KeyedFloat> samples_;
  std::vector<KeyedFloat> sample_scratch_;
  std::vector<double> x_sum_;  // prefix sums of x
  std::vector<double> c_sum_;  // prefix sums of c, in x order
  std::vector<float> s_scratch_;
  std::vector<uint32_t> counts_;
  std::vector<float> s_;       // x + C (the task's start), ascending, then +infinity
  std::vector<double> s_sum_;  // prefix sums of s_
};

}  // namespace prewarm
