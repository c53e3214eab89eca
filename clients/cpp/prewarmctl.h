#pragma once

#include <functional>
#include <iostream>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "predictor/clock.h"

namespace prewarm::ctl {

// Lets another thread stop a running `prewarmctl watch`: main's signal thread on Ctrl-C, or a
// test. Thread-safe.
class Interrupter {
 public:
  // Runs the armed stop callback once. False when nothing is armed or it already ran: the caller
  // (main) then exits the process instead.
  bool Trigger() ABSL_LOCKS_EXCLUDED(mu_);
  // Arms `stop` (it must not block; it runs under this object's lock). Triggered() reports
  // whether it ran.
  void Arm(std::function<void()> stop) ABSL_LOCKS_EXCLUDED(mu_);
  // After Disarm returns, the callback no longer runs.
  void Disarm() ABSL_LOCKS_EXCLUDED(mu_);
  bool Triggered() const ABSL_LOCKS_EXCLUDED(mu_);
  // True while a callback is armed (tests wait for the watch to be running).
  bool Armed() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::function<void()> stop_ ABSL_GUARDED_BY(mu_);
  bool triggered_ ABSL_GUARDED_BY(mu_) = false;
};

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
