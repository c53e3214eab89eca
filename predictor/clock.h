#pragma once

#include "absl/time/time.h"

namespace prewarm {

// The source of time for all logic: planner, scheduler and run registry read time only through a
// Clock, so tests drive them with a FakeClock and never sleep. Only main.cc creates a RealClock.
// Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;

  // Wall-clock time: what timestamps in the API and the store mean.
  virtual absl::Time Now() const = 0;

  // Monotonic time since an arbitrary fixed origin: for measuring spans and ordering timers,
  // immune to wall-clock steps.
  virtual absl::Duration MonotonicNow() const = 0;

  // The process-wide real clock (system_clock and steady_clock). Never null; never freed.
  static Clock& Real();
};

}  // namespace prewarm
