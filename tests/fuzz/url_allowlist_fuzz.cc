// Fuzzes UrlAllowlist: rules and URLs from the input.
//
// The oracle is libcurl itself, since the allowlist's promise is that the host it checks is the
// host libcurl connects to: whenever a fixed allowlist accepts a URL, libcurl's own parse of that
// URL (curl_url) must give a host the allowlist allows (loopback, a cluster-local name, the named
// host, or an address inside the allowed nets). Arbitrary rule lists must either be refused with
// words or normalise stably: an allowlist made from its own rules() decides every URL the same.

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/url_allowlist.h"

namespace prewarm {
namespace {

#define FUZZ_CHECK(cond, ...)                                                   \
  do {                                                                          \
    if (!(cond)) {                                                              \
      std::fprintf(stderr, "url_allowlist_fuzz: check failed: %s: %s\n", #cond, \
                   absl::StrCat(__VA_ARGS__).c_str());                          \
      std::abort();                                                             \
    }                                                                           \
  } while (0)

// libcurl's host for `url`, lowercased and without brackets or a trailing dot; false when libcurl
// cannot parse it (then it would not connect anywhere).
bool CurlHost(const std::string& url, std::string* host) {
  CURLU* u = curl_url();
  bool ok = false;
  if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK) {
    char* h = nullptr;
    if (curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK && h != nullptr) {
      const std::string lower = absl::AsciiStrToLower(h);
      curl_free(h);
      absl::string_view s = lower;
      absl::ConsumePrefix(&s, "[");
      if (absl::ConsumeSuffix(&s, "]")) {
        // An IPv6 literal, possibly with a zone id: keep the address.
        s = s.substr(0, s.find('%'));
      }
      absl::ConsumeSuffix(&s, ".");
      *host = std::string(s);
      ok = true;
    }
  }
  curl_url_cleanup(u);
  return ok;
}

// Whether `host` (as libcurl parsed it) is an IPv4 address in net/len, also written IPv4-mapped.
bool InV4(const std::string& host, uint32_t net, int len) {
  in_addr a4;
  uint32_t v = 0;
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    v = ntohl(a4.s_addr);
  } else {
    in6_addr a6;
    if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) return false;
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a6.s6_addr, kMapped, 12) != 0) return false;
    v = (uint32_t{a6.s6_addr[12]} << 24) | (uint32_t{a6.s6_addr[13]} << 16) |
        (uint32_t{a6.s6_addr[14]} << 8) | a6.s6_addr[15];
  }
  const uint32_t mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
  return (v & mask) == (net & mask);
}

// Whether `host` is an IPv6 address whose first `bytes` bytes equal `prefix`.
bool InV6(const std::string& host, const uint8_t* prefix, int bytes) {
  in6_addr a6;
  if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) return false;
  return std::memcmp(a6.s6_addr, prefix, bytes) == 0;
}

bool IsLoopback(const std::string& host) {
  static const uint8_t kOne[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return host == "localhost" || InV4(host, 0x7f000000, 8) || InV6(host, kOne, 16);
}

bool IsClusterName(const std::string& host) {
  return absl::EndsWith(host, ".svc.cluster.local") && host.size() > strlen(".svc.cluster.local");
}

void CheckAgainstCurl(const UrlAllowlist& list, const std::string& url, bool custom) {
  if (!list.Check(url).ok()) return;
  std::string host;
  FUZZ_CHECK(CurlHost(url, &host), "allowed '", url, "' which libcurl cannot parse");
  static const uint8_t kFd[1] = {0xfd};
  const bool allowed =
      custom ? host == "api.example.com" || InV4(host, 0x0a000000, 8) || InV6(host, kFd, 1)
             : IsLoopback(host) || IsClusterName(host);
  FUZZ_CHECK(allowed, "allowed '", url, "' but libcurl connects to host '", host, "'");
}

}  // namespace
}  // namespace prewarm

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using prewarm::UrlAllowlist;
  static const UrlAllowlist kDefault = UrlAllowlist::Default();
  static const UrlAllowlist kCustom =
      UrlAllowlist::Create({"api.example.com", "10.0.0.0/8", "fd00::/8"}).value();

  // Line 1: the URL. Further lines: rules of an allowlist of the input's own.
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  const std::string url = lines[0];
  prewarm::CheckAgainstCurl(kDefault, url, false);
  prewarm::CheckAgainstCurl(kCustom, url, true);

  std::vector<std::string> rules(lines.begin() + 1, lines.end());
  absl::StatusOr<UrlAllowlist> list = UrlAllowlist::Create(rules);
  if (!list.ok()) {
    FUZZ_CHECK(list.status().code() == absl::StatusCode::kInvalidArgument &&
                   !list.status().message().empty(),
               list.status().ToString());
    return 0;
  }
  const absl::Status decided = list->Check(url);
  FUZZ_CHECK(decided.ok() || !decided.message().empty(), url);
  absl::StatusOr<UrlAllowlist> again = UrlAllowlist::Create(list->rules());
  FUZZ_CHECK(again.ok(), "its own normalised rules are refused: ", again.status().ToString());
  FUZZ_CHECK(again->rules() == list->rules(), "normalising the rules twice changes them");
  FUZZ_CHECK(again->Check(url).ok() == decided.ok(), "normalised rules decide '", url,
             "' differently");
  return 0;
}
