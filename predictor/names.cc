#include "predictor/names.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace prewarm {
namespace {

// Long names are cut in messages so that an error never echoes a megabyte back.
std::string Shown(absl::string_view s) {
  constexpr size_t kShown = 40;
  if (s.size() <= kShown) return absl::StrFormat("'%s'", absl::CHexEscape(s));
  return absl::StrFormat("'%s...'", absl::CHexEscape(s.substr(0, kShown)));
}

// Whether `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past
// U+10FFFF), what protobuf requires of proto3 strings when it parses them.
bool IsUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int extra;
    unsigned char lo = 0x80, hi = 0xbf;  // bounds of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      extra = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      extra = 2;
      if (c == 0xe0) lo = 0xa0;  // overlong
      if (c == 0xed) hi = 0x9f;  // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      extra = 3;
      if (c == 0xf0) lo = 0x90;  // overlong
      if (c == 0xf4) hi = 0x8f;  // past U+10FFFF
    } else {
      return false;
    }
    if (s.size() - i <= static_cast<size_t>(extra)) return false;
    for (int k = 1; k <= extra; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) return false;
    }
    i += extra + 1;
  }
  return true;
}

}  // namespace

absl::Status ValidateId(absl::string_view id, absl::string_view what, size_t max_length) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  if (id.size() > max_length) {
    return absl::InvalidArgumentError(absl::StrFormat("%s %s is %d bytes long; the limit is %d",
                                                      what, Shown(id), id.size(), max_length));
  }
  for (char c : id) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s %s contains a control character", what, Shown(id)));
    }
  }
  // Stored runs are protobuf messages: a proto3 string that is not UTF-8 does not parse back.
  if (!IsUtf8(id)) {
    return absl::InvalidArgumentError(absl::StrFormat("%s %s is not valid UTF-8", what, Shown(id)));
  }
  return absl::OkStatus();
}

absl::Status ValidateServiceName(absl::string_view name, absl::string_view what) {
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  if (name.size() > kMaxServiceNameLength) {
    return absl::InvalidArgumentError(absl::StrFormat("%s %s is %d bytes long; the limit is %d",
                                                      what, Shown(name), name.size(),
                                                      kMaxServiceNameLength));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s %s may contain only letters, digits, '.', '_' and '-'", what, Shown(name)));
    }
  }
  return absl::OkStatus();
}

}  // namespace prewarm
