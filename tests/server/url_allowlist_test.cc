#include "server/url_allowlist.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prewarm {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

UrlAllowlist Make(std::vector<std::string> rules,
                  std::vector<std::string> schemes = {"http", "https"}) {
  absl::StatusOr<UrlAllowlist> allowlist = UrlAllowlist::Create(std::move(rules), schemes);
  EXPECT_TRUE(allowlist.ok()) << allowlist.status();
  return *std::move(allowlist);
}

// The message of a refused URL; fails the test when the URL is accepted.
std::string Refusal(const UrlAllowlist& allowlist, const std::string& url) {
  absl::Status status = allowlist.Check(url);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << url << ": " << status;
  return std::string(status.message());
}

TEST(UrlAllowlistTest, DefaultAllowsLoopbackAndClusterLocalNames) {
  UrlAllowlist allowlist = UrlAllowlist::Default();
  EXPECT_THAT(allowlist.rules(), ElementsAre("loopback", "*.svc.cluster.local"));
  for (const char* url : {
           "http://127.0.0.1:8080/warmup",
           "http://127.5.6.7/",
           "http://localhost/warmup?x=1#frag",
           "HTTP://LocalHost.:9000",
           "http://[::1]:9000/warmup",
           "http://[::ffff:127.0.0.1]/",
           "https://fn.default.svc.cluster.local/warmup",
           "http://a.b.svc.cluster.local.:80/",
       }) {
    EXPECT_TRUE(allowlist.Check(url).ok()) << url << ": " << allowlist.Check(url);
  }
}

TEST(UrlAllowlistTest, RefusalNamesTheHostAndTheRules) {
  UrlAllowlist allowlist = UrlAllowlist::Default();
  EXPECT_EQ(Refusal(allowlist, "http://evil.com/warmup"),
            "warmup_url host 'evil.com' is not in the outbound allowlist "
            "(loopback, *.svc.cluster.local)");
  EXPECT_THAT(Refusal(allowlist, "http://10.0.0.1/"), HasSubstr("host '10.0.0.1'"));
  EXPECT_THAT(Refusal(allowlist, "http://[fe80::1]/"), HasSubstr("host '[fe80::1]'"));
  EXPECT_THAT(Refusal(allowlist, "http://0.0.0.0/"), HasSubstr("host '0.0.0.0'"));
  // The wildcard needs a label before the suffix, on a label boundary.
  EXPECT_THAT(Refusal(allowlist, "http://svc.cluster.local/"), HasSubstr("not in the outbound"));
  EXPECT_THAT(Refusal(allowlist, "http://evilsvc.cluster.local/"), HasSubstr("not in the"));
  EXPECT_THAT(Refusal(allowlist, "http://localhost.evil.com/"), HasSubstr("not in the"));
  EXPECT_THAT(Refusal(allowlist, "http://a.svc.cluster.local.evil.com/"), HasSubstr("not in"));
}

TEST(UrlAllowlistTest, RefusesOtherSchemes) {
  UrlAllowlist allowlist = UrlAllowlist::Default();
  EXPECT_EQ(Refusal(allowlist, "ftp://localhost/x"),
            "warmup_url scheme 'ftp' is not allowed (allowed: http, https)");
  EXPECT_THAT(Refusal(allowlist, "file:///etc/passwd"), HasSubstr("scheme 'file'"));
  EXPECT_THAT(Refusal(allowlist, "gopher://127.0.0.1/"), HasSubstr("scheme 'gopher'"));
  EXPECT_THAT(Refusal(allowlist, "javascript:alert(1)"), HasSubstr("scheme 'javascript'"));
  EXPECT_THAT(Refusal(allowlist, "localhost/warmup"), HasSubstr("expected scheme://host"));
  EXPECT_THAT(Refusal(allowlist, "http:/localhost/"), HasSubstr("expected scheme://host"));
  EXPECT_THAT(Refusal(allowlist, "://localhost/"), HasSubstr("expected scheme://host"));

  UrlAllowlist https_only = Make({"loopback"}, {"HTTPS"});
  EXPECT_TRUE(https_only.Check("https://localhost/").ok());
  EXPECT_EQ(Refusal(https_only, "http://localhost/"),
            "warmup_url scheme 'http' is not allowed (allowed: https)");
}

