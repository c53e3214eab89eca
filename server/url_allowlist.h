#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace prewarm {

// The outbound allowlist for warm-up URLs: prewarm sends HTTP to URLs its callers give it, so
// every URL must name an allowed scheme and host before it is fired (DESIGN.md §4, outbound
// safety).
//
// Rules (case-insensitive):
//   "loopback"              127.0.0.0/8, ::1 and the name "localhost"
//   "api.example.com"       exactly that host name
//   "*.svc.cluster.local"   any name with at least one label before the suffix: matches
//                           "a.ns.svc.cluster.local", not "svc.cluster.local"
//   "10.0.0.0/8", "fd00::/8"  an IPv4 or IPv6 CIDR (host bits must be zero)
//   "10.1.2.3", "::1"       a single IP address
//
// Names and addresses are matched as written in the URL: a name is never resolved, so CIDR rules
// apply to IP-literal hosts only and name rules to names only. An IPv4-mapped IPv6 literal
// ("[::ffff:10.1.2.3]") is matched as the IPv4 address it reaches.
//
// URLs are parsed by libcurl's URL API (curl_url), the parser the warmer's transfers use, so the
// host checked here is the host libcurl connects to. Stricter rules apply on top, and what libcurl
// would mend or rewrite is refused rather than checked in its rewritten form:
// scheme://host[:port][/path][?query][#fragment], printable ASCII only, no userinfo ("user@"), no
// backslash, no percent-encoding in the host, no IPv6 zone id, port 1..65535 when a ':' is
// written. A host whose last label is numeric must be a canonical dotted quad, so
// "http://2130706433/", "0x7f.1" and "0177.0.0.1" cannot smuggle in an address. Host names are
// compared lowercased and without a trailing dot.
//
// Immutable after creation, hence thread-safe.
class UrlAllowlist {
 public:
  // Fails with INVALID_ARGUMENT naming the first bad rule or scheme. `schemes` must be a non-empty
  // subset of {"http", "https"}: the warmer speaks nothing else. An empty `rules` refuses every
  // URL.
  static absl::StatusOr<UrlAllowlist> Create(std::vector<std::string> rules,
                                             std::vector<std::string> schemes = {"http", "https"});

  // Loopback and cluster-local Kubernetes names: {"loopback", "*.svc.cluster.local"}.
  static UrlAllowlist Default();

  // OK when `url` is well formed and its scheme and host are allowed. Otherwise INVALID_ARGUMENT
  // naming the offending part, e.g.
  //   "warmup_url host 'evil.com' is not in the outbound allowlist (loopback, *.svc.cluster.local)"
  absl::Status Check(absl::string_view url) const;

  // The rules as normalised at creation (trimmed, lowercased), in the order given.
  const std::vector<std::string>& rules() const { return rule_texts_; }
  const std::vector<std::string>& schemes() const { return schemes_; }

 private:
  // An IPv6 address; IPv4 addresses are held IPv4-mapped (::ffff:a.b.c.d) so one matcher serves
  // both families.
  using Ip = std::array<uint8_t, 16>;

  struct Rule {
    enum class Kind { kLoopback, kExactName, kNameSuffix, kIpNet };
    Kind kind;
    std::string name;    // kExactName: the name; kNameSuffix: ".suffix" with its leading dot.
    Ip net{};            // kIpNet
    int prefix_len = 0;  // kIpNet, over the 128-bit form
  };

  UrlAllowlist() = default;

  static bool InNet(const Ip& ip, const Ip& net, int prefix_len);
  bool Allows(absl::string_view name, const Ip* ip) const;

  std::vector<std::string> rule_texts_;
  std::vector<std::string> schemes_;
  std::vector<Rule> rules_;
};

}  // namespace prewarm
