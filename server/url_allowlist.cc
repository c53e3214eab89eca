#include "server/url_allowlist.h"

#include <arpa/inet.h>
#include <curl/curl.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "predictor/check.h"

namespace prewarm {
namespace {

// Longer URLs are refused: no warm-up endpoint needs one, and it bounds what we echo and store.
constexpr size_t kMaxUrlLength = 2048;
constexpr size_t kMaxHostNameLength = 253;
constexpr size_t kMaxLabelLength = 63;

// Long strings are cut in messages so that an error never echoes a megabyte back.
std::string Shown(absl::string_view s) {
  constexpr size_t kShown = 80;
  if (s.size() <= kShown) return absl::StrFormat("'%s'", absl::CHexEscape(s));
  return absl::StrFormat("'%s...'", absl::CHexEscape(s.substr(0, kShown)));
}

absl::Status Malformed(absl::string_view url, absl::string_view reason) {
  return absl::InvalidArgumentError(
      absl::StrFormat("warmup_url %s is malformed: %s", Shown(url), reason));
}

// "0", "255", "0x7f", "0X": what inet_aton() and the WHATWG URL parser read as a number.
bool IsNumericLabel(absl::string_view label) {
  if (label.empty()) return false;
  if (absl::StartsWithIgnoreCase(label, "0x")) {
    return std::all_of(label.begin() + 2, label.end(),
                       [](char c) { return absl::ascii_isxdigit(c); });
  }
  return std::all_of(label.begin(), label.end(), [](char c) { return absl::ascii_isdigit(c); });
}

using Ip = std::array<uint8_t, 16>;

// Only the canonical form: four decimal parts 0..255 without leading zeros (which inet_aton()
// would read as octal).
std::optional<Ip> ParseDottedQuad(absl::string_view s) {
  std::vector<absl::string_view> parts = absl::StrSplit(s, '.');
  if (parts.size() != 4) return std::nullopt;
  Ip ip{};
  ip[10] = ip[11] = 0xff;  // IPv4-mapped
  for (int i = 0; i < 4; ++i) {
    absl::string_view part = parts[i];
    if (part.empty() || part.size() > 3) return std::nullopt;
    if (part.size() > 1 && part[0] == '0') return std::nullopt;
    int value = 0;
    for (char c : part) {
      if (!absl::ascii_isdigit(c)) return std::nullopt;
      value = value * 10 + (c - '0');
    }
    if (value > 255) return std::nullopt;
    ip[12 + i] = static_cast<uint8_t>(value);
  }
  return ip;
}

// Hex digits, colons and an optional trailing dotted quad; no zone id ("%eth0").
std::optional<Ip> ParseIpv6(absl::string_view s) {
  if (s.empty() || s.size() > 45) return std::nullopt;
  for (char c : s) {
    if (!absl::ascii_isxdigit(c) && c != ':' && c != '.') return std::nullopt;
  }
  Ip ip{};
  if (inet_pton(AF_INET6, std::string(s).c_str(), ip.data()) != 1) return std::nullopt;
  return ip;
}

// Why `name` (lowercase, no trailing dot) is not an acceptable DNS host name; empty when it is.
std::string HostNameProblem(absl::string_view name) {
  if (name.empty()) return "it is empty";
  if (name.size() > kMaxHostNameLength) return "it is longer than 253 characters";
  std::vector<absl::string_view> labels = absl::StrSplit(name, '.');
  for (absl::string_view label : labels) {
    if (label.empty()) return "it has an empty label";
    if (label.size() > kMaxLabelLength) return "a label is longer than 63 characters";
    for (char c : label) {
      if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '-') {
        return absl::StrFormat("it contains '%c'; host names are letters, digits, '-' and '.'", c);
      }
    }
    if (label.front() == '-' || label.back() == '-') return "a label starts or ends with '-'";
  }
  // Resolvers read "2130706433", "0x7f.1" or "127.1" as addresses: only a dotted quad may be
  // numeric, or the address would slip past the CIDR rules.
  if (IsNumericLabel(labels.back())) return "a numeric host must be a dotted-quad IPv4 address";
  return "";
}

// A lowercase name without its trailing dot ("Api.Example.COM." -> "api.example.com").
std::string NormalizedName(absl::string_view name) {
  std::string normalized = absl::AsciiStrToLower(name);
  if (!normalized.empty() && normalized.back() == '.') normalized.pop_back();
  return normalized;
}

bool IsSchemeChar(char c) { return absl::ascii_isalnum(c) || c == '+' || c == '-' || c == '.'; }

struct CurlUrlDeleter {
  void operator()(CURLU* url) const { curl_url_cleanup(url); }
};

// One part of a URL as libcurl reads it; nullopt when the URL has no such part.
std::optional<std::string> CurlPart(CURLU* url, CURLUPart part) {
  char* value = nullptr;
  if (curl_url_get(url, part, &value, 0) != CURLUE_OK || value == nullptr) return std::nullopt;
  std::string result(value);
  curl_free(value);
  return result;
}

struct ParsedUrl {
  std::string host;  // as written, lowercased: for messages
  std::string name;  // normalised host name; empty when the host is an IP literal
  std::optional<Ip> ip;
};

// libcurl's URL parser (curl_url) is the parse of record: the host and port checked here are the
// ones libcurl gives, so they are where the warmer's transfer connects. What libcurl would mend or
// quietly rewrite is refused on top, and for that the authority is looked at as written: libcurl
// decodes "local%68ost" to "localhost", reads "2130706433" and "0x7f.1" as 127.0.0.1, takes
// "http:/h" and "http:///h" for "http://h" and drops an empty port ("h:/"). A host as libcurl reads
// it must equal the host as written.
absl::StatusOr<ParsedUrl> ParseUrl(absl::string_view url, const std::vector<std::string>& schemes) {
  if (url.empty()) return absl::InvalidArgumentError("warmup_url is empty");
  if (url.size() > kMaxUrlLength) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "warmup_url %s is %d bytes long; the limit is %d", Shown(url), url.size(), kMaxUrlLength));
  }
  for (char c : url) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return Malformed(url, "it contains whitespace, a control character or a non-ASCII byte");
    }
    // Browsers read '\' as '/'; refusing it leaves no room for parsers to disagree.
    if (c == '\\') return Malformed(url, "it contains a backslash");
  }

  // The scheme first, so that "javascript:x" is refused for its scheme, not its shape.
  size_t colon = url.find(':');
  if (colon == absl::string_view::npos || colon == 0 || !absl::ascii_isalpha(url[0]) ||
      !std::all_of(url.begin(), url.begin() + colon, IsSchemeChar)) {
    return Malformed(url, "expected scheme://host[:port]/path");
  }
  std::string scheme = absl::AsciiStrToLower(url.substr(0, colon));
  if (std::find(schemes.begin(), schemes.end(), scheme) == schemes.end()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("warmup_url scheme %s is not allowed (allowed: %s)", Shown(scheme),
                        absl::StrJoin(schemes, ", ")));
  }
  absl::string_view rest = url.substr(colon + 1);
  if (!absl::ConsumePrefix(&rest, "//")) {
    return Malformed(url, "expected scheme://host[:port]/path");
  }

  // The authority as written: host[:port] or [ipv6][:port], up to the path, query or fragment.
  absl::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (absl::StrContains(authority, '@')) {
    return Malformed(url, "userinfo ('user@') is not allowed");
  }
  absl::string_view written_host = authority;
  absl::string_view port;
  bool has_port = false;
  const bool bracketed = absl::StartsWith(authority, "[");
  std::optional<Ip> written_ip;  // when bracketed
  if (bracketed) {
    size_t close = authority.find(']');
    if (close == absl::string_view::npos) return Malformed(url, "an IPv6 literal lacks its ']'");
    written_host = authority.substr(0, close + 1);
    absl::string_view literal = authority.substr(1, close - 1);
    if (absl::StrContains(literal, '%')) {
      return Malformed(url, absl::StrFormat("host %s is not a valid IPv6 address: it has a zone id",
                                            Shown(written_host)));
    }
    written_ip = ParseIpv6(literal);
    if (!written_ip) {
      return Malformed(url,
                       absl::StrFormat("host %s is not a valid IPv6 address", Shown(written_host)));
    }
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty() && !absl::ConsumePrefix(&after, ":")) {
      return Malformed(url, "junk after the IPv6 literal");
    }
    has_port = written_host.size() < authority.size();
    port = after;
  } else if (size_t port_colon = authority.find(':'); port_colon != absl::string_view::npos) {
    written_host = authority.substr(0, port_colon);
    port = authority.substr(port_colon + 1);
    has_port = true;
  }
  if (written_host.empty()) return Malformed(url, "the host is empty");
  auto bad_port = [&] {
    return Malformed(url, absl::StrFormat("port %s is not a number in 1..65535", Shown(port)));
  };
  ParsedUrl parsed;
  parsed.host = absl::AsciiStrToLower(written_host);
  if (!bracketed && !ParseDottedQuad(NormalizedName(written_host))) {
    std::string problem = HostNameProblem(NormalizedName(written_host));
    if (!problem.empty()) {
      return Malformed(url, absl::StrFormat("host %s is not a valid host name: %s",
                                            Shown(written_host), problem));
    }
  }

  std::unique_ptr<CURLU, CurlUrlDeleter> curl_url_handle(curl_url());
  if (curl_url_handle == nullptr) return absl::ResourceExhaustedError("curl_url() failed");
  CURLU* parser = curl_url_handle.get();
  CURLUcode code =
      curl_url_set(parser, CURLUPART_URL, std::string(url).c_str(), CURLU_DISALLOW_USER);
  switch (code) {
    case CURLUE_OK:
      break;
    case CURLUE_BAD_PORT_NUMBER:
      return bad_port();
    case CURLUE_BAD_IPV6:
      return Malformed(url,
                       absl::StrFormat("host %s is not a valid IPv6 address", Shown(written_host)));
    case CURLUE_USER_NOT_ALLOWED:
      return Malformed(url, "userinfo ('user@') is not allowed");
    case CURLUE_OUT_OF_MEMORY:
      return absl::ResourceExhaustedError("libcurl ran out of memory parsing a warmup_url");
    default:
      return Malformed(url,
                       absl::StrFormat("libcurl cannot parse it: %s", curl_url_strerror(code)));
  }

  std::optional<std::string> host = CurlPart(parser, CURLUPART_HOST);
  if (!host) return Malformed(url, "the host is empty");
  std::string curl_host = absl::AsciiStrToLower(*host);
  if (bracketed) {
    // libcurl may rewrite the literal ("0:0:0:0:0:0:0:1" as "::1"): compare the addresses.
    absl::string_view literal = curl_host;
    absl::ConsumePrefix(&literal, "[");
    absl::ConsumeSuffix(&literal, "]");
    parsed.ip = ParseIpv6(literal);
    if (!parsed.ip || *parsed.ip != *written_ip) {
      return Malformed(url, absl::StrFormat("libcurl reads host %s as %s", Shown(written_host),
                                            Shown(curl_host)));
    }
  } else {
    if (curl_host != parsed.host) {
      return Malformed(url, absl::StrFormat("libcurl reads host %s as %s", Shown(written_host),
                                            Shown(curl_host)));
    }
    std::string name = NormalizedName(curl_host);
    parsed.ip = ParseDottedQuad(name);
    if (!parsed.ip) parsed.name = std::move(name);
  }

  // libcurl reads "host:" as the default port and accepts port 0: a written ':' needs 1..65535.
  if (has_port) {
    std::optional<std::string> curl_port = CurlPart(parser, CURLUPART_PORT);
    int value = 0;
    if (!curl_port || !absl::SimpleAtoi(*curl_port, &value) || value < 1 || value > 65535) {
      return bad_port();
    }
  }
  return parsed;
}

}  // namespace

