#pragma once

// The simulated serverless platform of the policy comparison: per service, containers that take a
// cold start to become ready, serve `concurrency` requests each, and are reclaimed after
// `keep_alive` of idleness (Knative's scale to zero). Everything happens in simulated time on one
// EventQueue; nothing here knows about prewarm.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <queue>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "predictor/clock.h"
#include "predictor/random.h"

namespace prewarm::sim {

// The simulator's own events in simulated time, in (time, insertion) order.
class EventQueue {
 public:
  void At(absl::Time t, std::function<void()> fn);
  bool empty() const { return heap_.empty(); }
  // InfiniteFuture when empty.
  absl::Time next() const { return heap_.empty() ? absl::InfiniteFuture() : heap_.top().at; }
  // Pops the earliest event and runs it. REQUIRES: !empty().
  void RunNext();
  size_t size() const { return heap_.size(); }

 private:
  struct Event {
    absl::Time at;
    uint64_t seq;
    std::function<void()> fn;
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.at != b.at ? a.at > b.at : a.seq > b.seq;
    }
  };
  std::priority_queue<Event, std::vector<Event>, Later> heap_;
  uint64_t seq_ = 0;
};

struct ServiceConfig {
  std::string name;
  // Mean cold start; each container's start takes cold_start * U(1 - jitter, 1 + jitter).
  absl::Duration cold_start = absl::Seconds(1);
  double cold_start_jitter = 0.15;
  // Idle time after which a container is reclaimed (scaled to zero when it was the last).
  absl::Duration keep_alive = absl::Seconds(60);
  // Requests one container serves at once (Knative containerConcurrency).
  int concurrency = 1;
};

struct PlatformStats {
  // Idle warm container-seconds a policy caused: containers ready and unused after a warm-up
  // started or refreshed them, spare containers the autoscaler started while a warm-up was
  // queued (a task arriving during its warm-up's cold start), min-scale containers whenever they
  // are not busy, and keep-alive extended beyond the platform's own keep_alive. Counted inside
  // the measurement window only.
  double policy_idle_s = 0;
  // The platform's own idle time, which every policy has, warm-ups or not: the first keep_alive
  // seconds a container idles after serving a task, and spare containers the autoscaler started
  // for queued task requests that an older container served first.
  double platform_idle_s = 0;
  // policy_idle_s, by cause: waiting after a warm-up; spares of warm-ups; min-scale; keep-alive
  // beyond the platform's own.
  double idle_after_warmup_s = 0;
  double idle_warmup_spare_s = 0;
  double idle_pinned_s = 0;
  double idle_extended_s = 0;
  int64_t containers_started = 0;
  int64_t warmup_requests = 0;
};

struct PlatformOptions {
  // True (the default, strict): a warm-up is a request like any other, so with concurrency 1 a
  // task arriving while its warm-up's container is still starting makes the autoscaler start a
  // second container (Knative counts both requests in the activator; Lambda gives the task its
  // own environment); the first container serves the warm-up, then the task, and the second one
  // idles until reclaimed. (A warm container busy with a warm-up only, which takes 5 ms, counts
  // as free capacity.) False (lenient): a queued task and a queued warm-up share one
  // container start (demand = max(tasks, warm-ups) instead of their sum), so the task just waits
  // for the container its warm-up started.
  bool warmup_holds_slot = true;
};

class Platform {
 public:
  // `waited`: from the request's arrival to the moment a container slot took it (0 when a warm
  // container was free).
  using StartFn = std::function<void(absl::Duration waited)>;

  Platform(EventQueue& events, const Clock& clock, std::vector<ServiceConfig> services,
           uint64_t seed, PlatformOptions options = {});

  int service_count() const { return static_cast<int>(services_.size()); }
  const ServiceConfig& config(int s) const { return services_[s].cfg; }

  // A task's call to service `s`: waits for a container slot (starting a container when none is
  // free or starting), holds it for `work`, releases it, then runs `done`.
  void Invoke(int s, absl::Duration work, StartFn started, std::function<void()> done);
  // A warm-up request (a GET /warmup): served like any request, in `warm_latency` once it has a
  // slot; `done(latency)` with the latency from now to the answer.
  void Warmup(int s, std::function<void(absl::Duration latency)> done);
  // Min-scale 1: a container of `s` that is ready now and never reclaimed.
  void Pin(int s);
  // Idle containers of `s` stay at least until `until` (a keep-alive policy's window).
  void SetKeepUntil(int s, absl::Time until);
  // Reclaims every idle, unpinned container of `s` now.
  void ReleaseIdle(int s);
  // Containers of `s` that are ready and idle.
  int IdleContainers(int s) const;

  // Idle time is counted inside [start, end] only.
  void StartMeasurement(absl::Time start) { measure_start_ = start; }
  void EndMeasurement(absl::Time end);

  const PlatformStats& stats() const { return stats_; }
  static constexpr absl::Duration kWarmLatency = absl::Milliseconds(5);

 private:
  enum class IdleKind { kTail, kWarmup, kWarmupSpare, kPinned, kSpare };
  struct Container {
    bool ready = false;
    // Started while a warm-up request was queued: if it turns out spare, the warm-up is why.
    bool started_for_warmup = false;
    bool pinned = false;
    int active = 0;
    int active_warmups = 0;  // of `active`: warm-ups, each done within kWarmLatency
    absl::Time idle_since;
    IdleKind idle_kind = IdleKind::kWarmup;
    uint64_t reclaim_generation = 0;
  };
  struct Request {
    bool warmup = false;
    absl::Time arrival;
    absl::Duration work;
    StartFn started;
    std::function<void()> done;
    std::function<void(absl::Duration)> warm_done;
  };
  struct Service {
    ServiceConfig cfg;
    std::map<uint64_t, Container> containers;  // by id: deterministic iteration
    std::deque<Request> queue;                 // waiting for a slot, FIFO (the activator)
    int starting = 0;
    absl::Time keep_until = absl::InfinitePast();
  };

  absl::Time Now() const { return clock_.Now(); }
  void Enqueue(int s, Request r);
  void Dispatch(int s);
  void Autoscale(int s);
  void StartContainer(int s);
  void OnReady(int s, uint64_t id);
  void Serve(int s, uint64_t id, Container& c, Request r);
  void Release(int s, uint64_t id, bool was_task);
  void ScheduleReclaim(int s, uint64_t id, Container& c);
  void Reclaim(int s, uint64_t id, uint64_t generation);
  // Counts the idle segment [c.idle_since, until] and restarts it at `until`.
  void CloseIdle(const Service& svc, Container& c, absl::Time until);

  EventQueue& events_;
  const Clock& clock_;
  const PlatformOptions options_;
  std::vector<Service> services_;
  Rng rng_;
  uint64_t next_id_ = 1;
  absl::Time measure_start_ = absl::InfiniteFuture();
  absl::Time measure_end_ = absl::InfiniteFuture();
  PlatformStats stats_;
};

}  // namespace prewarm::sim
