#pragma once

#include <vector>

#include "clients/cpp/command.h"

namespace prewarm::ctl {

// `prewarmctl services list` and `services register`: the warm-up targets prewarmd knows.
// In the order `prewarmctl --help` lists them.
std::vector<Command> ServicesCommands();

}  // namespace prewarm::ctl
