#include "predictor/warmup_optimizer.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "predictor/check.h"
#include "predictor/bucket_sort.h"

namespace prewarm {
namespace {

// A candidate at x_j - K must still count sample j as "in the window" despite rounding.
constexpr double kEpsilon = 1e-6;

}  // namespace

WarmupChoice WarmupOptimizer::Choose(std::span<const float> latest_fire,
                                     std::span<const float> cold_start, int total_samples,
                                     double keep_alive, double earliest, double alpha,
                                     double beta, double late_idle) {
  PREWARM_CHECK(latest_fire.size() == cold_start.size(), "one cold start per sample");
  PREWARM_CHECK(total_samples > 0 && latest_fire.size() <= static_cast<size_t>(total_samples),
                "sample counts");
  const int n = static_cast<int>(latest_fire.size());
  const bool cliff = keep_alive > 0;
  const double inv_total = 1.0 / total_samples;

  WarmupChoice best;
  if (n == 0) return best;  // Warm anyway in every sample: nothing to gain, nothing to lose.

  // Sort (x, C) pairs by x.
  samples_.resize(n);
  for (int i = 0; i < n; ++i) samples_[i] = {latest_fire[i], cold_start[i]};
  BucketSort(samples_, sample_scratch_, counts_);
  s_.resize(n);
  x_sum_.assign(n + 1, 0);
  c_sum_.assign(n + 1, 0);
  s_sum_.assign(n + 1, 0);
  for (int j = 0; j < n; ++j) {
    x_sum_[j + 1] = x_sum_[j] + samples_[j].key;
    c_sum_[j + 1] = c_sum_[j] + samples_[j].payload;
    s_[j] = samples_[j].key + samples_[j].payload;
  }
  BucketSort(s_, s_scratch_, counts_);
  for (int j = 0; j < n; ++j) s_sum_[j + 1] = s_sum_[j] + s_[j];

  const double cost_without = alpha * c_sum_[n] * inv_total;
  best.cost_without = cost_without;
  best.expected_cost = std::numeric_limits<double>::infinity();

  // Candidates: `earliest`, then the points x_j and x_j - K at or after it, in ascending order.
  // The three counts below only grow as w does: one sweep prices every candidate in O(n).
  int late = 0;       // samples with x < w
  int started = 0;    // samples with s = x + C < w
  int in_window = cliff ? 0 : n;  // samples with x <= w + K
  int next_x = 0;
  // A time before every x is never better than the first x: no sample is late either way, and
  // each costs at least as much idle (or the same reclaim). So cliffs before x_0 are skipped.
  int next_cliff = cliff ? 0 : n;
  while (next_cliff < n && samples_[next_cliff].key - keep_alive < samples_[0].key) ++next_cliff;
  double w = earliest;
  for (;;) {
    while (late < n && samples_[late].key < w) ++late;
    while (started < n && s_[started] < w) ++started;
    while (in_window < n && samples_[in_window].key <= w + keep_alive + kEpsilon) ++in_window;
    // Late samples wait w - x, except those already started (s < w), which wait their full C:
    // sum(w - x) over x < w, minus sum(w - s) over s < w.
    const double late_delay = (late * w - x_sum_[late]) - (started * w - s_sum_[started]);
    const double idle_near = (x_sum_[in_window] - x_sum_[late]) - (in_window - late) * w;
    const double delay = late_delay + (c_sum_[n] - c_sum_[in_window]);
    // Samples whose task starts before w never see the warm-up (the server drops it at STARTED).
    const double idle = std::max(0.0, idle_near) + (n - in_window) * keep_alive +
                        (late - started) * late_idle;
    const double cost = (alpha * delay + beta * idle) * inv_total;
    // The late delay only grows with w: once it alone costs more than the best so far, no later
    // candidate can win.
    if (alpha * late_delay * inv_total > best.expected_cost) break;
    // "<=" keeps the latest of equally cheap times: less exposure to a reclaim we did not model.
    if (cost <= best.expected_cost) {
      best.fire_at = w;
      best.expected_delay = delay * inv_total;
      best.expected_idle = idle * inv_total;
      best.expected_cost = cost;
      best.late_probability = late * inv_total;
    }
    // Next candidate at or after `earliest`.
    double next = std::numeric_limits<double>::infinity();
    do {
      const double by_x = next_x < n ? samples_[next_x].key : std::numeric_limits<double>::infinity();
      const double by_cliff = next_cliff < n ? samples_[next_cliff].key - keep_alive
                                             : std::numeric_limits<double>::infinity();
      if (by_cliff <= by_x) {
        next = by_cliff;
        ++next_cliff;
      } else {
        next = by_x;
        ++next_x;
      }
    } while (next < earliest);
    if (next == std::numeric_limits<double>::infinity()) break;
    w = next;
  }
  // Warming must beat not warming strictly: a useless warm-up is not free.
  // (With a margin: a tie decided by rounding would flip between runs.)
  best.warm = best.expected_cost < cost_without - 1e-9 * (1 + cost_without);
  if (!best.warm) {
    best.expected_cost = cost_without;
    best.expected_delay = c_sum_[n] * inv_total;
    best.expected_idle = 0;
  }
  return best;
}

}  // namespace prewarm
