#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "clients/cpp/command_line.h"
#include "clients/cpp/connection.h"
#include "clients/cpp/environment.h"
#include "google/protobuf/duration.pb.h"
#include "grpcpp/grpcpp.h"

namespace prewarm::ctl {

// A prewarmctl command, and what its run function is handed. Each commands_*.cc file defines
// the commands of one area (services, runs, ...): their help and their run functions side by
// side. command_table.h lists them all; prewarmctl.cc dispatches to them.

struct Invocation;

// One command: its help (help_text.h renders it) and what runs it.
struct Command {
  // "services register".
  std::string path;
  std::string summary;
  // Usage lines after "prewarmctl [global flags] ".
  std::vector<std::string> usage;
  std::string description;
  std::vector<FlagSpec> flags;
  // Comment lines start with '#'.
  std::vector<std::string> examples;
  // Positional arguments accepted.
  size_t min_args = 0;
  size_t max_args = 0;
  // Returns the exit code (ExitCode in connection.h).
  int (*run)(Invocation&) = nullptr;
};

// One run of one command: the parsed command line, the process's environment and where output
// goes. Dispatch (RunPrewarmctl) fills it in and calls Command::run with it; the positional
// argument count is already checked against min_args/max_args. Not thread-safe.
struct Invocation {
  Invocation(const Command& c, const Environment& e, std::ostream& o, std::ostream& er)
      : command(c), env(e), out(o), err(er) {}

  const Command& command;
  const Environment& env;
  std::ostream& out;
  std::ostream& err;
  ParsedArgs global;
  ParsedArgs local;
  bool json = false;
  ConnectionOptions connection_options;
  // Null until Connect succeeds.
  std::unique_ptr<Connection> connection;

  const std::vector<std::string>& positionals() const { return local.positionals; }

  // Writes a usage error naming the command's help and returns kExitUsage.
  int Usage(absl::string_view message);

  // Opens the connection; on failure writes the usage error and returns false.
  bool Connect(int* exit_code);

  // Writes what a failed call means (prefixed by `context`) and returns its exit code.
  // REQUIRES: Connect succeeded.
  int Fail(const grpc::Status& status, absl::string_view context = "");

  // Writes `text` to `out`: kExitOk, or kExitFailure when the output cannot be written.
  int Print(const std::string& text);
};

// Duration flag `name` into `*field()` when given (`field` is not called otherwise: mutable_*()
// would mark the field set); false (after writing the usage error) when the value is bad.
bool DurationFlag(Invocation& inv, absl::string_view name,
                  const std::function<google::protobuf::Duration*()>& field, int* exit_code);

}  // namespace prewarm::ctl
