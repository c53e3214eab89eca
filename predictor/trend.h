#pragma once

#include <vector>

namespace prewarm {

// Projects a history window onto its newest observation when it has a clear linear trend, so
// that a planner bootstrapping from it sees today's level with the window's spread: durations
// that grow run after run (data volumes rising) would otherwise be drawn from a mix of old, shorter
// runs, and every warm-up would fire early. The slope is ordinary least squares of value against
// position; it counts as clear when its t statistic is at least `min_t` (4: a stationary window
// almost never passes) and the window holds at least `min_samples`. Each sample then moves by
// slope x (its distance to the newest position), clamped at zero. Returns whether it moved them.
//
// Example: {1, 2, 3, 4, ..., 20} becomes twenty values near 20.
bool ProjectTrendToNewest(std::vector<float>& oldest_first, double min_t = 4, int min_samples = 16);

}  // namespace prewarm
