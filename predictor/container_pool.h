#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace prewarm {

// What prewarm knows of one service's containers, from the calls and warm-ups it hears of: which
// serve tasks, which idle warm until the keep-alive reclaims them, and which a pending task holds
// (its own warm-up started or refreshed it, or it claimed a free one). A container serves
// `concurrency` requests at once (Knative containerConcurrency; 0 = unlimited, so one warm
// container serves everyone). With concurrency 1 a service another run keeps busy is not warm for
// this one: its task would start a second container, cold.
//
// Tasks are named by the caller (the server uses "run_id#task_index"). The pool is bounded:
// containers reclaimed by the keep-alive are dropped, and past max_containers the one idle the
// longest is forgotten. Not thread-safe.
//
// Example:
//   ContainerPool pool(/*concurrency=*/1, absl::Seconds(60));
//   pool.WarmupAnswered("run-1#2", now, /*cold=*/true);    // reserved for run-1's task 2
//   pool.FreeWarmUntil(now);                                // InfinitePast: nothing free
//   std::vector<std::string> displaced;
//   bool warm = pool.Acquire("run-1#2", now + absl::Seconds(5), &displaced);  // true
class ContainerPool {
 public:
  static constexpr int kMaxContainers = 4096;

  // REQUIRES: concurrency >= 0.
  ContainerPool(int concurrency, absl::Duration keep_alive);
  // A re-registration: new settings for the containers to come.
  void Configure(int concurrency, absl::Duration keep_alive);

  // A task's call reached the service at `at`. True when a warm container took it. `displaced`
  // gets the pending tasks whose hold the call ended (their warm-ups are lost and must be sent
  // again): the holder of the container it could only take from another, and the holders of a
  // container it took that now has fewer free slots than holders (see WarmupAnswered). Calling it
  // again for a task with a call in progress repeats the first answer (STARTED and
  // SERVICE_INVOKED both report the call).
  bool Acquire(absl::string_view task, absl::Time at, std::vector<std::string>* displaced);
  // The task's call ended at `at`: its container idles, warm until at + keep_alive.
  void Release(absl::string_view task, absl::Time at);
  // The task will not call (skipped, cancelled, its run expired): drops its reservation, and a
  // call in progress ends without warming anything new.
  void Forget(absl::string_view task);
  // A warm-up for `task` was answered at `at`. `cold`: it started a new container; else it
  // reached a free warm one, or, when none is free, an idle one other tasks hold (the platform
  // knows nothing of holds), which it then holds too: the first of them to call takes it, and the
  // others are displaced then (Acquire), when a warm-up can start a container. Either way that
  // container is warm until at + keep_alive and held for `task` until its call.
  void WarmupAnswered(absl::string_view task, absl::Time at, bool cold);
  // Holds for `task` a free container that stays warm at least until `needed`. False when none.
  bool Claim(absl::string_view task, absl::Time now, absl::Time needed);

  // Until when a container nobody holds stays warm (a busy one with spare capacity: at least
  // now + keep_alive); InfinitePast when none.
  absl::Time FreeWarmUntil(absl::Time now) const;
  // Until when any container stays warm; InfinitePast when none.
  absl::Time WarmUntil(absl::Time now) const;
  // Until when the container held for `task` stays warm; InfinitePast when it holds none.
  absl::Time HeldUntil(absl::string_view task, absl::Time now) const;

  size_t containers() const { return containers_.size(); }

 private:
  struct Container {
    int active = 0;                 // calls in progress
    absl::Time idle_until;          // when active == 0: reclaimed after this
    std::vector<std::string> held;  // pending tasks holding a slot
  };
  struct Call {
    uint64_t container;
    bool warm;
  };

  // Slots neither serving nor held (negative when more tasks hold it than it has idle slots).
  int FreeSlots(const Container& c) const;
  // A call takes a slot of `id`; holders beyond its idle slots go to `displaced`.
  bool Take(absl::string_view task, uint64_t id, bool warm, std::vector<std::string>* displaced);
  bool WarmAt(const Container& c, absl::Time at) const {
    return c.active > 0 || c.idle_until >= at;
  }
  // How long the container stays warm as of `now`.
  absl::Time Until(const Container& c, absl::Time now) const {
    return c.active > 0 ? std::max(c.idle_until, now + keep_alive_) : c.idle_until;
  }
  // Drops containers reclaimed before `now`, and the longest idle beyond kMaxContainers.
  void Purge(absl::Time now);
  // The container `task` holds a slot of, or containers_.end().
  std::map<uint64_t, Container>::iterator HolderOf(absl::string_view task);
  uint64_t NewContainer();

  int capacity_;
  absl::Duration keep_alive_;
  std::map<uint64_t, Container> containers_;      // by id: deterministic iteration
  absl::flat_hash_map<std::string, Call> calls_;  // tasks with a call in progress
  uint64_t next_id_ = 1;
};

}  // namespace prewarm
