#include "clients/cpp/help_text.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "clients/cpp/command_table.h"

namespace prewarm::ctl {

std::string FlagLines(const std::vector<FlagSpec>& flags) {
  std::vector<std::string> left;
  size_t width = 0;
  for (const FlagSpec& f : flags) {
    left.push_back(absl::StrCat("--", f.name, f.value_name.empty() ? "" : " ", f.value_name));
    width = std::max(width, left.back().size());
  }
  std::string out;
  for (size_t i = 0; i < flags.size(); ++i) {
    absl::StrAppend(&out, "  ", left[i], std::string(width - left[i].size() + 3, ' '),
                    flags[i].help, "\n");
  }
  return out;
}

std::string TopHelp() {
  std::string out =
      "prewarmctl: the command line of prewarm, which warms the serverless services of "
      "workflow\nruns just before their tasks need them.\n\n"
      "Usage: prewarmctl [global flags] COMMAND [arguments] [flags]\n\nCommands:\n";
  size_t width = 0;
  for (const Command& c : Commands()) width = std::max(width, c.path.size());
  for (const Command& c : Commands()) {
    absl::StrAppend(&out, "  ", c.path, std::string(width - c.path.size() + 3, ' '), c.summary,
                    "\n");
  }
  absl::StrAppend(
      &out, "\nGlobal flags (before or after the command):\n", FlagLines(GlobalFlags()),
      "\nExit codes: 0 ok, 2 usage error (flags, arguments, input file), 3 prewarmd cannot be "
      "reached,\n4 prewarmd answered with an error (its code and message go to stderr).\n\n"
      "Getting started:\n"
      "  prewarmctl health\n"
      "  prewarmctl services register --name svc-a --url http://127.0.0.1:8081/warmup\n"
      "  prewarmctl run submit --file dag.json --start-in 1m\n"
      "  prewarmctl plan run-1\n"
      "  prewarmctl run report run-1 extract started\n\n"
      "Run 'prewarmctl COMMAND --help' for a command's flags and examples.\n");
  return out;
}

std::string Wrap(absl::string_view text, size_t width) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == ' ') {
      absl::StrAppend(&out, line, "\n");
      continue;
    }
    size_t column = 0;
    for (absl::string_view word : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
      if (column > 0 && column + 1 + word.size() > width) {
        out += "\n";
        column = 0;
      } else if (column > 0) {
        out += " ";
        ++column;
      }
      absl::StrAppend(&out, word);
      column += word.size();
    }
    out += "\n";
  }
  return out;
}

std::string CommandHelp(const Command& c) {
  std::string out;
  for (size_t i = 0; i < c.usage.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "Usage: " : "       ", "prewarmctl [global flags] ", c.usage[i],
                    "\n");
  }
  absl::StrAppend(&out, "\n", c.summary, ".\n\n", Wrap(c.description));
  if (!c.flags.empty()) absl::StrAppend(&out, "\nFlags:\n", FlagLines(c.flags));
  absl::StrAppend(&out, "\nExamples:\n");
  for (const std::string& e : c.examples) absl::StrAppend(&out, "  ", e, "\n");
  absl::StrAppend(&out,
                  "\nGlobal flags: --server, --timeout, --output table|json, --tls, --ca-cert, "
                  "--client-cert,\n--client-key, --tls-server-name, --token-file (see "
                  "'prewarmctl --help').\n");
  return out;
}

std::string GroupHelp(absl::string_view group) {
  std::string out = absl::StrCat("Commands of 'prewarmctl ", group, "':\n");
  for (const Command& c : Commands()) {
    if (absl::StartsWith(c.path, absl::StrCat(group, " "))) {
      absl::StrAppend(&out, "  prewarmctl ", c.path, "   ", c.summary, "\n");
    }
  }
  absl::StrAppend(&out, "Run 'prewarmctl ", group,
                  " COMMAND --help' for its flags and examples.\n");
  return out;
}

}  // namespace prewarm::ctl
