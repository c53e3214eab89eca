#include "clients/cpp/command_table.h"

#include <initializer_list>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "clients/cpp/commands_health.h"
#include "clients/cpp/commands_runs.h"
#include "clients/cpp/commands_services.h"
#include "clients/cpp/commands_stats.h"
#include "clients/cpp/commands_warmups.h"

namespace prewarm::ctl {

const std::vector<FlagSpec>& GlobalFlags() {
  static const auto* flags = new std::vector<FlagSpec>{
      {"server", "HOST:PORT",
       "prewarmd's address (any gRPC target) [$PREWARM_SERVER, else 127.0.0.1:50051]"},
      {"timeout", "DURATION",
       "deadline of each call, UNAVAILABLE retried with backoff within it: 500ms, 5s, 1m [10s]"},
      {"output", "FORMAT",
       "table (for people) or json (the proto3 JSON of the response, for scripts) [table]"},
      {"tls", "", "connect with TLS (system roots unless --ca-cert)"},
      {"ca-cert", "FILE", "PEM roots to verify the server with (implies --tls)"},
      {"client-cert", "FILE", "PEM client certificate for mTLS (with --client-key)"},
      {"client-key", "FILE", "PEM client key for mTLS"},
      {"tls-server-name", "NAME", "name to check the server's certificate against"},
      {"token-file", "FILE", "file holding the bearer token prewarmd requires"},
      {"help", "", "show help (also: prewarmctl help COMMAND, prewarmctl COMMAND --help)"},
      {"version", "", "print prewarmctl's version"},
  };
  return *flags;
}

const std::vector<Command>& Commands() {
  static const auto* commands = [] {
    auto* all = new std::vector<Command>;
    for (std::vector<Command> area :
         {ServicesCommands(), RunCommands(), StatsCommands(), WarmupCommands(), HealthCommands()}) {
      all->insert(all->end(), area.begin(), area.end());
    }
    return all;
  }();
  return *commands;
}

bool IsGroup(absl::string_view word) {
  for (const Command& c : Commands()) {
    if (absl::StartsWith(c.path, absl::StrCat(word, " "))) return true;
  }
  return false;
}

const Command* FindCommand(const std::vector<std::string>& words, size_t* used) {
  if (words.size() >= 2) {
    const std::string two = absl::StrCat(words[0], " ", words[1]);
    for (const Command& c : Commands()) {
      if (c.path == two) {
        *used = 2;
        return &c;
      }
    }
  }
  if (!words.empty()) {
    for (const Command& c : Commands()) {
      if (c.path == words[0]) {
        *used = 1;
        return &c;
      }
    }
  }
  return nullptr;
}

}  // namespace prewarm::ctl
