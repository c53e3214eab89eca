#pragma once

#include <vector>

#include "clients/cpp/command.h"

namespace prewarm::ctl {

// `prewarmctl stats`: what prewarmd has learned about a service.
// In the order `prewarmctl --help` lists them.
std::vector<Command> StatsCommands();

}  // namespace prewarm::ctl
