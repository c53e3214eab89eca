#pragma once

#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "predictor/container_pool.h"
#include "predictor/run_model.h"
#include "prewarm/v1/prewarm.pb.h"
#include "server/url_allowlist.h"

namespace prewarm {

// Defaults filled into a registration that leaves them unset, and the bounds a registration must
// respect.
struct ServiceDefaults {
  absl::Duration warmup_timeout = absl::Seconds(30);
  absl::Duration keep_alive = absl::Seconds(60);
  absl::Duration warm_latency = absl::Milliseconds(50);
  int max_services = 1000;
};

// The registered warm-up targets and what is known of their containers (shared by every run):
// which the warm-ups and calls prewarm has seen keep warm, busy, or held for a task. Thread-safe.
class ServiceRegistry {
 public:
  ServiceRegistry(UrlAllowlist allowlist, ServiceDefaults defaults)
      : allowlist_(std::move(allowlist)), defaults_(defaults) {}

  // Validates `service`, fills its defaults and stores it. INVALID_ARGUMENT names the field (bad
  // name, missing or refused URL, bad method, out-of-range durations); RESOURCE_EXHAUSTED past
  // max_services. Returns the stored service and whether it replaced one.
  absl::StatusOr<std::pair<v1::Service, bool>> Register(v1::Service service)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Stores an already validated service (restored from the store).
  void Restore(v1::Service service) ABSL_LOCKS_EXCLUDED(mu_);

  std::vector<v1::Service> List() const ABSL_LOCKS_EXCLUDED(mu_);
  // False when no service of that name is registered.
  bool Find(absl::string_view name, v1::Service* out) const ABSL_LOCKS_EXCLUDED(mu_);
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);

  // What the planner needs of a service (registered or not). `warm_until` is what every run may
  // count on as of `now`: the warmth of a service with unlimited concurrency; InfinitePast for
  // one whose containers must be claimed (see ClaimContainer).
  ServiceInfo Info(absl::string_view name, absl::Time now = absl::InfinitePast()) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // The containers of registered services (ContainerPool; unregistered services are not
  // tracked). `task` names a task of a run ("run_id#index").
  // A task's call reached the service: true when a warm container took it; `displaced` gets the
  // tasks whose holds it ended (ContainerPool::Acquire).
  bool AcquireContainer(absl::string_view name, absl::string_view task, absl::Time at,
                        std::vector<std::string>* displaced) ABSL_LOCKS_EXCLUDED(mu_);
  void ReleaseContainer(absl::string_view name, absl::string_view task, absl::Time at)
      ABSL_LOCKS_EXCLUDED(mu_);
  void ForgetTask(absl::string_view name, absl::string_view task) ABSL_LOCKS_EXCLUDED(mu_);
  void WarmupAnswered(absl::string_view name, absl::string_view task, absl::Time at, bool cold)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Holds for `task` a free container warm at least until `needed`; false when none.
  bool ClaimContainer(absl::string_view name, absl::string_view task, absl::Time now,
                      absl::Time needed) ABSL_LOCKS_EXCLUDED(mu_);
  // Until when the container held for `task` stays warm (InfinitePast: none).
  absl::Time HeldUntil(absl::string_view name, absl::string_view task, absl::Time now) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Until when some container of the service stays warm, as of `now`.
  absl::Time WarmUntil(absl::string_view name, absl::Time now) const ABSL_LOCKS_EXCLUDED(mu_);
  // The warm threshold: warm-ups answering slower than this met a cold service.
  absl::Duration WarmLatency(absl::string_view name) const ABSL_LOCKS_EXCLUDED(mu_);

  const ServiceDefaults& defaults() const { return defaults_; }
  const UrlAllowlist& allowlist() const { return allowlist_; }

 private:
  absl::Status Validate(v1::Service& service) const;
  void UpdatePool(const v1::Service& service) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const UrlAllowlist allowlist_;
  const ServiceDefaults defaults_;
  mutable absl::Mutex mu_;
  absl::btree_map<std::string, v1::Service> services_ ABSL_GUARDED_BY(mu_);
  // Registered services only, so the map is bounded by max_services.
  absl::flat_hash_map<std::string, ContainerPool> pools_ ABSL_GUARDED_BY(mu_);
};

}  // namespace prewarm
