#include "server/service_registry.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/proto_time.h"
#include "server/url_allowlist.h"

namespace prewarm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::Service Managed(std::string name, std::string url = "http://127.0.0.1:8080/warmup") {
  v1::Service s;
  s.set_name(std::move(name));
  s.set_warmup_url(std::move(url));
  return s;
}

v1::Service Delegated(std::string name) {
  v1::Service s;
  s.set_name(std::move(name));
  s.set_mode(v1::WARMUP_MODE_DELEGATED);
  return s;
}

google::protobuf::Duration Secs(double s) { return ToProtoDuration(absl::Seconds(s)); }

absl::Duration AsDuration(const google::protobuf::Duration& d) {
  return FromProto(d, "test").value();
}

class ServiceRegistryTest : public ::testing::Test {
 protected:
  // Expects Register(s) to fail with INVALID_ARGUMENT and returns the message.
  std::string Refused(const v1::Service& s) {
    absl::StatusOr<std::pair<v1::Service, bool>> r = registry_.Register(s);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    return std::string(r.status().message());
  }

  ServiceDefaults defaults_{.warmup_timeout = absl::Seconds(20),
                            .keep_alive = absl::Seconds(75),
                            .warm_latency = absl::Milliseconds(40),
                            .max_services = 3};
  ServiceRegistry registry_{UrlAllowlist::Default(), defaults_};
};

TEST_F(ServiceRegistryTest, FillsDefaults) {
  auto r = registry_.Register(Managed("svc-a"));
  ASSERT_TRUE(r.ok()) << r.status();
  const v1::Service& s = r->first;
  EXPECT_FALSE(r->second);
  EXPECT_EQ(s.name(), "svc-a");
  EXPECT_EQ(s.mode(), v1::WARMUP_MODE_MANAGED);
  EXPECT_EQ(s.warmup_method(), "GET");
  EXPECT_EQ(AsDuration(s.warmup_timeout()), absl::Seconds(20));
  EXPECT_EQ(AsDuration(s.keep_alive()), absl::Seconds(75));
  EXPECT_EQ(AsDuration(s.warm_latency()), absl::Milliseconds(40));
  EXPECT_FALSE(s.has_cold_start_prior());  // No service-level prior: the global one applies.

  v1::Service stored;
  ASSERT_TRUE(registry_.Find("svc-a", &stored));
  EXPECT_EQ(stored.SerializeAsString(), s.SerializeAsString());
  EXPECT_EQ(registry_.size(), 1u);
}

TEST_F(ServiceRegistryTest, KeepsGivenValues) {
  v1::Service in = Managed("svc-a", "http://svc-a.default.svc.cluster.local/warmup");
  in.set_warmup_method("POST");
  *in.mutable_warmup_timeout() = Secs(5);
  *in.mutable_keep_alive() = Secs(90);
  *in.mutable_cold_start_prior() = Secs(3);
  *in.mutable_warm_latency() = Secs(0.1);
  auto r = registry_.Register(in);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->first.warmup_method(), "POST");
  EXPECT_EQ(AsDuration(r->first.warmup_timeout()), absl::Seconds(5));
  EXPECT_EQ(AsDuration(r->first.keep_alive()), absl::Seconds(90));
  EXPECT_EQ(AsDuration(r->first.cold_start_prior()), absl::Seconds(3));
  EXPECT_EQ(registry_.WarmLatency("svc-a"), absl::Milliseconds(100));
}

