#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "clients/cpp/command.h"
#include "clients/cpp/command_line.h"

namespace prewarm::ctl {

// The help prewarmctl prints, rendered from the command table (command_table.h): the overview,
// one command's help and a group's list of commands.

// `prewarmctl --help`: every command with its summary, the global flags, the exit codes and a
// first session.
std::string TopHelp();

// `prewarmctl COMMAND --help`: usage, summary, description, flags, examples.
std::string CommandHelp(const Command& c);

// `prewarmctl GROUP`: the commands whose path starts with `group ` ("services" -> list,
// register).
std::string GroupHelp(absl::string_view group);

// One line per flag, "  --name VALUE   help", the help column aligned.
std::string FlagLines(const std::vector<FlagSpec>& flags);

// Wraps prose lines at `width` columns; lines that are empty or start with a space (examples,
// JSON) are kept as they are.
std::string Wrap(absl::string_view text, size_t width = 100);

}  // namespace prewarm::ctl
