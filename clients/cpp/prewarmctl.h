#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "clients/cpp/environment.h"
#include "clients/cpp/interrupter.h"

namespace prewarm::ctl {

// Runs prewarmctl with `args` (args[0] is the program name): parses the command line, calls
// prewarmd, writes results to `out` and diagnostics to `err`. Returns the exit code (see
// ExitCode in connection.h): 0 ok, 2 usage error, 3 connection error, 4 server error.
//
// Example:
//   std::ostringstream out, err;
//   int code = RunPrewarmctl({"prewarmctl", "--server=127.0.0.1:50051", "plan", "run-1"}, env,
//                            out, err);
int RunPrewarmctl(const std::vector<std::string>& args, const Environment& env, std::ostream& out,
                  std::ostream& err);

}  // namespace prewarm::ctl