TEST_F(ServiceRegistryTest, DelegatedNeedsNoUrl) {
  auto r = registry_.Register(Delegated("lambda-a"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->first.mode(), v1::WARMUP_MODE_DELEGATED);
  EXPECT_TRUE(r->first.warmup_url().empty());
}

TEST_F(ServiceRegistryTest, BadNameIsRefusedNamingTheField) {
  EXPECT_THAT(Refused(Managed("")), HasSubstr("service.name"));
  EXPECT_THAT(Refused(Managed("has space")), HasSubstr("service.name"));
  EXPECT_THAT(Refused(Managed("slash/name")), HasSubstr("service.name"));
  EXPECT_THAT(Refused(Managed(std::string(129, 'a'))), HasSubstr("service.name"));
  EXPECT_TRUE(registry_.Register(Managed(std::string(128, 'a'))).ok());
}

TEST_F(ServiceRegistryTest, ManagedWithoutUrlIsRefused) {
  v1::Service s;
  s.set_name("svc-a");
  EXPECT_THAT(Refused(s), HasSubstr("service.warmup_url"));
  s.set_mode(v1::WARMUP_MODE_MANAGED);
  EXPECT_THAT(Refused(s), HasSubstr("svc-a"));
}

TEST_F(ServiceRegistryTest, UrlOutsideTheAllowlistIsRefusedNamingTheRules) {
  const std::string message = Refused(Managed("svc-a", "http://evil.example.com/warmup"));
  EXPECT_THAT(message, HasSubstr("warmup_url"));
  EXPECT_THAT(message, HasSubstr("evil.example.com"));
  EXPECT_THAT(message, HasSubstr("loopback"));
  EXPECT_THAT(message, HasSubstr("*.svc.cluster.local"));

  // Delegated URLs are checked too: a watcher trusts them.
  v1::Service d = Delegated("lambda-a");
  d.set_warmup_url("http://169.254.169.254/latest/meta-data");
  EXPECT_THAT(Refused(d), HasSubstr("169.254.169.254"));

  EXPECT_THAT(Refused(Managed("svc-a", "ftp://127.0.0.1/warmup")), HasSubstr("ftp"));
  EXPECT_EQ(registry_.size(), 0u);
}

TEST_F(ServiceRegistryTest, CustomAllowlist) {
  ServiceRegistry registry(UrlAllowlist::Create({"10.0.0.0/8"}).value(), defaults_);
  EXPECT_TRUE(registry.Register(Managed("svc-a", "http://10.1.2.3/warmup")).ok());
  auto refused = registry.Register(Managed("svc-b", "http://127.0.0.1/warmup"));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("10.0.0.0/8"));
}

TEST_F(ServiceRegistryTest, BadMethodIsRefused) {
  v1::Service s = Managed("svc-a");
  s.set_warmup_method("DELETE");
  const std::string message = Refused(s);
  EXPECT_THAT(message, HasSubstr("service.warmup_method"));
  EXPECT_THAT(message, HasSubstr("DELETE"));
  s.set_warmup_method("get");  // Methods are case-sensitive in HTTP.
  EXPECT_THAT(Refused(s), HasSubstr("service.warmup_method"));
  for (const char* ok : {"GET", "POST", "HEAD"}) {
    s.set_warmup_method(ok);
    EXPECT_TRUE(registry_.Register(s).ok()) << ok;
  }
}

TEST_F(ServiceRegistryTest, BadModeIsRefused) {
  v1::Service s = Managed("svc-a");
  s.set_mode(static_cast<v1::WarmupMode>(42));
  EXPECT_THAT(Refused(s), HasSubstr("service.mode"));
}