bool UrlAllowlist::InNet(const Ip& ip, const Ip& net, int prefix_len) {
  int full_bytes = prefix_len / 8;
  if (!std::equal(ip.begin(), ip.begin() + full_bytes, net.begin())) return false;
  int rest_bits = prefix_len % 8;
  if (rest_bits == 0) return true;
  auto mask = static_cast<uint8_t>(0xff << (8 - rest_bits));
  return (ip[full_bytes] & mask) == (net[full_bytes] & mask);
}

bool UrlAllowlist::Allows(absl::string_view name, const Ip* ip) const {
  static const Ip kLoopbackV4 = *ParseDottedQuad("127.0.0.0");
  static const Ip kLoopbackV6 = *ParseIpv6("::1");
  for (const Rule& rule : rules_) {
    switch (rule.kind) {
      case Rule::Kind::kLoopback:
        if (ip != nullptr ? InNet(*ip, kLoopbackV4, 96 + 8) || *ip == kLoopbackV6
                          : name == "localhost") {
          return true;
        }
        break;
      case Rule::Kind::kExactName:
        if (ip == nullptr && name == rule.name) return true;
        break;
      case Rule::Kind::kNameSuffix:
        // rule.name starts with '.', and a valid name never does: at least one label precedes.
        if (ip == nullptr && absl::EndsWith(name, rule.name)) return true;
        break;
      case Rule::Kind::kIpNet:
        if (ip != nullptr && InNet(*ip, rule.net, rule.prefix_len)) return true;
        break;
    }
  }
  return false;
}

