#pragma once

#include <cstdint>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "predictor/clock.h"

namespace prewarm {

// One queue of timers ordered by deadline, fired by one thread: every pending warm-up of the
// server is a timer here. Schedule and Cancel are O(log n). Callbacks run on the firing thread
// outside the lock, in deadline order; they must be short (hand work off, never block).
// Tests drive it with a FakeClock through RunDue() instead of Start(). Thread-safe.
class TimerQueue {
 public:
  using TimerId = uint64_t;
  // Runs at or after the deadline; `lateness` = firing time - deadline (>= 0).
  using Callback = std::function<void(absl::Duration lateness)>;

  explicit TimerQueue(Clock& clock) : clock_(clock) {}
  // Stops the thread; pending timers are dropped without running.
  ~TimerQueue();

  // Schedules `fn` at `deadline` (wall time; a deadline in the past fires at once).
  TimerId Schedule(absl::Time deadline, Callback fn) ABSL_LOCKS_EXCLUDED(mu_);
  // Returns true when the timer was pending (it will not run).
  bool Cancel(TimerId id) ABSL_LOCKS_EXCLUDED(mu_);
  size_t pending() const ABSL_LOCKS_EXCLUDED(mu_);
  // The earliest deadline, or InfiniteFuture when nothing is pending.
  absl::Time NextDeadline() const ABSL_LOCKS_EXCLUDED(mu_);

  // Runs every timer due at clock.Now(); returns how many ran. For tests on a fake clock.
  int RunDue() ABSL_LOCKS_EXCLUDED(mu_);

  // Starts the firing thread, which sleeps until the earliest deadline. Idempotent.
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Stops and joins the firing thread. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Key {
    absl::Time deadline;
    TimerId id;
    bool operator<(const Key& o) const {
      return deadline != o.deadline ? deadline < o.deadline : id < o.id;
    }
  };
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  Clock& clock_;
  mutable absl::Mutex mu_;
  absl::btree_map<Key, Callback> timers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<TimerId, absl::Time> deadlines_ ABSL_GUARDED_BY(mu_);
  TimerId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace prewarm
