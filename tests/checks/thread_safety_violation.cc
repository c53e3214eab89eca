// Deliberately wrong: proves that scripts/check_thread_safety.py fails on a lock violation (the
// CTest case thread_safety_check_fails_on_violation expects clang to reject this file).
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace prewarm {

class Counter {
 public:
  void Increment() { ++value_; }  // Written without holding mu_.

 private:
  absl::Mutex mu_;
  int value_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace prewarm
