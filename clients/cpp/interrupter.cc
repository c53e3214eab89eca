#include "clients/cpp/interrupter.h"

#include <utility>

namespace prewarm::ctl {

bool Interrupter::Trigger() {
  absl::MutexLock lock(&mu_);
  if (!stop_ || triggered_) return false;
  triggered_ = true;
  stop_();
  return true;
}

void Interrupter::Arm(std::function<void()> stop) {
  absl::MutexLock lock(&mu_);
  stop_ = std::move(stop);
  triggered_ = false;
}

void Interrupter::Disarm() {
  absl::MutexLock lock(&mu_);
  stop_ = nullptr;
}

bool Interrupter::Triggered() const {
  absl::MutexLock lock(&mu_);
  return triggered_;
}

bool Interrupter::Armed() const {
  absl::MutexLock lock(&mu_);
  return stop_ != nullptr;
}

}  // namespace prewarm::ctl