TEST(UrlAllowlistTest, NumericHostTricksDoNotBypass) {
  // Each of these reaches 127.0.0.1 (or another address) through inet_aton()-style parsing.
  UrlAllowlist allowlist = Make({"api.example.com"});
  for (const char* url : {
           "http://2130706433/",
           "http://0x7f000001/",
           "http://0X7F000001/",
           "http://0177.0.0.1/",
           "http://127.1/",
           "http://127.0.0.01/",
           "http://0x7f.0.0.1/",
           "http://1.2.3.4.5/",
           "http://256.0.0.1/",
           "http://example.123/",
           "http://0x/",
       }) {
    EXPECT_THAT(Refusal(allowlist, url), HasSubstr("must be a dotted-quad")) << url;
  }
  // Even under a loopback rule a non-canonical form is refused rather than guessed at.
  EXPECT_THAT(Refusal(UrlAllowlist::Default(), "http://2130706433/"),
              AllOf(HasSubstr("host '2130706433'"), HasSubstr("dotted-quad")));
  // Numeric labels are fine when the name does not end in one.
  EXPECT_TRUE(Make({"*.example.com"}).Check("http://0.pool.example.com/").ok());
}

TEST(UrlAllowlistTest, RefusesUserinfo) {
  UrlAllowlist allowlist = UrlAllowlist::Default();
  for (const char* url : {
           "http://user@localhost/",
           "http://user:pass@localhost/",
           "http://localhost@evil.com/",
           "http://localhost:80@evil.com/",
           "http://@localhost/",
       }) {
    EXPECT_THAT(Refusal(allowlist, url), HasSubstr("userinfo ('user@') is not allowed")) << url;
  }
  // An '@' after the authority is part of the path or fragment and does not change the host.
  EXPECT_TRUE(allowlist.Check("http://localhost/a@b").ok());
  EXPECT_THAT(Refusal(allowlist, "http://evil.com#@localhost/"), HasSubstr("host 'evil.com'"));
  EXPECT_THAT(Refusal(allowlist, "http://evil.com?@localhost/"), HasSubstr("host 'evil.com'"));
}

TEST(UrlAllowlistTest, RefusesMalformedUrls) {
  UrlAllowlist allowlist = UrlAllowlist::Default();
  EXPECT_EQ(Refusal(allowlist, ""), "warmup_url is empty");
  EXPECT_THAT(Refusal(allowlist, "http://local host/"), HasSubstr("whitespace"));
  EXPECT_THAT(Refusal(allowlist, " http://localhost/"), HasSubstr("whitespace"));
  EXPECT_THAT(Refusal(allowlist, "http://localhost/\n"), HasSubstr("control character"));
  EXPECT_THAT(Refusal(allowlist, "http://localhost/\tx"), HasSubstr("control character"));
  EXPECT_THAT(Refusal(allowlist, std::string("http://localhost\0.evil.com/", 27)),
              HasSubstr("control character"));
  EXPECT_THAT(Refusal(allowlist, "http://l\u00f6calhost/"), HasSubstr("non-ASCII"));
  EXPECT_THAT(Refusal(allowlist, "http://localhost\\@evil.com/"), HasSubstr("backslash"));
  EXPECT_THAT(Refusal(allowlist, "http:///warmup"), HasSubstr("the host is empty"));
  EXPECT_THAT(Refusal(allowlist, "http://:8080/"), HasSubstr("the host is empty"));
  EXPECT_THAT(Refusal(allowlist, "http://local%68ost/"), HasSubstr("contains '%'"));
  EXPECT_THAT(Refusal(allowlist, "http://exa_mple.svc.cluster.local/"), HasSubstr("'_'"));
  EXPECT_THAT(Refusal(allowlist, "http://a..svc.cluster.local/"), HasSubstr("empty label"));
  EXPECT_THAT(Refusal(allowlist, "http://-a.svc.cluster.local/"), HasSubstr("'-'"));
  EXPECT_THAT(Refusal(allowlist, "http://./"), HasSubstr("is empty"));
  EXPECT_THAT(Refusal(allowlist, "http://" + std::string(64, 'a') + ".svc.cluster.local/"),
              HasSubstr("longer than 63"));
  EXPECT_THAT(Refusal(allowlist, "http://localhost/" + std::string(3000, 'a')),
              HasSubstr("the limit is 2048"));
}

TEST(UrlAllowlistTest, RefusesBadPorts) {
  UrlAllowlist allowlist = UrlAllowlist::Default();
  EXPECT_TRUE(allowlist.Check("http://localhost:1/").ok());
  EXPECT_TRUE(allowlist.Check("http://localhost:65535/").ok());
  for (const char* url :
       {"http://localhost:/", "http://localhost:0/", "http://localhost:65536/",
        "http://localhost:080000/", "http://localhost:http/", "http://localhost:-1/",
        "http://localhost:+80/", "http://[::1]:/", "http://localhost:80:80/"}) {
    EXPECT_THAT(Refusal(allowlist, url), HasSubstr("not a number in 1..65535")) << url;
  }
}

