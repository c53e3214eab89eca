#include "clients/cpp/commands_warmups.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "clients/cpp/connection.h"
#include "clients/cpp/render.h"

namespace prewarm::ctl {
namespace {

int Watch(Invocation& inv) {
  v1::WatchWarmupsRequest request;
  for (const std::string& s : inv.local.GetAll("service")) request.add_services(s);
  int64_t count = 0;
  if (std::optional<std::string> c = inv.local.Get("count")) {
    if (!absl::SimpleAtoi(*c, &count) || count <= 0) {
      return inv.Usage(absl::StrCat("--count must be a positive integer, not '", *c, "'"));
    }
  }
  int code = kExitOk;
  if (!inv.Connect(&code)) return code;
  std::unique_ptr<grpc::ClientContext> context =
      inv.connection->NewContext(/*with_deadline=*/false);
  std::unique_ptr<grpc::ClientReader<v1::WatchWarmupsResponse>> reader =
      inv.connection->stub().WatchWarmups(context.get(), request);
  if (inv.env.interrupter != nullptr) {
    grpc::ClientContext* raw = context.get();
    inv.env.interrupter->Arm([raw] { raw->TryCancel(); });
  }
  // The headers come once prewarmd has registered the subscription (or when the call ends): the
  // note below then means that no instruction published from now on is missed.
  reader->WaitForInitialMetadata();
  inv.err << "Watching warm-ups of "
          << (request.services().empty()
                  ? std::string("every delegated service")
                  : absl::StrCat("delegated service(s) ", absl::StrJoin(request.services(), ", ")))
          << " on " << inv.connection_options.target
          << (count > 0 ? absl::StrCat(" (stops after ", count, ")") : " (Ctrl-C stops)") << ".\n";
  int64_t seen = 0;
  bool stopped_here = false;
  v1::WatchWarmupsResponse instruction;
  while (reader->Read(&instruction)) {
    inv.out << (inv.json ? ToJson(instruction, /*compact=*/true) : RenderWatchLine(instruction));
    inv.out.flush();
    if (!inv.out || (count > 0 && ++seen >= count)) {  // Done, or nobody reads the output.
      stopped_here = true;
      context->TryCancel();
      break;
    }
  }
  if (inv.env.interrupter != nullptr) inv.env.interrupter->Disarm();
  const grpc::Status status = reader->Finish();
  const bool interrupted = inv.env.interrupter != nullptr && inv.env.interrupter->Triggered();
  if (status.ok() || stopped_here || interrupted) return kExitOk;
  return inv.Fail(status);
}

int WarmupReport(Invocation& inv) {
  v1::ReportWarmupRequest request;
  request.set_warmup_id(inv.positionals()[0]);
  const std::string result = absl::AsciiStrToLower(inv.positionals()[1]);
  if (result == "ok" || result == "succeeded" || result == "success") {
    request.set_success(true);
  } else if (result == "failed" || result == "error") {
    request.set_success(false);
  } else {
    return inv.Usage(absl::StrCat("the result is ok or failed, not '", inv.positionals()[1], "'"));
  }
  int code = kExitOk;
  if (!DurationFlag(
          inv, "latency", [&] { return request.mutable_latency(); }, &code))
    return code;
  if (std::optional<std::string> c = inv.local.Get("cold")) {
    absl::StatusOr<bool> cold = ParseBoolArg(*c, "--cold");
    if (!cold.ok()) return inv.Usage(cold.status().message());
    request.set_cold(*cold);
  }
  request.set_error_message(inv.local.Get("error").value_or(""));
  if (!inv.Connect(&code)) return code;
  v1::ReportWarmupResponse response;
  const grpc::Status status = inv.connection->Call([&](grpc::ClientContext* context) {
    return inv.connection->stub().ReportWarmup(context, request, &response);
  });
  if (!status.ok()) return inv.Fail(status);
  if (inv.json) return inv.Print(ToJson(response));
  return inv.Print(absl::StrCat(
      "Reported warm-up ", request.warmup_id(), ": ", request.success() ? "ok" : "failed",
      request.has_latency() ? absl::StrCat(" in ", FormatSpan(FromProto(request.latency()))) : "",
      ".\n"));
}

}  // namespace

std::vector<Command> WarmupCommands() {
  return {
      {.path = "watch",
       .summary = "Stream delegated warm-up instructions as they fall due",
       .usage = {"watch [--service NAME]... [--count N]"},
       .description =
           "Subscribes to WatchWarmups and prints one line per warm-up instruction of a "
           "delegated service when its time comes: warm-up time, service, run, task, expected "
           "start, URL and warm-up id. Runs until interrupted (Ctrl-C, exit code 0) or N "
           "instructions arrived. --output json prints one WatchWarmupsResponse object per "
           "line.\n\n"
           "Every watcher receives every instruction; prewarmctl only prints them. A script "
           "that fires the warm-ups reports each result with 'prewarmctl warmup report'.",
       .flags = {{"service", "NAME", "only this delegated service (repeatable) [all]", true},
                 {"count", "N", "stop after N instructions"}},
       .examples = {"prewarmctl watch", "prewarmctl watch --service resize --service thumbnail",
                    "# A delegated watcher in shell: fire, then report",
                    "prewarmctl --output json watch --service resize | while read -r w; do",
                    "  id=$(echo \"$w\" | jq -r .warmup_id)",
                    "  aws lambda invoke --function-name resize /dev/null && "
                    "prewarmctl warmup report \"$id\" ok",
                    "done"},
       .run = Watch},
      {.path = "warmup report",
       .summary = "Report the result of a delegated warm-up",
       .usage = {"warmup report WARMUP_ID ok|failed [--latency DURATION] [--cold true|false] "
                 "[--error MESSAGE]"},
       .description =
           "Tells prewarmd how a warm-up from 'prewarmctl watch' went (ReportWarmup). The latency "
           "of a cold answer is a cold-start observation.",
       .flags = {{"latency", "DURATION", "how long the warm-up took to answer"},
                 {"cold", "BOOL", "whether the target was cold [judged from the latency]"},
                 {"error", "MESSAGE", "what went wrong, for failed"}},
       .examples = {"prewarmctl warmup report w-42 ok --latency 1.4s",
                    "prewarmctl warmup report w-43 failed --error 'invoke timed out'"},
       .min_args = 2,
       .max_args = 2,
       .run = WarmupReport},
  };
}

}  // namespace prewarm::ctl
