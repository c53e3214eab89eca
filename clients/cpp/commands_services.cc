#include "clients/cpp/commands_services.h"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "clients/cpp/connection.h"
#include "clients/cpp/input_files.h"
#include "clients/cpp/render.h"

namespace prewarm::ctl {
namespace {

int ServicesList(Invocation& inv) {
  int code = kExitOk;
  if (!inv.Connect(&code)) return code;
  v1::ListServicesResponse response;
  const grpc::Status status = inv.connection->Call([&](grpc::ClientContext* context) {
    return inv.connection->stub().ListServices(context, {}, &response);
  });
  if (!status.ok()) return inv.Fail(status);
  return inv.Print(inv.json ? ToJson(response) : RenderServices(response));
}

int ServicesRegister(Invocation& inv) {
  int code = kExitOk;
  const std::vector<std::string> service_flags = {
      "name",         "url",        "method",
      "timeout",      "keep-alive", "cold-start-prior",
      "warm-latency", "mode",       "container-concurrency"};
  std::vector<v1::Service> services;
  const std::optional<std::string> file = inv.local.Get("file");
  if (file.has_value()) {
    for (const std::string& f : service_flags) {
      if (inv.local.Has(f)) return inv.Usage(absl::StrCat("--file cannot be combined with --", f));
    }
    absl::StatusOr<std::string> text = ReadInput(*file, *inv.env.stdin_stream);
    if (!text.ok()) return inv.Usage(text.status().message());
    absl::StatusOr<std::vector<v1::Service>> parsed =
        ParseServices(*text, FormatFromPath(*file), *file == "-" ? "stdin" : *file);
    if (!parsed.ok()) return inv.Usage(parsed.status().message());
    services = *std::move(parsed);
  } else {
    const std::optional<std::string> name = inv.local.Get("name");
    if (!name.has_value()) return inv.Usage("give --name (and --url), or --file");
    v1::Service s;
    s.set_name(*name);
    s.set_warmup_url(inv.local.Get("url").value_or(""));
    s.set_warmup_method(absl::AsciiStrToUpper(inv.local.Get("method").value_or("")));
    if (!DurationFlag(
            inv, "timeout", [&] { return s.mutable_warmup_timeout(); }, &code) ||
        !DurationFlag(
            inv, "keep-alive", [&] { return s.mutable_keep_alive(); }, &code) ||
        !DurationFlag(
            inv, "cold-start-prior", [&] { return s.mutable_cold_start_prior(); }, &code) ||
        !DurationFlag(
            inv, "warm-latency", [&] { return s.mutable_warm_latency(); }, &code)) {
      return code;
    }
    if (std::optional<std::string> c = inv.local.Get("container-concurrency")) {
      int32_t concurrency = 0;
      // The upper bound (10000) is the server's rule: it answers INVALID_ARGUMENT beyond it.
      if (!absl::SimpleAtoi(*c, &concurrency) || concurrency < 0) {
        return inv.Usage(absl::StrCat(
            "--container-concurrency must be an integer >= 0 (0: unlimited), not '", *c, "'"));
      }
      s.set_container_concurrency(concurrency);
    }
    const std::string mode = absl::AsciiStrToLower(inv.local.Get("mode").value_or("managed"));
    if (mode == "managed") {
      s.set_mode(v1::WARMUP_MODE_MANAGED);
    } else if (mode == "delegated") {
      s.set_mode(v1::WARMUP_MODE_DELEGATED);
    } else {
      return inv.Usage(absl::StrCat("--mode is managed or delegated, not '", mode, "'"));
    }
    services.push_back(std::move(s));
  }

  if (!inv.Connect(&code)) return code;
  std::vector<v1::RegisterServiceResponse> responses;
  for (size_t i = 0; i < services.size(); ++i) {
    v1::RegisterServiceRequest request;
    *request.mutable_service() = services[i];
    v1::RegisterServiceResponse response;
    const grpc::Status status = inv.connection->Call([&](grpc::ClientContext* context) {
      return inv.connection->stub().RegisterService(context, request, &response);
    });
    if (!status.ok()) {
      std::string context = absl::StrCat("service '", services[i].name(), "'");
      if (file.has_value()) {
        absl::StrAppend(&context, " (entry ", i, " of ", *file, "; ", i,
                        i == 1 ? " service was" : " services were", " registered before it)");
      }
      return inv.Fail(status, absl::StrCat(context, ": "));
    }
    responses.push_back(std::move(response));
  }
  if (!inv.json) return inv.Print(RenderRegistered(responses));
  if (!file.has_value()) return inv.Print(ToJson(responses[0]));
  std::vector<std::string> objects;
  for (const auto& r : responses) {
    objects.push_back(std::string(absl::StripTrailingAsciiWhitespace(ToJson(r))));
  }
  return inv.Print(absl::StrCat("[\n", absl::StrJoin(objects, ",\n"), "\n]\n"));
}

}  // namespace

std::vector<Command> ServicesCommands() {
  return {
      {.path = "services list",
       .summary = "List the registered services",
       .usage = {"services list"},
       .description = "Lists every registered warm-up target, ordered by name, with the defaults "
                      "the server filled in.",
       .flags = {},
       .examples = {"prewarmctl services list",
                    "# Save the services to register them elsewhere (services register --file)",
                    "prewarmctl --output json services list > services.json"},
       .run = ServicesList},
      {.path = "services register",
       .summary = "Register or replace services, from flags or a JSON/YAML file",
       .usage = {"services register --name NAME --url URL [--method GET] [--timeout 30s]\n"
                 "                    [--keep-alive 90s] [--cold-start-prior 2s] "
                 "[--warm-latency 50ms] [--mode managed]\n"
                 "                    [--container-concurrency N]",
                 "services register --name NAME --mode delegated [--container-concurrency N]",
                 "services register --file FILE"},
       .description =
           "Creates a warm-up target, or replaces the one of that name. Managed services are "
           "warmed by prewarmd with an HTTP request to --url, which must match the server's "
           "outbound allowlist (loopback and *.svc.cluster.local by default). Delegated services "
           "are warmed by a watcher (see 'prewarmctl watch').\n\n"
           "--container-concurrency is how many requests one container serves at once. 0 (the "
           "default) means unlimited: a warm service is warm for every run. Give 1 for Lambda, or "
           "Knative's containerConcurrency; prewarmd then warms again when another run's task "
           "holds the container.\n\n"
           "FILE (or - for stdin) holds a list of services in the proto3 JSON mapping of "
           "prewarm.v1.Service, as JSON or YAML (anchors and block scalars included): a list, "
           "{\"services\": [...]} (what '--output json services list' prints) or one service. "
           "Durations may be written \"90s\", \"1m30s\", \"1500ms\" or as seconds. Services are "
           "registered in file order; the first failure stops (the earlier ones stay "
           "registered).\n\n"
           "With --output json: the RegisterServiceResponse, or a JSON list of them for --file.",
       .flags =
           {{"name", "NAME", "service name: 1 to 128 characters of [A-Za-z0-9._-]"},
            {"url", "URL", "warm-up URL (http or https); required for managed services"},
            {"method", "METHOD", "GET, POST or HEAD [GET]"},
            {"timeout", "DURATION", "timeout of one warm-up attempt [server: 30s]"},
            {"keep-alive", "DURATION",
             "how long the platform keeps an idle container [server's default]"},
            {"cold-start-prior", "DURATION", "cold start assumed until learned [server's default]"},
            {"warm-latency", "DURATION", "answers at most this slow are warm [learned, or 50ms]"},
            {"mode", "MODE", "managed (prewarmd fires) or delegated (a watcher fires) [managed]"},
            {"container-concurrency", "N",
             "requests a container serves at once (0: unlimited; Lambda: 1) [0]"},
            {"file", "FILE", "register every service of a JSON or YAML file (- for stdin)"}},
       .examples = {"# A Knative service that prewarmd warms itself",
                    "prewarmctl services register --name svc-a \\",
                    "    --url http://svc-a.default.svc.cluster.local/warmup --keep-alive 90s "
                    "--cold-start-prior 2.5s",
                    "# A Lambda function warmed by your own watcher",
                    "prewarmctl services register --name resize --mode delegated "
                    "--container-concurrency 1",
                    "# Several at once; services.yaml:", "#   services:", "#     - name: svc-a",
                    "#       warmup_url: http://127.0.0.1:8081/warmup", "#       keep_alive: 90s",
                    "#     - {name: resize, mode: WARMUP_MODE_DELEGATED, container_concurrency: 1}",
                    "prewarmctl services register --file services.yaml"},
       .run = ServicesRegister},
  };
}

}  // namespace prewarm::ctl
