#include "tests/fakes/fake_clock.h"

#include "predictor/check.h"

namespace prewarm {

void FakeClock::Advance(absl::Duration d) {
  PREWARM_CHECK(d >= absl::ZeroDuration(), "time never goes back");
  absl::MutexLock lock(&mu_);
  now_ += d;
  elapsed_ += d;
}

void FakeClock::AdvanceTo(absl::Time t) {
  absl::MutexLock lock(&mu_);
  if (t <= now_) return;
  elapsed_ += t - now_;
  now_ = t;
}

}  // namespace prewarm
