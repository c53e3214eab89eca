#pragma once

#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
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

// The registered warm-up targets and what is known of their warmth: until when each is expected
// to be warm after the warm-ups and calls prewarm has seen (shared by every run). Thread-safe.
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

  // What the planner needs of a service (registered or not).
  ServiceInfo Info(absl::string_view name) const ABSL_LOCKS_EXCLUDED(mu_);
  // The service is expected warm at least until `until` (a warm-up or a call).
  void MarkWarm(absl::string_view name, absl::Time until) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Time WarmUntil(absl::string_view name) const ABSL_LOCKS_EXCLUDED(mu_);
  // The warm threshold: warm-ups answering slower than this met a cold service.
  absl::Duration WarmLatency(absl::string_view name) const ABSL_LOCKS_EXCLUDED(mu_);

  const ServiceDefaults& defaults() const { return defaults_; }
  const UrlAllowlist& allowlist() const { return allowlist_; }

 private:
  absl::Status Validate(v1::Service& service) const;

  const UrlAllowlist allowlist_;
  const ServiceDefaults defaults_;
  mutable absl::Mutex mu_;
  absl::btree_map<std::string, v1::Service> services_ ABSL_GUARDED_BY(mu_);
  // Registered services only, so the map is bounded by max_services.
  absl::flat_hash_map<std::string, absl::Time> warm_until_ ABSL_GUARDED_BY(mu_);
};

}  // namespace prewarm
