#include "clients/cpp/commands_stats.h"

#include "clients/cpp/connection.h"
#include "clients/cpp/render.h"

namespace prewarm::ctl {
namespace {

int Stats(Invocation& inv) {
  v1::GetServiceStatsRequest request;
  request.set_service(inv.positionals()[0]);
  int code = kExitOk;
  if (!inv.Connect(&code)) return code;
  v1::GetServiceStatsResponse response;
  const grpc::Status status = inv.connection->Call([&](grpc::ClientContext* context) {
    return inv.connection->stub().GetServiceStats(context, request, &response);
  });
  if (!status.ok()) return inv.Fail(status);
  return inv.Print(inv.json ? ToJson(response) : RenderStats(response));
}

}  // namespace

std::vector<Command> StatsCommands() {
  return {
      {.path = "stats",
       .summary = "Show what prewarmd has learned about a service",
       .usage = {"stats SERVICE"},
       .description =
           "Prints a service's learned task durations, cold starts and warm latencies (sample "
           "counts and quantiles), hits, misses and late warm-ups, warm-ups fired and failed, "
           "and until when the server expects it warm (GetServiceStats).",
       .flags = {},
       .examples = {"prewarmctl stats svc-a", "prewarmctl --output json stats svc-a"},
       .min_args = 1,
       .max_args = 1,
       .run = Stats},
  };
}

}  // namespace prewarm::ctl
