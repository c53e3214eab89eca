#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "prewarm/v1/prewarm.pb.h"

namespace prewarm {

// Fans out warm-up instructions of delegated services to the WatchWarmups streams that want them.
// Each subscriber has a bounded queue (a watcher that stops reading loses the oldest
// instructions, never the server's memory) and a wake-up callback that the stream uses to write.
// Thread-safe.
class DelegatedWarmups {
 public:
  using SubscriberId = uint64_t;

  explicit DelegatedWarmups(size_t max_queue_per_subscriber = 10'000)
      : max_queue_(max_queue_per_subscriber) {}

  // `services`: empty for all delegated services. `wake` runs (outside the lock) when the
  // subscriber's queue goes from empty to non-empty; it must not block. It may be empty (poll with
  // Pop).
  SubscriberId Subscribe(std::vector<std::string> services, std::function<void()> wake)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Unsubscribe(SubscriberId id) ABSL_LOCKS_EXCLUDED(mu_);

  // Queues `instruction` for every subscriber that wants its service. Returns how many did: 0
  // means nobody will fire it.
  int Publish(const v1::WatchWarmupsResponse& instruction) ABSL_LOCKS_EXCLUDED(mu_);

  // Takes the next instruction for `id`; false when its queue is empty.
  bool Pop(SubscriberId id, v1::WatchWarmupsResponse* out) ABSL_LOCKS_EXCLUDED(mu_);

  // Ends every current subscription (this replica stopped leading, so nothing more will be
  // published to them) and wakes each one, so that its stream ends once its queue is drained.
  void EndAll() ABSL_LOCKS_EXCLUDED(mu_);
  // Whether `id`'s subscription was ended by EndAll (or is unknown).
  bool Ended(SubscriberId id) const ABSL_LOCKS_EXCLUDED(mu_);

  size_t subscribers() const ABSL_LOCKS_EXCLUDED(mu_);
  // Instructions dropped because a subscriber's queue was full.
  int64_t dropped() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Subscriber {
    absl::flat_hash_set<std::string> services;
    std::function<void()> wake;
    std::deque<v1::WatchWarmupsResponse> queue;
    bool ended = false;
  };

  const size_t max_queue_;
  mutable absl::Mutex mu_;
  SubscriberId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<SubscriberId, Subscriber> subscribers_ ABSL_GUARDED_BY(mu_);
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace prewarm