TEST(UrlAllowlistTest, Ipv6Literals) {
  UrlAllowlist allowlist = Make({"loopback", "fd00::/8"});
  EXPECT_TRUE(allowlist.Check("http://[::1]/").ok());
  EXPECT_TRUE(allowlist.Check("http://[0:0:0:0:0:0:0:1]:8080/").ok());
  EXPECT_TRUE(allowlist.Check("http://[FD12:3456::1]/warmup").ok());
  EXPECT_THAT(Refusal(allowlist, "http://[fe80::1]/"), HasSubstr("host '[fe80::1]'"));
  EXPECT_THAT(Refusal(allowlist, "http://[::]/"), HasSubstr("not in the outbound allowlist"));
  EXPECT_THAT(Refusal(allowlist, "http://[fe80::1%25eth0]/"), HasSubstr("not a valid IPv6"));
  EXPECT_THAT(Refusal(allowlist, "http://[::1/"), HasSubstr("lacks its ']'"));
  EXPECT_THAT(Refusal(allowlist, "http://[::1]x/"), HasSubstr("junk after the IPv6 literal"));
  EXPECT_THAT(Refusal(allowlist, "http://[localhost]/"), HasSubstr("not a valid IPv6"));
  EXPECT_THAT(Refusal(allowlist, "http://::1/"), HasSubstr("the host is empty"));
}

// Where libcurl, which the warmer connects with, reads a URL more leniently than the allowlist:
// libcurl mends or rewrites these, and the allowlist refuses them rather than check the rewrite.
TEST(UrlAllowlistTest, RefusesWhatLibcurlWouldRewrite) {
  UrlAllowlist allowlist = UrlAllowlist::Default();
  // libcurl decodes a percent-encoded host: each of these reaches localhost.
  for (const char* url : {"http://%6cocalhost/", "http://local%2Ehost/", "http://localhost%2e/"}) {
    EXPECT_THAT(Refusal(allowlist, url), HasSubstr("contains '%'")) << url;
  }
  // libcurl reads "http:/h" and "http:///h" as "http://h".
  EXPECT_THAT(Refusal(allowlist, "http:///localhost/"), HasSubstr("the host is empty"));
  EXPECT_THAT(Refusal(allowlist, "https:/localhost/"), HasSubstr("expected scheme://host"));
  EXPECT_THAT(Refusal(allowlist, "http:localhost"), HasSubstr("expected scheme://host"));
  // libcurl reads these as 127.0.0.1.
  for (const char* url : {"http://127.1/", "http://0x7f.1/", "http://017700000001/"}) {
    EXPECT_THAT(Refusal(allowlist, url), HasSubstr("must be a dotted-quad")) << url;
  }
  // libcurl connects to the address and drops the zone id, so it reaches the loopback address
  // through an interface of the caller's choosing; "%" unencoded is read the same way.
  for (const char* url :
       {"http://[::1%25lo]/", "http://[::1%lo]/", "http://[fe80::1%25eth0]:80/"}) {
    EXPECT_THAT(Refusal(allowlist, url), HasSubstr("not a valid IPv6 address: it has a zone id"))
        << url;
  }
  // Percent-encoding outside the host is the path's business.
  EXPECT_TRUE(allowlist.Check("http://localhost/a%20b?c=%41#%42").ok());
}

TEST(UrlAllowlistTest, Ipv6LiteralsAreMatchedAsAddresses) {
  UrlAllowlist allowlist = Make({"loopback", "fd00::/8"});
  // libcurl rewrites these literals ("[::1]", "[fd00::1]"); the address decides either way.
  EXPECT_TRUE(allowlist.Check("http://[0000:0000:0000:0000:0000:0000:0000:0001]/").ok());
  EXPECT_TRUE(allowlist.Check("http://[FD00:0::1]:8080/").ok());
  EXPECT_TRUE(allowlist.Check("http://[::ffff:7f00:1]/").ok());  // 127.0.0.1, IPv4-mapped
  // IPv4-compatible (::a.b.c.d) is an IPv6 address, not the IPv4 one.
  EXPECT_THAT(Refusal(allowlist, "http://[::127.0.0.1]/"), HasSubstr("host '[::127.0.0.1]'"));
  EXPECT_THAT(Refusal(allowlist, "http://[::1]]/"), HasSubstr("junk after the IPv6 literal"));
  EXPECT_THAT(Refusal(allowlist, "http://[[::1]]/"), HasSubstr("not a valid IPv6 address"));
  EXPECT_THAT(Refusal(allowlist, "http://[v1.x]/"), HasSubstr("not a valid IPv6 address"));
}

