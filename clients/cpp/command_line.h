#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace prewarm::ctl {

// One flag a command accepts. Flags are written `--name=value` or `--name value`; a switch
// (empty `value_name`) is `--name`, `--name=true` or `--name=false`. Underscores in a given name
// are read as dashes, so `--keep_alive` is `--keep-alive`.
struct FlagSpec {
  // Without dashes, for example "keep-alive".
  std::string name;
  // Placeholder of the value in help ("DURATION"); empty for a switch.
  std::string value_name;
  // One line of help.
  std::string help;
  // May be given several times (all values are kept in order).
  bool repeated = false;
};

// The flags and positional arguments parsed from a command line. Plain value type.
class ParsedArgs {
 public:
  bool Has(absl::string_view name) const { return values_.count(std::string(name)) > 0; }
  // The value of a flag given once (the last one when repeated); nullopt when absent. A switch
  // reads "true" or "false".
  std::optional<std::string> Get(absl::string_view name) const;
  // Every value of a flag, in order; empty when absent.
  std::vector<std::string> GetAll(absl::string_view name) const;
  // A switch: false when absent.
  bool GetSwitch(absl::string_view name) const;

  void Add(const std::string& name, std::string value) {
    values_[name].push_back(std::move(value));
  }

  std::vector<std::string> positionals;

 private:
  std::map<std::string, std::vector<std::string>> values_;
};

// Parses args[begin..] against `specs` into `out`, appending to what `out` already holds.
// Positional arguments go to out.positionals; "--" makes every later argument positional. When
// `stop_at_positional` is true, parsing stops before the first positional argument (global flags
// in front of a command). Returns the index of the first argument not consumed.
// INVALID_ARGUMENT names an unknown flag, a missing value, a bad switch value or a repeated flag
// that may be given once.
absl::Status ParseFlags(const std::vector<std::string>& args, size_t begin,
                        const std::vector<const FlagSpec*>& specs, bool stop_at_positional,
                        ParsedArgs& out, size_t* next);

}  // namespace prewarm::ctl
