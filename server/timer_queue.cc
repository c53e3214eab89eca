#include "server/timer_queue.h"

#include <utility>
#include <vector>

namespace prewarm {

TimerQueue::~TimerQueue() { Stop(); }

TimerQueue::TimerId TimerQueue::Schedule(absl::Time deadline, Callback fn) {
  absl::MutexLock lock(&mu_);
  const TimerId id = next_id_++;
  timers_.emplace(Key{deadline, id}, std::move(fn));
  deadlines_.emplace(id, deadline);
  return id;  // A new earliest timer wakes the firing thread (it waits on the queue's head).
}

bool TimerQueue::Cancel(TimerId id) {
  absl::MutexLock lock(&mu_);
  auto it = deadlines_.find(id);
  if (it == deadlines_.end()) return false;
  timers_.erase(Key{it->second, id});
  deadlines_.erase(it);
  return true;
}

size_t TimerQueue::pending() const {
  absl::MutexLock lock(&mu_);
  return timers_.size();
}

absl::Time TimerQueue::NextDeadline() const {
  absl::MutexLock lock(&mu_);
  return timers_.empty() ? absl::InfiniteFuture() : timers_.begin()->first.deadline;
}

int TimerQueue::RunDue() {
  std::vector<std::pair<absl::Time, Callback>> due;
  const absl::Time now = clock_.Now();
  {
    absl::MutexLock lock(&mu_);
    while (!timers_.empty() && timers_.begin()->first.deadline <= now) {
      auto node = timers_.extract(timers_.begin());
      deadlines_.erase(node.key().id);
      due.emplace_back(node.key().deadline, std::move(node.mapped()));
    }
  }
  for (auto& [deadline, fn] : due) fn(clock_.Now() - deadline);
  return static_cast<int>(due.size());
}

void TimerQueue::Start() {
  absl::MutexLock lock(&mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { Loop(); });
}

void TimerQueue::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void TimerQueue::Loop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      // Sleep until the earliest deadline, a new earlier timer, or Stop(). The wait re-evaluates
      // the condition whenever the queue changes, so a new earlier deadline wakes us at once.
      const absl::Time next =
          timers_.empty() ? absl::InfiniteFuture() : timers_.begin()->first.deadline;
      const TimerId head_id = timers_.empty() ? 0 : timers_.begin()->first.id;
      auto changed = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        if (stopping_) return true;
        if (timers_.empty()) return head_id != 0;
        return timers_.begin()->first.id != head_id;
      };
      const absl::Duration wait =
          next == absl::InfiniteFuture() ? absl::InfiniteDuration() : next - clock_.Now();
      if (wait > absl::ZeroDuration()) {
        mu_.AwaitWithTimeout(absl::Condition(&changed), wait);
      }
      if (stopping_) return;
    }
    RunDue();
  }
}

}  // namespace prewarm
