#include "clients/cpp/commands_runs.h"

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "clients/cpp/connection.h"
#include "clients/cpp/input_files.h"
#include "clients/cpp/render.h"

namespace prewarm::ctl {
namespace {

int RunSubmit(Invocation& inv) {
  const std::optional<std::string> file = inv.local.Get("file");
  if (!file.has_value()) return inv.Usage("give the run's DAG with --file");
  absl::StatusOr<std::string> text = ReadInput(*file, *inv.env.stdin_stream);
  if (!text.ok()) return inv.Usage(text.status().message());
  absl::StatusOr<v1::PrewarmRequest> request =
      ParseRun(*text, FormatFromPath(*file), *file == "-" ? "stdin" : *file);
  if (!request.ok()) return inv.Usage(request.status().message());

  if (std::optional<std::string> id = inv.local.Get("run-id")) request->set_run_id(*id);
  if (inv.local.Has("dry-run")) request->set_dry_run(inv.local.GetSwitch("dry-run"));
  if (inv.local.Has("start-time") && inv.local.Has("start-in")) {
    return inv.Usage("give --start-time or --start-in, not both");
  }
  if (std::optional<std::string> t = inv.local.Get("start-time")) {
    absl::StatusOr<absl::Time> start = ParseTimeArg(*t, "--start-time");
    if (!start.ok()) return inv.Usage(start.status().message());
    *request->mutable_start_time() = ToProto(*start);
  }
  if (std::optional<std::string> t = inv.local.Get("start-in")) {
    absl::StatusOr<absl::Duration> lead = ParseDurationArg(*t, "--start-in");
    if (!lead.ok()) return inv.Usage(lead.status().message());
    *request->mutable_start_time() = ToProto(inv.env.clock->Now() + *lead);
  }
  if (std::optional<std::string> r = inv.local.Get("delay-cost-ratio")) {
    double ratio = 0;
    if (!absl::SimpleAtod(*r, &ratio) || !(ratio > 0)) {
      return inv.Usage(absl::StrCat("--delay-cost-ratio must be a number > 0, not '", *r, "'"));
    }
    request->set_delay_cost_ratio(ratio);
  }
  if (request->run_id().empty()) {
    return inv.Usage(absl::StrCat(*file, ": no run_id (set it in the file or with --run-id)"));
  }

  int code = kExitOk;
  if (!inv.Connect(&code)) return code;
  v1::PrewarmResponse response;
  const grpc::Status status = inv.connection->Call([&](grpc::ClientContext* context) {
    return inv.connection->stub().Prewarm(context, *request, &response);
  });
  if (!status.ok()) return inv.Fail(status, absl::StrCat("run '", request->run_id(), "': "));
  if (inv.json) return inv.Print(ToJson(response));
  return inv.Print(absl::StrCat(
      request->dry_run() ? "Dry run: the plan below was computed; nothing fires and the server "
                           "kept no state.\n"
                         : absl::StrCat("Submitted run ", request->run_id(), ".\n"),
      RenderPlan(response.plan())));
}

absl::StatusOr<v1::TaskEventType> ParseEvent(absl::string_view text) {
  std::string e = absl::AsciiStrToLower(text);
  if (absl::StartsWith(e, "task_event_type_")) e.erase(0, 16);
  for (char& c : e) c = c == '-' ? '_' : c;
  if (e == "started" || e == "start") return v1::TASK_EVENT_TYPE_STARTED;
  if (e == "invoked" || e == "service_invoked") return v1::TASK_EVENT_TYPE_SERVICE_INVOKED;
  if (e == "finished" || e == "succeeded" || e == "success") return v1::TASK_EVENT_TYPE_FINISHED;
  if (e == "failed") return v1::TASK_EVENT_TYPE_FAILED;
  if (e == "skipped") return v1::TASK_EVENT_TYPE_SKIPPED;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown event '", text, "': started, invoked, finished, failed or skipped"));
}

int RunReport(Invocation& inv) {
  v1::ReportTimingRequest request;
  request.set_run_id(inv.positionals()[0]);
  request.set_task_id(inv.positionals()[1]);
  absl::StatusOr<v1::TaskEventType> event = ParseEvent(inv.positionals()[2]);
  if (!event.ok()) return inv.Usage(event.status().message());
  request.set_event(*event);
  if (std::optional<std::string> t = inv.local.Get("time")) {
    absl::StatusOr<absl::Time> time = ParseTimeArg(*t, "--time");
    if (!time.ok()) return inv.Usage(time.status().message());
    *request.mutable_event_time() = ToProto(*time);
  }
  if (std::optional<std::string> c = inv.local.Get("cold")) {
    absl::StatusOr<bool> cold = ParseBoolArg(*c, "--cold");
    if (!cold.ok()) return inv.Usage(cold.status().message());
    request.set_cold(*cold);
  }
  int code = kExitOk;
  if (!DurationFlag(
          inv, "cold-start", [&] { return request.mutable_cold_start(); }, &code)) {
    return code;
  }

  if (!inv.Connect(&code)) return code;
  v1::ReportTimingResponse response;
  const grpc::Status status = inv.connection->Call([&](grpc::ClientContext* context) {
    return inv.connection->stub().ReportTiming(context, request, &response);
  });
  if (!status.ok()) return inv.Fail(status);
  return inv.Print(inv.json ? ToJson(response) : RenderReport(request, response));
}

int RunCancel(Invocation& inv) {
  v1::CancelRunRequest request;
  request.set_run_id(inv.positionals()[0]);
  int code = kExitOk;
  if (!inv.Connect(&code)) return code;
  v1::CancelRunResponse response;
  const grpc::Status status = inv.connection->Call([&](grpc::ClientContext* context) {
    return inv.connection->stub().CancelRun(context, request, &response);
  });
  if (!status.ok()) return inv.Fail(status);
  if (inv.json) return inv.Print(ToJson(response));
  return inv.Print(absl::StrCat("Cancelled run ", request.run_id(), ": ",
                                response.cancelled_warmups(), " pending warm-up",
                                response.cancelled_warmups() == 1 ? "" : "s", " dropped.\n"));
}

int Plan(Invocation& inv) {
  v1::GetPlanRequest request;
  request.set_run_id(inv.positionals()[0]);
  int code = kExitOk;
  if (!inv.Connect(&code)) return code;
  v1::GetPlanResponse response;
  const grpc::Status status = inv.connection->Call([&](grpc::ClientContext* context) {
    return inv.connection->stub().GetPlan(context, request, &response);
  });
  if (!status.ok()) return inv.Fail(status);
  return inv.Print(inv.json ? ToJson(response) : RenderPlan(response.plan()));
}

}  // namespace

std::vector<Command> RunCommands() {
  return {
      {.path = "run submit",
       .summary = "Announce a run from a DAG file and print its warm-up plan",
       .usage = {"run submit --file FILE [--run-id ID] [--start-time TIME | --start-in DURATION]\n"
                 "             [--delay-cost-ratio R] [--dry-run]"},
       .description =
           "Sends the run's DAG to prewarmd (Prewarm), which plans a just-in-time warm-up for "
           "each task's service and fires them as their times come. FILE (JSON or YAML, - for "
           "stdin) is the proto3 JSON of prewarm.v1.PrewarmRequest:\n\n"
           "  {\"run_id\": \"run-1\", \"workflow_id\": \"etl\",\n"
           "   \"start_time\": \"2024-05-01T12:00:00Z\",      (optional; default now)\n"
           "   \"delay_cost_ratio\": 20,                      (optional)\n"
           "   \"tasks\": [\n"
           "     {\"task_id\": \"extract\", \"service\": \"svc-a\"},\n"
           "     {\"task_id\": \"transform\", \"service\": \"svc-b\", "
           "\"upstream_task_ids\": [\"extract\"]},\n"
           "     {\"task_id\": \"load\", \"service\": \"svc-c\", "
           "\"upstream_task_ids\": [\"transform\"]}]}\n\n"
           "Flags override the file. A run that starts now cannot have its first tasks warmed; "
           "submit it ahead (--start-in 2m) to warm them too. The plan is printed as with "
           "'prewarmctl plan'; --output json prints the PrewarmResponse.",
       .flags = {{"file", "FILE", "the run: a PrewarmRequest in JSON or YAML (- for stdin)"},
                 {"run-id", "ID", "run id (overrides the file's run_id)"},
                 {"start-time", "TIME", "when the run starts, RFC 3339 (2024-05-01T12:00:00Z)"},
                 {"start-in", "DURATION", "the run starts this long from now (30s, 2m)"},
                 {"delay-cost-ratio", "R",
                  "idle container-seconds one second of delay is worth (> 0) [server's default]"},
                 {"dry-run", "", "compute and print the plan only: nothing fires, no state kept"}},
       .examples = {"prewarmctl run submit --file dag.json",
                    "# Same DAG, a new run starting in two minutes",
                    "prewarmctl run submit --file dag.json --run-id run-2 --start-in 2m",
                    "# What would be warmed, without side effects",
                    "prewarmctl run submit --file dag.yaml --dry-run"},
       .run = RunSubmit},
      {.path = "run report",
       .summary = "Report a task event: started, invoked, finished, failed or skipped",
       .usage = {"run report RUN_ID TASK_ID EVENT [--time TIME] [--cold true|false] "
                 "[--cold-start DURATION]"},
       .description =
           "Tells prewarmd what a task of an active run did (ReportTiming). EVENT is started, "
           "invoked (the task's first call to its service), finished, failed or skipped. The "
           "observation is stored when the command returns, and the task's descendants are "
           "re-planned; the re-planned tasks are printed (--output json: the "
           "ReportTimingResponse).",
       .flags = {{"time", "TIME", "when it happened, RFC 3339 [now, on the server]"},
                 {"cold", "BOOL", "invoked/finished: whether the call was cold (true or false)"},
                 {"cold-start", "DURATION", "how long the cold start took, when known"}},
       .examples = {"prewarmctl run report run-1 extract started",
                    "prewarmctl run report run-1 extract invoked --cold true --cold-start 1.8s",
                    "prewarmctl run report run-1 extract finished --time 2024-05-01T12:00:42Z"},
       .min_args = 3,
       .max_args = 3,
       .run = RunReport},
      {.path = "run cancel",
       .summary = "Cancel a run's pending warm-ups and retire it",
       .usage = {"run cancel RUN_ID"},
       .description = "Drops the run's pending warm-ups (CancelRun) and prints how many.",
       .flags = {},
       .examples = {"prewarmctl run cancel run-1"},
       .min_args = 1,
       .max_args = 1,
       .run = RunCancel},
      {.path = "plan",
       .summary = "Show a run's plan and what happened so far",
       .usage = {"plan RUN_ID"},
       .description =
           "Prints the current plan of an active run (GetPlan), one row per task in topological "
           "order: expected start and warm-up time (relative to the run start, and in UTC), "
           "expected cold start, the planner's decision and confidence, the warm-up's state "
           "(pending, fired, ready, failed, cancelled, none), the task's state, whether it found "
           "its service warm (hit, miss, late), its actual start and the reason for the "
           "decision. --output json prints the GetPlanResponse.",
       .flags = {},
       .examples = {"prewarmctl plan run-1", "# Tasks that paid a cold start",
                    "prewarmctl --output json plan run-1 | "
                    "jq -r '.plan.tasks[] | select(.outcome == \"TASK_OUTCOME_MISS\") | .task_id'"},
       .min_args = 1,
       .max_args = 1,
       .run = Plan},
  };
}

}  // namespace prewarm::ctl
