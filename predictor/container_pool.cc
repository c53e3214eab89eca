#include "predictor/container_pool.h"

#include <limits>
#include <utility>

#include "predictor/check.h"

namespace prewarm {
namespace {

int CapacityOf(int concurrency) {
  return concurrency == 0 ? std::numeric_limits<int>::max() / 2 : concurrency;
}

}  // namespace

ContainerPool::ContainerPool(int concurrency, absl::Duration keep_alive) {
  Configure(concurrency, keep_alive);
}

void ContainerPool::Configure(int concurrency, absl::Duration keep_alive) {
  PREWARM_CHECK(concurrency >= 0, "concurrency >= 0");
  capacity_ = CapacityOf(concurrency);
  // <= 0: never reclaimed.
  keep_alive_ = keep_alive > absl::ZeroDuration() ? keep_alive : absl::InfiniteDuration();
}

int ContainerPool::FreeSlots(const Container& c) const {
  return capacity_ - c.active - static_cast<int>(c.held.size());
}

void ContainerPool::Purge(absl::Time now) {
  for (auto it = containers_.begin(); it != containers_.end();) {
    const Container& c = it->second;
    if (c.active == 0 && c.idle_until < now) {
      it = containers_.erase(it);
    } else {
      ++it;
    }
  }
  // Room for one more.
  while (containers_.size() >= static_cast<size_t>(kMaxContainers)) {
    auto oldest = containers_.end();
    for (auto it = containers_.begin(); it != containers_.end(); ++it) {
      if (it->second.active == 0 &&
          (oldest == containers_.end() || it->second.idle_until < oldest->second.idle_until)) {
        oldest = it;
      }
    }
    if (oldest == containers_.end()) break;  // All busy: calls_ bounds them.
    containers_.erase(oldest);
  }
}

std::map<uint64_t, ContainerPool::Container>::iterator ContainerPool::HolderOf(
    absl::string_view task) {
  for (auto it = containers_.begin(); it != containers_.end(); ++it) {
    for (const std::string& t : it->second.held) {
      if (t == task) return it;
    }
  }
  return containers_.end();
}

uint64_t ContainerPool::NewContainer() {
  const uint64_t id = next_id_++;
  containers_[id] = Container{};
  return id;
}

bool ContainerPool::Take(absl::string_view task, uint64_t id, bool warm,
                         std::vector<std::string>* displaced) {
  Container& c = containers_[id];
  ++c.active;
  calls_[task] = Call{id, warm};
  while (static_cast<int>(c.held.size()) > std::max(0, capacity_ - c.active)) {
    if (displaced != nullptr) displaced->push_back(std::move(c.held.back()));
    c.held.pop_back();
  }
  return warm;
}

bool ContainerPool::Acquire(absl::string_view task, absl::Time at,
                            std::vector<std::string>* displaced) {
  if (auto call = calls_.find(task); call != calls_.end()) return call->second.warm;
  Purge(at);
  // Its own container first.
  if (auto it = HolderOf(task); it != containers_.end()) {
    std::vector<std::string>& held = it->second.held;
    held.erase(std::find(held.begin(), held.end(), task));
    if (WarmAt(it->second, at)) return Take(task, it->first, true, displaced);
  }
  // Then a free slot of a warm container, busy ones first (the platform packs requests).
  auto best = containers_.end();
  for (auto it = containers_.begin(); it != containers_.end(); ++it) {
    if (FreeSlots(it->second) <= 0 || !WarmAt(it->second, at)) continue;
    if (best == containers_.end() || it->second.active > best->second.active) best = it;
  }
  if (best != containers_.end()) return Take(task, best->first, true, displaced);
  // The platform knows nothing of holds: a call takes a held slot before starting a container.
  for (auto it = containers_.begin(); it != containers_.end(); ++it) {
    const Container& c = it->second;
    if (c.held.empty() || capacity_ - c.active <= 0 || !WarmAt(c, at)) continue;
    return Take(task, it->first, true, displaced);
  }
  return Take(task, NewContainer(), false, displaced);
}

void ContainerPool::Release(absl::string_view task, absl::Time at) {
  auto call = calls_.find(task);
  if (call == calls_.end()) return;
  auto it = containers_.find(call->second.container);
  calls_.erase(call);
  if (it == containers_.end()) return;
  Container& c = it->second;
  if (--c.active == 0) c.idle_until = std::max(c.idle_until, at + keep_alive_);
}

void ContainerPool::Forget(absl::string_view task) {
  if (auto it = HolderOf(task); it != containers_.end()) {
    std::vector<std::string>& held = it->second.held;
    held.erase(std::find(held.begin(), held.end(), task));
  }
  auto call = calls_.find(task);
  if (call == calls_.end()) return;
  auto it = containers_.find(call->second.container);
  calls_.erase(call);
  if (it != containers_.end()) --it->second.active;  // idle_until stays: maybe long past.
}

void ContainerPool::WarmupAnswered(absl::string_view task, absl::Time at, bool cold) {
  Purge(at);
  auto holder = HolderOf(task);
  if (holder == containers_.end()) {
    if (!cold) {
      // It reached a warm container with a free slot; which one the load balancer picked is
      // unknowable, and any keeps the count right. With none free, it reached an idle one that
      // others hold: it started nothing, and whoever calls first takes that container.
      for (auto it = containers_.begin(); it != containers_.end(); ++it) {
        if (FreeSlots(it->second) > 0 && WarmAt(it->second, at)) {
          holder = it;
          break;
        }
      }
      for (auto it = containers_.begin(); it != containers_.end() && holder == containers_.end();
           ++it) {
        if (capacity_ - it->second.active > 0 && WarmAt(it->second, at)) holder = it;
      }
    }
    // Cold, or warm on a container this pool did not know of.
    if (holder == containers_.end()) holder = containers_.find(NewContainer());
    holder->second.held.emplace_back(task);
  }
  Container& c = holder->second;
  c.idle_until = std::max(c.idle_until, at + keep_alive_);
}

bool ContainerPool::Claim(absl::string_view task, absl::Time now, absl::Time needed) {
  Purge(now);
  if (auto it = HolderOf(task); it != containers_.end()) return Until(it->second, now) >= needed;
  for (auto it = containers_.begin(); it != containers_.end(); ++it) {
    if (FreeSlots(it->second) > 0 && WarmAt(it->second, now) && Until(it->second, now) >= needed) {
      it->second.held.emplace_back(task);
      return true;
    }
  }
  return false;
}

absl::Time ContainerPool::FreeWarmUntil(absl::Time now) const {
  absl::Time until = absl::InfinitePast();
  for (const auto& [id, c] : containers_) {
    if (FreeSlots(c) > 0 && WarmAt(c, now)) until = std::max(until, Until(c, now));
  }
  return until;
}

absl::Time ContainerPool::WarmUntil(absl::Time now) const {
  absl::Time until = absl::InfinitePast();
  for (const auto& [id, c] : containers_) {
    if (WarmAt(c, now)) until = std::max(until, Until(c, now));
  }
  return until;
}

absl::Time ContainerPool::HeldUntil(absl::string_view task, absl::Time now) const {
  for (const auto& [id, c] : containers_) {
    for (const std::string& t : c.held) {
      if (t == task) return WarmAt(c, now) ? Until(c, now) : absl::InfinitePast();
    }
  }
  return absl::InfinitePast();
}

}  // namespace prewarm
