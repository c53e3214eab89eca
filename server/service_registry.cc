#include "server/service_registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "predictor/names.h"
#include "server/proto_time.h"

namespace prewarm {
namespace {

// Bounds that catch unit mistakes (milliseconds sent as seconds) without limiting real use.
constexpr absl::Duration kMaxWarmupTimeout = absl::Minutes(10);
constexpr absl::Duration kMaxKeepAlive = absl::Hours(24);
constexpr absl::Duration kMaxColdStart = absl::Minutes(10);
constexpr int kMaxConcurrency = 10'000;

absl::Duration KeepAliveOf(const v1::Service& s) {
  return FromProto(s.keep_alive(), "").value_or(absl::Seconds(60));
}

// Checks an optional positive duration field and fills `fallback` when unset.
absl::Status CheckDuration(google::protobuf::Duration* field, bool present, absl::string_view name,
                           absl::Duration max, absl::Duration fallback) {
  if (!present) {
    if (fallback > absl::ZeroDuration()) *field = ToProtoDuration(fallback);
    return absl::OkStatus();
  }
  absl::StatusOr<absl::Duration> d = FromProto(*field, name);
  if (!d.ok()) return d.status();
  if (*d <= absl::ZeroDuration() || *d > max) {
    return absl::InvalidArgumentError(absl::StrCat(name, " is ", absl::FormatDuration(*d),
                                                   "; it must be in (0, ",
                                                   absl::FormatDuration(max), "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ServiceRegistry::Validate(v1::Service& s) const {
  if (absl::Status st = ValidateServiceName(s.name(), "service.name"); !st.ok()) return st;
  if (s.mode() == v1::WARMUP_MODE_UNSPECIFIED) s.set_mode(v1::WARMUP_MODE_MANAGED);
  if (!v1::WarmupMode_IsValid(s.mode())) {
    return absl::InvalidArgumentError(absl::StrCat("service.mode ", s.mode(), " is unknown"));
  }
  if (s.warmup_url().empty()) {
    if (s.mode() == v1::WARMUP_MODE_MANAGED) {
      return absl::InvalidArgumentError(
          absl::StrCat("service.warmup_url is required for managed service '", s.name(), "'"));
    }
  } else if (absl::Status st = allowlist_.Check(s.warmup_url()); !st.ok()) {
    // Delegated URLs are fired by the caller, but they are checked too: a watcher trusts them.
    return st;
  }
  if (s.warmup_method().empty()) s.set_warmup_method("GET");
  if (s.warmup_method() != "GET" && s.warmup_method() != "POST" && s.warmup_method() != "HEAD") {
    return absl::InvalidArgumentError(absl::StrCat("service.warmup_method '",
                                                   s.warmup_method().substr(0, 16),
                                                   "' is not one of GET, POST, HEAD"));
  }
  // Presence first: mutable_*() creates the field, and the order in which a call's arguments
  // are evaluated is unspecified.
  const bool has_timeout = s.has_warmup_timeout(), has_keep_alive = s.has_keep_alive(),
             has_prior = s.has_cold_start_prior(), has_warm_latency = s.has_warm_latency();
  if (absl::Status st =
          CheckDuration(s.mutable_warmup_timeout(), has_timeout, "service.warmup_timeout",
                        kMaxWarmupTimeout, defaults_.warmup_timeout);
      !st.ok()) {
    return st;
  }
  if (absl::Status st = CheckDuration(s.mutable_keep_alive(), has_keep_alive, "service.keep_alive",
                                      kMaxKeepAlive, defaults_.keep_alive);
      !st.ok()) {
    return st;
  }
  if (absl::Status st =
          CheckDuration(s.mutable_cold_start_prior(), has_prior, "service.cold_start_prior",
                        kMaxColdStart, absl::ZeroDuration());
      !st.ok()) {
    return st;
  }
  // No prior of its own: the server's configured prior applies (an empty Duration would be 0 s).
  if (!has_prior) s.clear_cold_start_prior();
  if (s.container_concurrency() < 0 || s.container_concurrency() > kMaxConcurrency) {
    return absl::InvalidArgumentError(
        absl::StrCat("service.container_concurrency is ", s.container_concurrency(),
                     "; it must be in [0, ", kMaxConcurrency, "] (0: unlimited)"));
  }
  return CheckDuration(s.mutable_warm_latency(), has_warm_latency, "service.warm_latency",
                       kMaxColdStart, defaults_.warm_latency);
}

absl::StatusOr<std::pair<v1::Service, bool>> ServiceRegistry::Register(v1::Service service) {
  if (absl::Status st = Validate(service); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  auto it = services_.find(service.name());
  const bool replaced = it != services_.end();
  if (!replaced && static_cast<int>(services_.size()) >= defaults_.max_services) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot register service '", service.name(),
                                                     "': the limit of ", defaults_.max_services,
                                                     " services is reached"));
  }
  services_[service.name()] = service;
  UpdatePool(service);
  return std::make_pair(std::move(service), replaced);
}

void ServiceRegistry::Restore(v1::Service service) {
  absl::MutexLock lock(&mu_);
  UpdatePool(service);
  std::string name = service.name();
  services_[std::move(name)] = std::move(service);
}

void ServiceRegistry::UpdatePool(const v1::Service& service) {
  auto [it, inserted] =
      pools_.try_emplace(service.name(), service.container_concurrency(), KeepAliveOf(service));
  if (!inserted) it->second.Configure(service.container_concurrency(), KeepAliveOf(service));
}

std::vector<v1::Service> ServiceRegistry::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Service> out;
  out.reserve(services_.size());
  for (const auto& [name, s] : services_) out.push_back(s);
  return out;
}

bool ServiceRegistry::Find(absl::string_view name, v1::Service* out) const {
  absl::MutexLock lock(&mu_);
  auto it = services_.find(name);
  if (it == services_.end()) return false;
  if (out != nullptr) *out = it->second;
  return true;
}

size_t ServiceRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return services_.size();
}

ServiceInfo ServiceRegistry::Info(absl::string_view name, absl::Time now) const {
  ServiceInfo info;
  info.keep_alive = defaults_.keep_alive;
  absl::MutexLock lock(&mu_);
  auto it = services_.find(name);
  if (it == services_.end()) return info;
  const v1::Service& s = it->second;
  info.warmable = true;
  // Validated at registration, so the conversions cannot fail.
  info.keep_alive = FromProto(s.keep_alive(), "").value_or(defaults_.keep_alive);
  info.container_concurrency = s.container_concurrency();
  if (s.has_cold_start_prior()) {
    info.cold_start_prior = FromProto(s.cold_start_prior(), "").value_or(absl::Seconds(1));
  }
  // With limited concurrency a free container is only this run's once claimed, at firing time.
  if (s.container_concurrency() == 0 && now != absl::InfinitePast()) {
    if (auto pool = pools_.find(name); pool != pools_.end()) {
      info.warm_until = pool->second.FreeWarmUntil(now);
    }
  }
  return info;
}

bool ServiceRegistry::AcquireContainer(absl::string_view name, absl::string_view task,
                                       absl::Time at, std::vector<std::string>* displaced) {
  absl::MutexLock lock(&mu_);
  auto it = pools_.find(name);
  return it != pools_.end() && it->second.Acquire(task, at, displaced);
}

void ServiceRegistry::ReleaseContainer(absl::string_view name, absl::string_view task,
                                       absl::Time at) {
  absl::MutexLock lock(&mu_);
  if (auto it = pools_.find(name); it != pools_.end()) it->second.Release(task, at);
}

void ServiceRegistry::ForgetTask(absl::string_view name, absl::string_view task) {
  absl::MutexLock lock(&mu_);
  if (auto it = pools_.find(name); it != pools_.end()) it->second.Forget(task);
}

void ServiceRegistry::WarmupAnswered(absl::string_view name, absl::string_view task, absl::Time at,
                                     bool cold) {
  absl::MutexLock lock(&mu_);
  if (auto it = pools_.find(name); it != pools_.end()) it->second.WarmupAnswered(task, at, cold);
}

bool ServiceRegistry::ClaimContainer(absl::string_view name, absl::string_view task, absl::Time now,
                                     absl::Time needed) {
  absl::MutexLock lock(&mu_);
  auto it = pools_.find(name);
  return it != pools_.end() && it->second.Claim(task, now, needed);
}

absl::Time ServiceRegistry::HeldUntil(absl::string_view name, absl::string_view task,
                                      absl::Time now) const {
  absl::MutexLock lock(&mu_);
  auto it = pools_.find(name);
  return it == pools_.end() ? absl::InfinitePast() : it->second.HeldUntil(task, now);
}

absl::Time ServiceRegistry::WarmUntil(absl::string_view name, absl::Time now) const {
  absl::MutexLock lock(&mu_);
  auto it = pools_.find(name);
  return it == pools_.end() ? absl::InfinitePast() : it->second.WarmUntil(now);
}

absl::Duration ServiceRegistry::WarmLatency(absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  auto it = services_.find(name);
  if (it == services_.end() || !it->second.has_warm_latency()) return defaults_.warm_latency;
  return FromProto(it->second.warm_latency(), "").value_or(defaults_.warm_latency);
}

}  // namespace prewarm