TEST(UrlAllowlistTest, SchemeAndHostCase) {
  UrlAllowlist allowlist = UrlAllowlist::Default();
  EXPECT_TRUE(allowlist.Check("HTTPS://LOCALHOST/").ok());
  EXPECT_TRUE(allowlist.Check("hTtP://Fn.Default.SVC.Cluster.Local/").ok());
  EXPECT_EQ(Refusal(allowlist, "FTP://localhost/"),
            "warmup_url scheme 'ftp' is not allowed (allowed: http, https)");
  // One trailing dot is the root of the DNS; two are an empty label.
  EXPECT_TRUE(allowlist.Check("http://localhost./").ok());
  EXPECT_TRUE(allowlist.Check("http://127.0.0.1./").ok());
  EXPECT_THAT(Refusal(allowlist, "http://localhost../"), HasSubstr("empty label"));
  EXPECT_THAT(Refusal(allowlist, "http://10.0.0.1./"), HasSubstr("host '10.0.0.1.'"));
}

TEST(UrlAllowlistTest, PortsAreReadAsLibcurlReadsThem) {
  UrlAllowlist allowlist = UrlAllowlist::Default();
  // Leading zeros are decimal to libcurl: ports 80 and 780.
  EXPECT_TRUE(allowlist.Check("http://localhost:00080/").ok());
  EXPECT_TRUE(allowlist.Check("http://localhost:000780/").ok());
  EXPECT_TRUE(allowlist.Check("http://[::1]:08080/").ok());
  // libcurl takes port 0, and an empty port as the default; both are refused.
  for (const char* url : {"http://localhost:0/", "http://localhost:00/", "http://localhost:",
                          "http://[::1]:?x", "http://localhost:99999/", "http://localhost:1e3/",
                          "http://localhost:0x50/", "http://localhost:8%30/"}) {
    EXPECT_THAT(Refusal(allowlist, url), HasSubstr("not a number in 1..65535")) << url;
  }
}

TEST(UrlAllowlistTest, ExactHostRule) {
  UrlAllowlist allowlist = Make({"API.Example.com."});
  EXPECT_THAT(allowlist.rules(), ElementsAre("api.example.com."));
  EXPECT_TRUE(allowlist.Check("http://api.example.com/warmup").ok());
  EXPECT_TRUE(allowlist.Check("https://API.EXAMPLE.COM.:8443/").ok());
  EXPECT_THAT(Refusal(allowlist, "http://x.api.example.com/"),
              HasSubstr("host 'x.api.example.com' is not in the outbound allowlist "
                        "(api.example.com.)"));
  EXPECT_THAT(Refusal(allowlist, "http://example.com/"), HasSubstr("not in the"));
  EXPECT_THAT(Refusal(allowlist, "http://localhost/"), HasSubstr("not in the"));
}

TEST(UrlAllowlistTest, WildcardRule) {
  UrlAllowlist allowlist = Make({"*.svc"});
  EXPECT_TRUE(allowlist.Check("http://fn.ns.svc/").ok());
  EXPECT_TRUE(allowlist.Check("http://FN.svc./").ok());
  EXPECT_THAT(Refusal(allowlist, "http://svc/"), HasSubstr("host 'svc'"));
  EXPECT_THAT(Refusal(allowlist, "http://fnsvc/"), HasSubstr("host 'fnsvc'"));
}

