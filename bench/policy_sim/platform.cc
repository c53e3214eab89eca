#include "bench/policy_sim/platform.h"

#include <algorithm>
#include <utility>

namespace prewarm::sim {

void EventQueue::At(absl::Time t, std::function<void()> fn) {
  heap_.push(Event{t, seq_++, std::move(fn)});
}

void EventQueue::RunNext() {
  // Moved out before running: the event may push new ones.
  std::function<void()> fn = std::move(const_cast<Event&>(heap_.top()).fn);
  heap_.pop();
  fn();
}

Platform::Platform(EventQueue& events, const Clock& clock, std::vector<ServiceConfig> services,
                   uint64_t seed, PlatformOptions options)
    : events_(events), clock_(clock), options_(options), rng_(seed) {
  services_.resize(services.size());
  for (size_t i = 0; i < services.size(); ++i) services_[i].cfg = std::move(services[i]);
}

void Platform::Invoke(int s, absl::Duration work, StartFn started, std::function<void()> done) {
  Request r;
  r.arrival = Now();
  r.work = work;
  r.started = std::move(started);
  r.done = std::move(done);
  Enqueue(s, std::move(r));
}

void Platform::Warmup(int s, std::function<void(absl::Duration)> done) {
  ++stats_.warmup_requests;
  Request r;
  r.warmup = true;
  r.arrival = Now();
  r.warm_done = std::move(done);
  Enqueue(s, std::move(r));
}

void Platform::Enqueue(int s, Request r) {
  services_[s].queue.push_back(std::move(r));
  Dispatch(s);
  Autoscale(s);
}

void Platform::Dispatch(int s) {
  Service& svc = services_[s];
  const int cc = std::max(1, svc.cfg.concurrency);
  while (!svc.queue.empty()) {
    // Pack: a busy container with a free slot first, else the most recently idled one, so that
    // spare containers age out.
    uint64_t best = 0;
    const Container* chosen = nullptr;
    for (const auto& [id, c] : svc.containers) {
      if (!c.ready || c.active >= cc) continue;
      const bool better =
          chosen == nullptr || (c.active > 0 && chosen->active == 0) ||
          (c.active == 0 && chosen->active == 0 && c.idle_since >= chosen->idle_since) ||
          (c.active > 0 && chosen->active > 0 && c.active > chosen->active);
      if (better) {
        best = id;
        chosen = &c;
      }
    }
    if (chosen == nullptr) return;
    Request r = std::move(svc.queue.front());
    svc.queue.pop_front();
    Serve(s, best, svc.containers.at(best), std::move(r));
  }
}

void Platform::Autoscale(int s) {
  Service& svc = services_[s];
  const int cc = std::max(1, svc.cfg.concurrency);
  // Enough containers starting to take every queued request (the autoscaler reacting to the
  // activator's queue).
  int demand = static_cast<int>(svc.queue.size());
  if (!options_.warmup_holds_slot) {
    // Each queued task rides on a queued warm-up's container.
    int tasks = 0;
    for (const Request& r : svc.queue) tasks += !r.warmup;
    demand = std::max(tasks, demand - tasks);
  }
  // Containers busy with warm-ups only are free again within milliseconds.
  int soon_free = 0;
  for (const auto& [id, c] : svc.containers) {
    soon_free += c.ready && c.active > 0 && c.active == c.active_warmups;
  }
  const int needed = (demand + cc - 1) / cc - svc.starting - soon_free;
  for (int i = 0; i < needed; ++i) StartContainer(s);
}

void Platform::StartContainer(int s) {
  Service& svc = services_[s];
  const uint64_t id = next_id_++;
  Container c;
  for (const Request& r : svc.queue) c.started_for_warmup = c.started_for_warmup || r.warmup;
  svc.containers[id] = c;
  ++svc.starting;
  ++stats_.containers_started;
  const double j = svc.cfg.cold_start_jitter;
  const double factor = 1 - j + 2 * j * rng_.Uniform();
  events_.At(Now() + svc.cfg.cold_start * factor, [this, s, id] { OnReady(s, id); });
}

void Platform::OnReady(int s, uint64_t id) {
  Service& svc = services_[s];
  --svc.starting;
  Container& c = svc.containers.at(id);
  c.ready = true;
  c.idle_since = Now();
  // Unused on arrival: a spare started for a request that another container took. A warm-up
  // started it (its own, or a task's queued behind it), or the platform's autoscaler did.
  c.idle_kind = c.started_for_warmup ? IdleKind::kWarmupSpare : IdleKind::kSpare;
  Dispatch(s);
  // Dispatch never erases containers, so `c` is still valid.
  if (c.active == 0) ScheduleReclaim(s, id, c);
}

void Platform::Serve(int s, uint64_t id, Container& c, Request r) {
  Service& svc = services_[s];
  if (c.active == 0) CloseIdle(svc, c, Now());
  ++c.active;
  ++c.reclaim_generation;  // Busy: no reclaim.
  if (r.warmup) {
    ++c.active_warmups;
    const absl::Duration latency = Now() + kWarmLatency - r.arrival;
    events_.At(Now() + kWarmLatency, [this, s, id, done = std::move(r.warm_done), latency] {
      Release(s, id, /*was_task=*/false);
      done(latency);
    });
    return;
  }
  r.started(Now() - r.arrival);
  events_.At(Now() + r.work, [this, s, id, done = std::move(r.done)] {
    Release(s, id, /*was_task=*/true);
    done();
  });
}

void Platform::Release(int s, uint64_t id, bool was_task) {
  Service& svc = services_[s];
  Container& c = svc.containers.at(id);
  --c.active;
  if (!was_task) --c.active_warmups;
  if (c.active > 0) {
    Dispatch(s);
    return;
  }
  c.idle_since = Now();
  c.idle_kind = c.pinned ? IdleKind::kPinned : was_task ? IdleKind::kTail : IdleKind::kWarmup;
  Dispatch(s);
  if (c.active == 0) ScheduleReclaim(s, id, c);
}

void Platform::ScheduleReclaim(int s, uint64_t id, Container& c) {
  if (c.pinned) return;
  const Service& svc = services_[s];
  const absl::Time at = std::max(c.idle_since + svc.cfg.keep_alive, svc.keep_until);
  const uint64_t generation = ++c.reclaim_generation;
  events_.At(at, [this, s, id, generation] { Reclaim(s, id, generation); });
}

void Platform::Reclaim(int s, uint64_t id, uint64_t generation) {
  Service& svc = services_[s];
  auto it = svc.containers.find(id);
  if (it == svc.containers.end()) return;
  Container& c = it->second;
  if (c.reclaim_generation != generation || c.active > 0 || !c.ready || c.pinned) return;
  CloseIdle(svc, c, Now());
  svc.containers.erase(it);
}

void Platform::Pin(int s) {
  Service& svc = services_[s];
  const uint64_t id = next_id_++;
  Container c;
  c.ready = true;
  c.pinned = true;
  c.idle_since = Now();
  c.idle_kind = IdleKind::kPinned;
  svc.containers[id] = c;
  ++stats_.containers_started;
  Dispatch(s);
}

void Platform::SetKeepUntil(int s, absl::Time until) {
  Service& svc = services_[s];
  svc.keep_until = until;
  for (auto& [id, c] : svc.containers) {
    if (c.ready && c.active == 0) ScheduleReclaim(s, id, c);
  }
}

void Platform::ReleaseIdle(int s) {
  Service& svc = services_[s];
  for (auto it = svc.containers.begin(); it != svc.containers.end();) {
    Container& c = it->second;
    if (c.ready && c.active == 0 && !c.pinned) {
      CloseIdle(svc, c, Now());
      it = svc.containers.erase(it);
    } else {
      ++it;
    }
  }
}

int Platform::IdleContainers(int s) const {
  int n = 0;
  for (const auto& [id, c] : services_[s].containers) n += c.ready && c.active == 0;
  return n;
}

void Platform::CloseIdle(const Service& svc, Container& c, absl::Time until) {
  const absl::Time from = c.idle_since;
  c.idle_since = until;
  auto clipped = [&](absl::Time a, absl::Time b) {
    a = std::max(a, measure_start_);
    b = std::min(b, measure_end_);
    return b > a ? absl::ToDoubleSeconds(b - a) : 0.0;
  };
  switch (c.idle_kind) {
    case IdleKind::kSpare:
      stats_.platform_idle_s += clipped(from, until);
      return;
    case IdleKind::kTail: {
      // The platform's keep-alive is everyone's; only idling beyond it is a policy's doing.
      const absl::Time tail_end = std::min(until, from + svc.cfg.keep_alive);
      stats_.platform_idle_s += clipped(from, tail_end);
      const double extended = clipped(tail_end, until);
      stats_.idle_extended_s += extended;
      stats_.policy_idle_s += extended;
      return;
    }
    case IdleKind::kWarmup:
      stats_.idle_after_warmup_s += clipped(from, until);
      break;
    case IdleKind::kWarmupSpare:
      stats_.idle_warmup_spare_s += clipped(from, until);
      break;
    case IdleKind::kPinned:
      stats_.idle_pinned_s += clipped(from, until);
      break;
  }
  stats_.policy_idle_s += clipped(from, until);
}

void Platform::EndMeasurement(absl::Time end) {
  measure_end_ = end;
  for (Service& svc : services_) {
    for (auto& [id, c] : svc.containers) {
      if (c.ready && c.active == 0) CloseIdle(svc, c, std::max(end, c.idle_since));
    }
  }
}

}  // namespace prewarm::sim
