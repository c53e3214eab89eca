#pragma once

#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace prewarm::ctl {

// Lets another thread stop a running `prewarmctl watch`: main's signal thread on Ctrl-C, or a
// test. Thread-safe.
class Interrupter {
 public:
  // Runs the armed stop callback once. False when nothing is armed or it already ran: the caller
  // (main) then exits the process instead.
  bool Trigger() ABSL_LOCKS_EXCLUDED(mu_);
  // Arms `stop` (it must not block; it runs under this object's lock). Triggered() reports
  // whether it ran.
  void Arm(std::function<void()> stop) ABSL_LOCKS_EXCLUDED(mu_);
  // After Disarm returns, the callback no longer runs.
  void Disarm() ABSL_LOCKS_EXCLUDED(mu_);
  bool Triggered() const ABSL_LOCKS_EXCLUDED(mu_);
  // True while a callback is armed (tests wait for the watch to be running).
  bool Armed() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::function<void()> stop_ ABSL_GUARDED_BY(mu_);
  bool triggered_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace prewarm::ctl
