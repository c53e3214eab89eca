#include "server/delegated_warmups.h"

#include <utility>
#include <vector>

namespace prewarm {

DelegatedWarmups::SubscriberId DelegatedWarmups::Subscribe(std::vector<std::string> services,
                                                           std::function<void()> wake) {
  absl::MutexLock lock(&mu_);
  const SubscriberId id = next_id_++;
  Subscriber& s = subscribers_[id];
  s.services.insert(services.begin(), services.end());
  s.wake = std::move(wake);
  return id;
}

void DelegatedWarmups::Unsubscribe(SubscriberId id) {
  absl::MutexLock lock(&mu_);
  subscribers_.erase(id);
}

int DelegatedWarmups::Publish(const v1::WatchWarmupsResponse& instruction) {
  std::vector<std::function<void()>> to_wake;
  int delivered = 0;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, s] : subscribers_) {
      if (!s.services.empty() && !s.services.contains(instruction.service())) continue;
      ++delivered;
      // Woken only on empty -> non-empty: a full queue that drops its oldest was never empty.
      const bool was_empty = s.queue.empty();
      if (!was_empty && s.queue.size() >= max_queue_) {
        s.queue.pop_front();
        ++dropped_;
      }
      s.queue.push_back(instruction);
      if (was_empty && s.wake) to_wake.push_back(s.wake);
    }
  }
  for (auto& wake : to_wake) wake();
  return delivered;
}

bool DelegatedWarmups::Pop(SubscriberId id, v1::WatchWarmupsResponse* out) {
  absl::MutexLock lock(&mu_);
  auto it = subscribers_.find(id);
  if (it == subscribers_.end() || it->second.queue.empty()) return false;
  *out = std::move(it->second.queue.front());
  it->second.queue.pop_front();
  return true;
}

void DelegatedWarmups::EndAll() {
  std::vector<std::function<void()>> to_wake;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, s] : subscribers_) {
      if (s.ended) continue;
      s.ended = true;
      if (s.wake) to_wake.push_back(s.wake);
    }
  }
  for (auto& wake : to_wake) wake();
}

bool DelegatedWarmups::Ended(SubscriberId id) const {
  absl::MutexLock lock(&mu_);
  auto it = subscribers_.find(id);
  return it == subscribers_.end() || it->second.ended;
}

size_t DelegatedWarmups::subscribers() const {
  absl::MutexLock lock(&mu_);
  return subscribers_.size();
}

int64_t DelegatedWarmups::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

}  // namespace prewarm
