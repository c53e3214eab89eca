#pragma once

#include <vector>

#include "clients/cpp/command.h"

namespace prewarm::ctl {

// `prewarmctl watch` and `warmup report`: delegated warm-ups, streamed to a watcher that fires
// them and reports each result.
// In the order `prewarmctl --help` lists them.
std::vector<Command> WarmupCommands();

}  // namespace prewarm::ctl
