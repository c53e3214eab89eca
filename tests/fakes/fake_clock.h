#pragma once

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "predictor/clock.h"

namespace prewarm {

// A Clock that moves only when told to: tests and simulations advance it explicitly.
// Wall and monotonic time move together. Thread-safe.
class FakeClock final : public Clock {
 public:
  // Starts at `start` (wall); monotonic time starts at zero.
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}

  absl::Time Now() const override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  absl::Duration MonotonicNow() const override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return elapsed_;
  }

  // REQUIRES: d >= 0 (time never goes back).
  void Advance(absl::Duration d) ABSL_LOCKS_EXCLUDED(mu_);
  // Moves to `t`, or stays put when `t` is not later than now.
  void AdvanceTo(absl::Time t) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  absl::Duration elapsed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace prewarm
