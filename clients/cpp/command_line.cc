#include "clients/cpp/command_line.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace prewarm::ctl {

std::optional<std::string> ParsedArgs::Get(absl::string_view name) const {
  auto it = values_.find(std::string(name));
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> ParsedArgs::GetAll(absl::string_view name) const {
  auto it = values_.find(std::string(name));
  if (it == values_.end()) return {};
  return it->second;
}

bool ParsedArgs::GetSwitch(absl::string_view name) const {
  std::optional<std::string> v = Get(name);
  return v.has_value() && *v == "true";
}

namespace {

const FlagSpec* Find(const std::vector<const FlagSpec*>& specs, absl::string_view name) {
  for (const FlagSpec* spec : specs) {
    if (spec->name == name) return spec;
  }
  return nullptr;
}

}  // namespace

absl::Status ParseFlags(const std::vector<std::string>& args, size_t begin,
                        const std::vector<const FlagSpec*>& specs, bool stop_at_positional,
                        ParsedArgs& out, size_t* next) {
  size_t i = begin;
  bool only_positionals = false;
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (only_positionals || arg == "-" || !absl::StartsWith(arg, "-")) {
      if (stop_at_positional) break;
      out.positionals.push_back(arg);
      continue;
    }
    if (arg == "--") {
      if (stop_at_positional) {
        ++i;
        break;
      }
      only_positionals = true;
      continue;
    }
    std::string name;
    std::optional<std::string> value;
    if (arg == "-h") {
      name = "help";
    } else if (absl::StartsWith(arg, "--")) {
      absl::string_view body = absl::string_view(arg).substr(2);
      const size_t eq = body.find('=');
      name = std::string(body.substr(0, eq));
      if (eq != absl::string_view::npos) value = std::string(body.substr(eq + 1));
      std::replace(name.begin(), name.end(), '_', '-');
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag '", arg, "' (flags are written --name=value)"));
    }
    const FlagSpec* spec = Find(specs, name);
    if (spec == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '--", name, "'"));
    }
    if (spec->value_name.empty()) {
      if (!value.has_value()) {
        value = "true";
      } else {
        const std::string lower = absl::AsciiStrToLower(*value);
        if (lower != "true" && lower != "false") {
          return absl::InvalidArgumentError(
              absl::StrCat("--", name, " takes no value, or =true / =false; got '", *value, "'"));
        }
        value = lower;
      }
    } else if (!value.has_value()) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " needs a value (", spec->value_name, ")"));
      }
      value = args[++i];
    }
    if (!spec->repeated && out.Has(name)) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " given more than once"));
    }
    out.Add(name, *std::move(value));
  }
  *next = i;
  return absl::OkStatus();
}

}  // namespace prewarm::ctl
