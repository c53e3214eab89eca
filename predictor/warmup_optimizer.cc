#include "predictor/warmup_optimizer.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "predictor/bucket_sort.h"
#include "predictor/check.h"

namespace prewarm {
namespace {

// A candidate at x_j - K must still count sample j as "in the window" despite rounding.
constexpr double kEpsilon = 1e-6;

// Sorts [first, last) by insertion unless that takes more than `budget` moves; false when it gave
// up (the range then holds a permutation of its values).
bool InsertionSortWithin(float* first, float* last, size_t budget) {
  size_t moves = 0;
  for (float* i = first + 1; i < last; ++i) {
    const float value = *i;
    float* j = i;
    while (j > first && *(j - 1) > value) {
      *j = *(j - 1);
      --j;
      ++moves;
    }
    *j = value;
    if (moves > budget) return false;
  }
  return true;
}

}  // namespace

WarmupChoice WarmupOptimizer::Choose(std::span<const float> latest_fire,
                                     std::span<const float> cold_start, int total_samples,
                                     double keep_alive, double earliest, double alpha, double beta,
                                     double late_idle) {
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
  // One slot past the end holds +infinity, so that the sweep can step `started` without a bound
  // check.
  s_.resize(n + 1);
  x_sum_.resize(n + 1);
  c_sum_.resize(n + 1);
  s_sum_.resize(n + 1);
  x_sum_[0] = c_sum_[0] = s_sum_[0] = 0;
  for (int j = 0; j < n; ++j) {
    x_sum_[j + 1] = x_sum_[j] + samples_[j].key;
    c_sum_[j + 1] = c_sum_[j] + samples_[j].payload;
    s_[j] = samples_[j].key + samples_[j].payload;
  }
  // The second sort follows from the first: in x order, s = x + C is out of order only where
  // cold starts differ by more than the gap between neighbouring x, so an insertion sort finishes
  // it in about one pass (exactly one when C is a point mass). Past a budget of moves the values
  // are still a permutation, and the bucket sort takes over: the result is the same sorted array.
  if (!InsertionSortWithin(s_.data(), s_.data() + n, 4 * static_cast<size_t>(n))) {
    s_.resize(n);
    BucketSort(s_, s_scratch_, counts_);
    s_.push_back(0);
  }
  s_[n] = std::numeric_limits<float>::infinity();
  for (int j = 0; j < n; ++j) s_sum_[j + 1] = s_sum_[j] + s_[j];

  const double cost_without = alpha * c_sum_[n] * inv_total;
  best.cost_without = cost_without;
  best.expected_cost = std::numeric_limits<double>::infinity();

  // Prices firing at w and keeps the cheapest; false once no later w can be cheaper.
  // late: samples with x < w; started: samples with s = x + C < w; in_window: samples with
  // x <= w + K.
  const auto price = [&](double w, int late, int started, int in_window) {
    // Late samples wait w - x, except those already started (s < w), which wait their full C:
    // sum(w - x) over x < w, minus sum(w - s) over s < w.
    const double late_delay = (late * w - x_sum_[late]) - (started * w - s_sum_[started]);
    const double idle_near = (x_sum_[in_window] - x_sum_[late]) - (in_window - late) * w;
    const double delay = late_delay + (c_sum_[n] - c_sum_[in_window]);
    // Samples whose task starts before w never see the warm-up (the server drops it at STARTED).
    const double idle =
        std::max(0.0, idle_near) + (n - in_window) * keep_alive + (late - started) * late_idle;
    const double cost = (alpha * delay + beta * idle) * inv_total;
    // The late delay only grows with w: once it alone costs more than the best so far, no later
    // candidate can win.
    if (alpha * late_delay * inv_total > best.expected_cost) return false;
    // "<=" keeps the latest of equally cheap times: less exposure to a reclaim we did not model.
    if (cost <= best.expected_cost) {
      best.fire_at = w;
      best.expected_delay = delay * inv_total;
      best.expected_idle = idle * inv_total;
      best.expected_cost = cost;
      best.late_probability = late * inv_total;
      best.late_samples = late;
    }
    return true;
  };

  if (!cliff) {
    // Never reclaimed (the common case: the server refreshes ready warm-ups), so every sample is
    // in the window and the candidates are `earliest`, then each distinct x_j after it.
    int late = 0;
    int started = 0;
    while (late < n && samples_[late].key < earliest) ++late;
    while (s_[started] < earliest) ++started;  // s_[n] is +infinity.
    bool go_on = price(earliest, late, started, n);
    for (int j = late; go_on && j < n; ++j) {
      const double w = samples_[j].key;
      // An equal x prices the same w again; and below `earliest` is no candidate.
      if ((j > 0 && samples_[j - 1].key == samples_[j].key) || w < earliest) continue;
      // Sorted and distinct from its predecessor: exactly j samples have x < w. The starts move
      // on by about one per candidate: one step without a branch, the rare rest by the loop.
      started += s_[started] < w;
      while (s_[started] < w) ++started;
      go_on = price(w, j, started, n);
    }
  } else {
    // Candidates: `earliest`, then the points x_j and x_j - K at or after it, in ascending
    // order. The three counts only grow as w does: one sweep prices every candidate in O(n).
    int late = 0;
    int started = 0;
    int in_window = 0;
    int next_x = 0;
    // A time before every x is never better than the first x: no sample is late either way, and
    // each costs at least as much idle (or the same reclaim). So cliffs before x_0 are skipped.
    int next_cliff = 0;
    while (next_cliff < n && samples_[next_cliff].key - keep_alive < samples_[0].key) {
      ++next_cliff;
    }
    constexpr double kNone = std::numeric_limits<double>::infinity();
    double w = earliest;
    for (;;) {
      while (late < n && samples_[late].key < w) ++late;
      while (s_[started] < w) ++started;  // s_[n] is +infinity.
      while (in_window < n && samples_[in_window].key <= w + keep_alive + kEpsilon) ++in_window;
      if (!price(w, late, started, in_window)) break;
      // Next candidate at or after `earliest`.
      double next = kNone;
      do {
        const double by_x = next_x < n ? samples_[next_x].key : kNone;
        const double by_cliff = next_cliff < n ? samples_[next_cliff].key - keep_alive : kNone;
        if (by_cliff <= by_x) {
          next = by_cliff;
          ++next_cliff;
        } else {
          next = by_x;
          ++next_x;
        }
      } while (next < earliest);
      if (next == kNone) break;
      w = next;
    }
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
