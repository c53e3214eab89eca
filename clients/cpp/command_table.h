#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "clients/cpp/command.h"
#include "clients/cpp/command_line.h"

namespace prewarm::ctl {

// Every prewarmctl command, gathered from the commands_*.h files, and the global flags. Built
// once; the references stay valid for the life of the process.

// The flags every command accepts (before or after the command).
const std::vector<FlagSpec>& GlobalFlags();

// Every command in the order `prewarmctl --help` lists them.
const std::vector<Command>& Commands();

// The command named by words[0] (and words[1]), preferring the two-word one; sets *used to how
// many words it took. Null when there is none.
const Command* FindCommand(const std::vector<std::string>& words, size_t* used);

// Whether `word` is the first word of two-word commands ("services", "run", "warmup").
bool IsGroup(absl::string_view word);

}  // namespace prewarm::ctl
