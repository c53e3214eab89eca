#pragma once

#include <iostream>
#include <optional>
#include <string>

#include "clients/cpp/interrupter.h"
#include "predictor/clock.h"

namespace prewarm::ctl {

// What prewarmctl reads from its process besides the arguments; tests pass their own.
struct Environment {
  // The value of PREWARM_SERVER; nullopt when unset.
  std::optional<std::string> server;
  // "Now" for `run submit --start-in`. Never null.
  Clock* clock = &Clock::Real();
  // Read by `--file -`. Never null.
  std::istream* stdin_stream = &std::cin;
  // Stops `watch`; may be null (then only --count ends it).
  Interrupter* interrupter = nullptr;
};

}  // namespace prewarm::ctl