absl::StatusOr<UrlAllowlist> UrlAllowlist::Create(std::vector<std::string> rules,
                                                  std::vector<std::string> schemes) {
  UrlAllowlist allowlist;
  if (schemes.empty()) {
    return absl::InvalidArgumentError("the outbound allowlist allows no scheme");
  }
  for (std::string& scheme : schemes) {
    std::string normalized = absl::AsciiStrToLower(absl::StripAsciiWhitespace(scheme));
    if (normalized != "http" && normalized != "https") {
      return absl::InvalidArgumentError(absl::StrFormat(
          "outbound allowlist scheme %s is not supported (http, https)", Shown(scheme)));
    }
    allowlist.schemes_.push_back(std::move(normalized));
  }

  for (const std::string& given : rules) {
    std::string text = absl::AsciiStrToLower(absl::StripAsciiWhitespace(given));
    auto bad = [&](absl::string_view reason) {
      return absl::InvalidArgumentError(
          absl::StrFormat("outbound allowlist rule %s is invalid: %s", Shown(given), reason));
    };
    Rule rule;
    if (text.empty()) return bad("it is empty");
    if (text == "loopback") {
      rule.kind = Rule::Kind::kLoopback;
    } else if (size_t slash = text.find('/'); slash != std::string::npos) {
      absl::string_view address = absl::string_view(text).substr(0, slash);
      absl::string_view length = absl::string_view(text).substr(slash + 1);
      int max_len = 32;
      std::optional<Ip> net = ParseDottedQuad(address);
      if (!net) {
        net = ParseIpv6(address);
        max_len = 128;
      }
      if (!net) return bad("expected a network such as 10.0.0.0/8 or fd00::/8");
      int prefix_len = -1;
      if (length.empty() || length.size() > 3 ||
          !std::all_of(length.begin(), length.end(), absl::ascii_isdigit) ||
          !absl::SimpleAtoi(length, &prefix_len) || prefix_len > max_len) {
        return bad(absl::StrFormat("the prefix length must be 0..%d", max_len));
      }
      rule.kind = Rule::Kind::kIpNet;
      rule.net = *net;
      rule.prefix_len = prefix_len + (128 - max_len);
      // "10.0.0.1/8" is most likely a typo for a /32: refuse rather than guess.
      Ip masked{};
      for (int bit = 0; bit < rule.prefix_len; ++bit) {
        masked[bit / 8] |= rule.net[bit / 8] & (0x80 >> (bit % 8));
      }
      if (masked != rule.net) return bad("it has bits set beyond the prefix length");
    } else if (absl::StartsWith(text, "*.")) {
      std::string suffix = NormalizedName(absl::string_view(text).substr(2));
      std::string problem = HostNameProblem(suffix);
      if (!problem.empty()) return bad(absl::StrCat("the suffix is not a host name: ", problem));
      rule.kind = Rule::Kind::kNameSuffix;
      rule.name = absl::StrCat(".", suffix);
    } else if (absl::StrContains(text, '*')) {
      return bad("a wildcard must be a leading '*.' as in '*.svc.cluster.local'");
    } else if (std::optional<Ip> ip = ParseDottedQuad(text)) {
      rule.kind = Rule::Kind::kIpNet;
      rule.net = *ip;
      rule.prefix_len = 128;
    } else if (absl::StartsWith(text, "[") || absl::StrContains(text, ':')) {
      absl::string_view literal = text;
      if (absl::ConsumePrefix(&literal, "[") && !absl::ConsumeSuffix(&literal, "]")) {
        return bad("an IPv6 literal lacks its ']'");
      }
      std::optional<Ip> ip6 = ParseIpv6(literal);
      if (!ip6) return bad("it is not a valid IPv6 address");
      rule.kind = Rule::Kind::kIpNet;
      rule.net = *ip6;
      rule.prefix_len = 128;
    } else {
      std::string name = NormalizedName(text);
      std::string problem = HostNameProblem(name);
      if (!problem.empty()) return bad(absl::StrCat("it is not a host name: ", problem));
      rule.kind = Rule::Kind::kExactName;
      rule.name = std::move(name);
    }
    allowlist.rules_.push_back(std::move(rule));
    allowlist.rule_texts_.push_back(std::move(text));
  }
  return allowlist;
}

UrlAllowlist UrlAllowlist::Default() {
  absl::StatusOr<UrlAllowlist> allowlist = Create({"loopback", "*.svc.cluster.local"});
  PREWARM_CHECK(allowlist.ok(), "the default outbound allowlist must be valid");
  return *std::move(allowlist);
}

absl::Status UrlAllowlist::Check(absl::string_view url) const {
  absl::StatusOr<ParsedUrl> parsed = ParseUrl(url, schemes_);
  if (!parsed.ok()) return parsed.status();
  const Ip* ip = parsed->ip ? &*parsed->ip : nullptr;
  if (Allows(parsed->name, ip)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "warmup_url host %s is not in the outbound allowlist (%s)", Shown(parsed->host),
      rule_texts_.empty() ? "no rules: all outbound warm-ups are refused"
                          : absl::StrJoin(rule_texts_, ", ")));
}

}  // namespace prewarm
