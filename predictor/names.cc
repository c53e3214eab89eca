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
