#pragma once

#include <vector>

#include "clients/cpp/command.h"

namespace prewarm::ctl {

// `prewarmctl health`: the standard gRPC health check of prewarmd.
// In the order `prewarmctl --help` lists them.
std::vector<Command> HealthCommands();

}  // namespace prewarm::ctl