TEST(UrlAllowlistTest, CidrAndAddressRules) {
  UrlAllowlist allowlist = Make({"10.0.0.0/8", "192.168.1.5", "2001:db8::/32", "[2001:db9::7]"});
  EXPECT_TRUE(allowlist.Check("http://10.0.0.0/").ok());
  EXPECT_TRUE(allowlist.Check("http://10.255.255.255:8080/").ok());
  EXPECT_TRUE(allowlist.Check("http://[::ffff:10.1.2.3]/").ok());
  EXPECT_TRUE(allowlist.Check("http://192.168.1.5/").ok());
  EXPECT_TRUE(allowlist.Check("http://[2001:db8:ffff::1]/").ok());
  EXPECT_TRUE(allowlist.Check("http://[2001:db9::7]/").ok());
  EXPECT_THAT(Refusal(allowlist, "http://11.0.0.1/"),
              HasSubstr("host '11.0.0.1' is not in the outbound allowlist (10.0.0.0/8, "
                        "192.168.1.5, 2001:db8::/32, [2001:db9::7])"));
  EXPECT_THAT(Refusal(allowlist, "http://192.168.1.6/"), HasSubstr("host '192.168.1.6'"));
  EXPECT_THAT(Refusal(allowlist, "http://[2001:db9::8]/"), HasSubstr("host '[2001:db9::8]'"));
  EXPECT_THAT(Refusal(allowlist, "http://127.0.0.1/"), HasSubstr("host '127.0.0.1'"));
  // CIDR rules never match names: a name is not resolved, so it could point anywhere.
  EXPECT_THAT(Refusal(allowlist, "http://localhost/"), HasSubstr("host 'localhost'"));

  UrlAllowlist odd_prefixes = Make({"172.16.0.0/12", "0.0.0.0/0"});
  EXPECT_TRUE(odd_prefixes.Check("http://172.31.255.1/").ok());
  EXPECT_TRUE(odd_prefixes.Check("http://8.8.8.8/").ok());
  EXPECT_THAT(Refusal(odd_prefixes, "http://[2001:db8::1]/"), HasSubstr("not in the"));
  EXPECT_THAT(Refusal(odd_prefixes, "http://example.com/"), HasSubstr("not in the"));
}

TEST(UrlAllowlistTest, LoopbackRuleCoversNamesAndBothFamilies) {
  UrlAllowlist allowlist = Make({" Loopback "});
  EXPECT_THAT(allowlist.rules(), ElementsAre("loopback"));
  EXPECT_TRUE(allowlist.Check("http://127.0.0.1/").ok());
  EXPECT_TRUE(allowlist.Check("http://127.255.255.254/").ok());
  EXPECT_TRUE(allowlist.Check("http://[::1]/").ok());
  EXPECT_TRUE(allowlist.Check("http://localhost/").ok());
  EXPECT_THAT(Refusal(allowlist, "http://128.0.0.1/"), HasSubstr("not in the"));
  EXPECT_THAT(Refusal(allowlist, "http://[::2]/"), HasSubstr("not in the"));
  EXPECT_THAT(Refusal(allowlist, "http://a.localhost/"), HasSubstr("not in the"));
}

TEST(UrlAllowlistTest, EmptyRulesRefuseEverything) {
  UrlAllowlist allowlist = Make({});
  EXPECT_THAT(Refusal(allowlist, "http://localhost/"), HasSubstr("no rules"));
}

TEST(UrlAllowlistTest, BadRulesAreNamed) {
  struct Case {
    const char* rule;
    const char* why;
  };
  for (const Case& c : std::vector<Case>{
           {"", "it is empty"},
           {"*", "leading '*.'"},
           {"*.", "is empty"},
           {"foo*.com", "leading '*.'"},
           {"*.*.com", "contains '*'"},
           {"10.0.0.0/33", "0..32"},
           {"10.0.0.0/", "0..32"},
           {"10.0.0.0/x", "0..32"},
           {"fd00::/129", "0..128"},
           {"10.0.0.1/8", "bits set beyond the prefix"},
           {"fd00::1/8", "bits set beyond the prefix"},
           {"10.0.0/8", "expected a network"},
           {"not a host", "contains ' '"},
           {"http://x", "expected a network"},
           {"host:8080", "not a valid IPv6"},
           {"2130706433", "dotted-quad"},
           {"*.0x7f", "dotted-quad"},
           {"[::1", "lacks its ']'"},
           {"exa_mple.com", "contains '_'"},
       }) {
    absl::StatusOr<UrlAllowlist> allowlist = UrlAllowlist::Create({"loopback", c.rule});
    ASSERT_FALSE(allowlist.ok()) << c.rule;
    EXPECT_EQ(allowlist.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(
        allowlist.status().message(),
        AllOf(HasSubstr("outbound allowlist rule '" + std::string(c.rule) + "'"), HasSubstr(c.why)))
        << c.rule;
  }
}

TEST(UrlAllowlistTest, BadSchemesAreRefused) {
  absl::StatusOr<UrlAllowlist> ftp = UrlAllowlist::Create({"loopback"}, {"http", "ftp"});
  ASSERT_FALSE(ftp.ok());
  EXPECT_THAT(ftp.status().message(), HasSubstr("scheme 'ftp' is not supported"));
  absl::StatusOr<UrlAllowlist> none = UrlAllowlist::Create({"loopback"}, {});
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(none.status().message(), HasSubstr("allows no scheme"));
}

}  // namespace
}  // namespace prewarm