TEST_F(ServiceRegistryTest, DurationsOutOfRangeAreRefusedNamingTheField) {
  struct Case {
    const char* field;
    void (*set)(v1::Service&, google::protobuf::Duration);
  };
  const Case cases[] = {
      {"service.warmup_timeout",
       [](v1::Service& s, google::protobuf::Duration d) { *s.mutable_warmup_timeout() = d; }},
      {"service.keep_alive",
       [](v1::Service& s, google::protobuf::Duration d) { *s.mutable_keep_alive() = d; }},
      {"service.cold_start_prior",
       [](v1::Service& s, google::protobuf::Duration d) { *s.mutable_cold_start_prior() = d; }},
      {"service.warm_latency",
       [](v1::Service& s, google::protobuf::Duration d) { *s.mutable_warm_latency() = d; }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    v1::Service s = Managed("svc-a");
    c.set(s, Secs(0));
    EXPECT_THAT(Refused(s), HasSubstr(c.field));
    c.set(s, Secs(-1));
    EXPECT_THAT(Refused(s), HasSubstr(c.field));
    c.set(s, Secs(100'000));  // Beyond every bound (a unit mistake).
    EXPECT_THAT(Refused(s), HasSubstr(c.field));
    google::protobuf::Duration malformed;
    malformed.set_seconds(1);
    malformed.set_nanos(-5);  // Signs disagree.
    c.set(s, malformed);
    EXPECT_THAT(Refused(s), HasSubstr(c.field));
  }
  EXPECT_EQ(registry_.size(), 0u);
}

TEST_F(ServiceRegistryTest, LimitIsResourceExhaustedButReplacingIsAllowed) {
  ASSERT_TRUE(registry_.Register(Managed("a")).ok());
  ASSERT_TRUE(registry_.Register(Managed("b")).ok());
  ASSERT_TRUE(registry_.Register(Managed("c")).ok());
  auto refused = registry_.Register(Managed("d"));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), HasSubstr("'d'"));
  EXPECT_THAT(refused.status().message(), HasSubstr("3"));
  auto replaced = registry_.Register(Managed("c", "http://localhost:9/warmup"));
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_TRUE(replaced->second);
  EXPECT_EQ(registry_.size(), 3u);
}

TEST_F(ServiceRegistryTest, ReplaceFlagAndReplacedValue) {
  auto first = registry_.Register(Managed("svc-a", "http://127.0.0.1:1/a"));
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->second);
  auto second = registry_.Register(Managed("svc-a", "http://127.0.0.1:1/b"));
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second->second);
  v1::Service stored;
  ASSERT_TRUE(registry_.Find("svc-a", &stored));
  EXPECT_EQ(stored.warmup_url(), "http://127.0.0.1:1/b");
  EXPECT_EQ(registry_.size(), 1u);
}

TEST_F(ServiceRegistryTest, AFailedReplacementKeepsTheOldService) {
  ASSERT_TRUE(registry_.Register(Managed("svc-a", "http://127.0.0.1:1/a")).ok());
  Refused(Managed("svc-a", "http://evil.example.com/"));
  v1::Service stored;
  ASSERT_TRUE(registry_.Find("svc-a", &stored));
  EXPECT_EQ(stored.warmup_url(), "http://127.0.0.1:1/a");
}

TEST_F(ServiceRegistryTest, ListIsOrderedByName) {
  ASSERT_TRUE(registry_.Register(Managed("c")).ok());
  ASSERT_TRUE(registry_.Register(Managed("a")).ok());
  ASSERT_TRUE(registry_.Register(Delegated("b")).ok());
  std::vector<std::string> names;
  for (const v1::Service& s : registry_.List()) names.push_back(s.name());
  EXPECT_THAT(names, ElementsAre("a", "b", "c"));
  EXPECT_FALSE(registry_.Find("zzz", nullptr));
  EXPECT_TRUE(registry_.Find("a", nullptr));
}

TEST_F(ServiceRegistryTest, RestoreStoresWithoutTheLimit) {
  for (const char* name : {"a", "b", "c", "d"}) registry_.Restore(Managed(name));
  EXPECT_EQ(registry_.size(), 4u);
}

