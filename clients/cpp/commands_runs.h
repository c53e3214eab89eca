#pragma once

#include <vector>

#include "clients/cpp/command.h"

namespace prewarm::ctl {

// `prewarmctl run submit`, `run report`, `run cancel` and `plan`: announcing a run, reporting
// its tasks' events, cancelling it and showing its plan.
// In the order `prewarmctl --help` lists them.
std::vector<Command> RunCommands();

}  // namespace prewarm::ctl
