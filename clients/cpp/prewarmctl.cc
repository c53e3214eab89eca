// Dispatch: global flags, help and version, finding the command, its flags and the global options
// it inherits, then Command::run. The commands live in commands_*.cc, their table in
// command_table.cc, the help's rendering in help_text.cc.
#include "clients/cpp/prewarmctl.h"

#include <algorithm>
#include <cstddef>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "clients/cpp/command.h"
#include "clients/cpp/command_line.h"
#include "clients/cpp/command_table.h"
#include "clients/cpp/connection.h"
#include "clients/cpp/help_text.h"
#include "clients/cpp/render.h"

#ifndef PREWARM_VERSION
#define PREWARM_VERSION "unknown"
#endif

namespace prewarm::ctl {
namespace {

constexpr char kDefaultServer[] = "127.0.0.1:50051";

std::vector<const FlagSpec*> Pointers(const std::vector<FlagSpec>& specs) {
  std::vector<const FlagSpec*> out;
  for (const FlagSpec& f : specs) out.push_back(&f);
  return out;
}

int TopUsage(std::ostream& err, absl::string_view message) {
  err << "prewarmctl: " << message << "\nRun 'prewarmctl --help' for the commands.\n";
  return kExitUsage;
}

}  // namespace

int RunPrewarmctl(const std::vector<std::string>& args, const Environment& env, std::ostream& out,
                  std::ostream& err) {
  // Global flags before the command.
  ParsedArgs global;
  size_t next = 0;
  if (absl::Status s =
          ParseFlags(args, 1, Pointers(GlobalFlags()), /*stop_at_positional=*/true, global, &next);
      !s.ok()) {
    return TopUsage(err, s.message());
  }
  std::vector<std::string> rest(args.begin() + static_cast<std::ptrdiff_t>(next), args.end());
  if (global.GetSwitch("version")) {
    out << "prewarmctl " << PREWARM_VERSION << "\n";
    return kExitOk;
  }
  if (!rest.empty() && rest[0] == "help") {  // "prewarmctl help [COMMAND...]".
    rest.erase(rest.begin());
    size_t used = 0;
    if (rest.empty()) {
      out << TopHelp();
    } else if (const Command* c = FindCommand(rest, &used); c != nullptr && used == rest.size()) {
      out << CommandHelp(*c);
    } else if (rest.size() == 1 && IsGroup(rest[0])) {
      out << GroupHelp(rest[0]);
    } else {
      return TopUsage(err, absl::StrCat("no help for '", absl::StrJoin(rest, " "), "'"));
    }
    return kExitOk;
  }
  if (rest.empty()) {
    if (global.GetSwitch("help")) {
      out << TopHelp();
      return kExitOk;
    }
    err << TopHelp();
    return TopUsage(err, "no command given");
  }
  size_t used = 0;
  const Command* command = FindCommand(rest, &used);
  if (command == nullptr) {
    if (IsGroup(rest[0])) {
      const bool help = global.GetSwitch("help") ||
                        (rest.size() >= 2 && (rest[1] == "--help" || rest[1] == "-h"));
      (help ? out : err) << GroupHelp(rest[0]);
      if (help) return kExitOk;
      return TopUsage(err, rest.size() < 2
                               ? absl::StrCat("'", rest[0], "' needs a command")
                               : absl::StrCat("unknown command '", rest[0], " ", rest[1], "'"));
    }
    return TopUsage(err, absl::StrCat("unknown command '", rest[0], "'"));
  }

  // The command's flags, and the global ones it does not shadow, after the command.
  std::vector<const FlagSpec*> specs = Pointers(command->flags);
  std::vector<std::string> unshadowed;
  for (const FlagSpec& g : GlobalFlags()) {
    bool shadowed = false;
    for (const FlagSpec& f : command->flags) shadowed = shadowed || f.name == g.name;
    if (!shadowed) {
      specs.push_back(&g);
      unshadowed.push_back(g.name);
    }
  }
  Invocation inv(*command, env, out, err);
  inv.global = std::move(global);
  if (absl::Status s =
          ParseFlags(rest, used, specs, /*stop_at_positional=*/false, inv.local, &next);
      !s.ok()) {
    return inv.Usage(s.message());
  }
  if (inv.global.GetSwitch("help") || inv.local.GetSwitch("help")) {
    out << CommandHelp(*command);
    return kExitOk;
  }
  if (inv.local.GetSwitch("version")) {
    out << "prewarmctl " << PREWARM_VERSION << "\n";
    return kExitOk;
  }
  // A global option: given before the command, or after it when the command does not shadow it.
  std::optional<std::string> conflict;
  auto global_option = [&](const std::string& name) -> std::optional<std::string> {
    const bool after = std::find(unshadowed.begin(), unshadowed.end(), name) != unshadowed.end() &&
                       inv.local.Has(name);
    if (after && inv.global.Has(name)) conflict = name;
    return after ? inv.local.Get(name) : inv.global.Get(name);
  };
  const std::optional<std::string> server = global_option("server");
  const std::optional<std::string> timeout = global_option("timeout");
  const std::optional<std::string> output = global_option("output");
  const std::optional<std::string> tls = global_option("tls");
  ConnectionOptions& c = inv.connection_options;
  c.target = server.value_or(env.server.value_or(kDefaultServer));
  c.tls = tls.has_value() && *tls == "true";
  c.ca_cert_file = global_option("ca-cert").value_or("");
  c.client_cert_file = global_option("client-cert").value_or("");
  c.client_key_file = global_option("client-key").value_or("");
  c.tls_server_name = global_option("tls-server-name").value_or("");
  c.token_file = global_option("token-file").value_or("");
  if (conflict.has_value()) {
    return inv.Usage(absl::StrCat("--", *conflict, " given both before and after the command"));
  }
  if (timeout.has_value()) {
    absl::StatusOr<absl::Duration> d = ParseDurationArg(*timeout, "--timeout");
    if (!d.ok()) return inv.Usage(d.status().message());
    if (*d <= absl::ZeroDuration()) return inv.Usage("--timeout must be more than 0");
    c.timeout = *d;
  }
  const std::string format = output.value_or("table");
  if (format != "table" && format != "json") {
    return inv.Usage(absl::StrCat("--output is table or json, not '", format, "'"));
  }
  inv.json = format == "json";

  const size_t n = inv.positionals().size();
  if (n < command->min_args || n > command->max_args) {
    if (command->max_args == 0) {
      return inv.Usage(absl::StrCat("unexpected argument '", inv.positionals()[0], "'"));
    }
    return inv.Usage(absl::StrCat("expected ", command->usage[0].substr(command->path.size() + 1),
                                  n < command->min_args ? "; some are missing" : "; too many"));
  }
  return command->run(inv);
}

}  // namespace prewarm::ctl