TEST_F(ServiceRegistryTest, ContainersAreTrackedForRegisteredServicesOnly) {
  const absl::Time t = absl::FromUnixSeconds(1'700'000'000);
  std::vector<std::string> displaced;
  EXPECT_FALSE(registry_.AcquireContainer("unknown", "run#0", t, &displaced));
  registry_.ReleaseContainer("unknown", "run#0", t);
  EXPECT_EQ(registry_.WarmUntil("unknown", t), absl::InfinitePast());

  ASSERT_TRUE(registry_.Register(Managed("svc-a")).ok());  // keep-alive 75 s by default here
  EXPECT_EQ(registry_.WarmUntil("svc-a", t), absl::InfinitePast());
  EXPECT_FALSE(registry_.AcquireContainer("svc-a", "run#0", t, &displaced));  // cold
  registry_.ReleaseContainer("svc-a", "run#0", t + absl::Seconds(10));
  EXPECT_EQ(registry_.WarmUntil("svc-a", t + absl::Seconds(10)), t + absl::Seconds(85));
  EXPECT_TRUE(registry_.AcquireContainer("svc-a", "run#1", t + absl::Seconds(20), &displaced));
  EXPECT_TRUE(displaced.empty());
}

TEST_F(ServiceRegistryTest, ContainerConcurrencyIsValidated) {
  v1::Service s = Managed("svc-a");
  s.set_container_concurrency(-1);
  absl::StatusOr<std::pair<v1::Service, bool>> r = registry_.Register(s);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("service.container_concurrency"));
  s.set_container_concurrency(10'001);
  EXPECT_EQ(registry_.Register(s).status().code(), absl::StatusCode::kInvalidArgument);
  s.set_container_concurrency(1);
  EXPECT_TRUE(registry_.Register(s).ok());
}

TEST_F(ServiceRegistryTest, WarmthIsSharedWithEveryRunOnlyWithUnlimitedConcurrency) {
  const absl::Time t = absl::FromUnixSeconds(1'700'000'000);
  v1::Service one = Managed("one");
  one.set_container_concurrency(1);
  ASSERT_TRUE(registry_.Register(one).ok());
  ASSERT_TRUE(registry_.Register(Managed("unlimited")).ok());
  for (const char* name : {"one", "unlimited"}) {
    registry_.WarmupAnswered(name, "run-1#0", t, /*cold=*/true);
    registry_.ForgetTask(name, "run-1#0");  // Its run is gone: the container is free.
  }
  // A limited service's free container is claimed when a warm-up comes due, not promised to
  // every plan.
  EXPECT_EQ(registry_.Info("one", t).warm_until, absl::InfinitePast());
  EXPECT_EQ(registry_.Info("unlimited", t).warm_until, t + absl::Seconds(75));
  EXPECT_EQ(registry_.Info("unlimited").warm_until, absl::InfinitePast());  // No time given.

  EXPECT_TRUE(registry_.ClaimContainer("one", "run-2#3", t, t + absl::Seconds(30)));
  EXPECT_EQ(registry_.HeldUntil("one", "run-2#3", t), t + absl::Seconds(75));
  EXPECT_FALSE(registry_.ClaimContainer("one", "run-3#3", t, t + absl::Seconds(30)));
}

TEST_F(ServiceRegistryTest, InfoOfUnknownService) {
  const ServiceInfo info = registry_.Info("nope");
  EXPECT_FALSE(info.warmable);
  EXPECT_EQ(info.keep_alive, absl::Seconds(75));
  EXPECT_FALSE(info.cold_start_prior.has_value());
  EXPECT_EQ(info.warm_until, absl::InfinitePast());
}

TEST_F(ServiceRegistryTest, InfoOfRegisteredService) {
  v1::Service s = Managed("svc-a");
  *s.mutable_keep_alive() = Secs(30);
  *s.mutable_cold_start_prior() = Secs(4);
  ASSERT_TRUE(registry_.Register(s).ok());
  ServiceInfo info = registry_.Info("svc-a");
  EXPECT_TRUE(info.warmable);
  EXPECT_EQ(info.keep_alive, absl::Seconds(30));
  ASSERT_TRUE(info.cold_start_prior.has_value());
  EXPECT_EQ(*info.cold_start_prior, absl::Seconds(4));
  EXPECT_EQ(info.warm_until, absl::InfinitePast());

  ASSERT_TRUE(registry_.Register(Delegated("lambda")).ok());
  info = registry_.Info("lambda");
  EXPECT_TRUE(info.warmable);
  EXPECT_EQ(info.keep_alive, absl::Seconds(75));  // The default, filled at registration.
}

TEST_F(ServiceRegistryTest, WarmLatencyDefaultsForUnknownServices) {
  EXPECT_EQ(registry_.WarmLatency("nope"), absl::Milliseconds(40));
}

}  // namespace
}  // namespace prewarm
