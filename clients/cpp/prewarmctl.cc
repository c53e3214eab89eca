#include "clients/cpp/prewarmctl.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "clients/cpp/command_line.h"
#include "clients/cpp/connection.h"
#include "clients/cpp/input_files.h"
#include "clients/cpp/render.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/generic/generic_stub.h"

#ifndef PREWARM_VERSION
#define PREWARM_VERSION "unknown"
#endif

namespace prewarm::ctl {

bool Interrupter::Trigger() {
  absl::MutexLock lock(&mu_);
  if (!stop_ || triggered_) return false;
  triggered_ = true;
  stop_();
  return true;
}

void Interrupter::Arm(std::function<void()> stop) {
  absl::MutexLock lock(&mu_);
  stop_ = std::move(stop);
  triggered_ = false;
}

void Interrupter::Disarm() {
  absl::MutexLock lock(&mu_);
  stop_ = nullptr;
}

bool Interrupter::Triggered() const {
  absl::MutexLock lock(&mu_);
  return triggered_;
}

bool Interrupter::Armed() const {
  absl::MutexLock lock(&mu_);
  return stop_ != nullptr;
}

namespace {

constexpr char kDefaultServer[] = "127.0.0.1:50051";
constexpr char kHealthService[] = "prewarm.v1.PrewarmService";

// --- Flags ---------------------------------------------------------------------------------------

const std::vector<FlagSpec>& GlobalFlags() {
  static const auto* flags = new std::vector<FlagSpec>{
      {"server", "HOST:PORT",
       "prewarmd's address (any gRPC target) [$PREWARM_SERVER, else 127.0.0.1:50051]"},
      {"timeout", "DURATION", "deadline of each call: 500ms, 5s, 1m [10s]"},
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

// --- Commands ------------------------------------------------------------------------------------

struct Invocation;

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
  int (*run)(Invocation&) = nullptr;
};

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
  std::unique_ptr<Connection> connection;

  const std::vector<std::string>& positionals() const { return local.positionals; }

  int Usage(absl::string_view message) {
    err << "prewarmctl: " << message << "\nRun 'prewarmctl " << command.path
        << " --help' for usage and examples.\n";
    return kExitUsage;
  }

  // Opens the connection; on failure writes the usage error and returns false.
  bool Connect(int* exit_code) {
    absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Open(connection_options);
    if (!c.ok()) {
      *exit_code = Usage(c.status().message());
      return false;
    }
    connection = *std::move(c);
    return true;
  }

  int Fail(const grpc::Status& status, absl::string_view context = "") {
    const Connection::Failure f = connection->Classify(status);
    err << "prewarmctl: " << context << f.message << "\n";
    return f.exit_code;
  }

  int Print(const std::string& text) {
    out << text;
    out.flush();
    return out ? kExitOk : kExitFailure;
  }
};

// Duration flag `name` into `*field()` when given (`field` is not called otherwise: mutable_*()
// would mark the field set); false (after writing the usage error) when the value is bad.
bool DurationFlag(Invocation& inv, absl::string_view name,
                  const std::function<google::protobuf::Duration*()>& field, int* exit_code) {
  const std::optional<std::string> text = inv.local.Get(name);
  if (!text.has_value()) return true;
  absl::StatusOr<absl::Duration> d = ParseDurationArg(*text, absl::StrCat("--", name));
  if (!d.ok()) {
    *exit_code = inv.Usage(d.status().message());
    return false;
  }
  *field() = ToProto(*d);
  return true;
}

int ServicesList(Invocation& inv) {
  int code = kExitOk;
  if (!inv.Connect(&code)) return code;
  v1::ListServicesResponse response;
  const grpc::Status status =
      inv.connection->stub().ListServices(inv.connection->NewContext().get(), {}, &response);
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
    if (!DurationFlag(inv, "timeout", [&] { return s.mutable_warmup_timeout(); }, &code) ||
        !DurationFlag(inv, "keep-alive", [&] { return s.mutable_keep_alive(); }, &code) ||
        !DurationFlag(inv, "cold-start-prior", [&] { return s.mutable_cold_start_prior(); },
                      &code) ||
        !DurationFlag(inv, "warm-latency", [&] { return s.mutable_warm_latency(); }, &code)) {
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
    const grpc::Status status = inv.connection->stub().RegisterService(
        inv.connection->NewContext().get(), request, &response);
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
  const grpc::Status status =
      inv.connection->stub().Prewarm(inv.connection->NewContext().get(), *request, &response);
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
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown event '", text, "': started, invoked, finished, failed or skipped"));
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
  if (!DurationFlag(inv, "cold-start", [&] { return request.mutable_cold_start(); }, &code)) {
    return code;
  }

  if (!inv.Connect(&code)) return code;
  v1::ReportTimingResponse response;
  const grpc::Status status = inv.connection->stub().ReportTiming(
      inv.connection->NewContext().get(), request, &response);
  if (!status.ok()) return inv.Fail(status);
  return inv.Print(inv.json ? ToJson(response) : RenderReport(request, response));
}

int RunCancel(Invocation& inv) {
  v1::CancelRunRequest request;
  request.set_run_id(inv.positionals()[0]);
  int code = kExitOk;
  if (!inv.Connect(&code)) return code;
  v1::CancelRunResponse response;
  const grpc::Status status =
      inv.connection->stub().CancelRun(inv.connection->NewContext().get(), request, &response);
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
  const grpc::Status status =
      inv.connection->stub().GetPlan(inv.connection->NewContext().get(), request, &response);
  if (!status.ok()) return inv.Fail(status);
  return inv.Print(inv.json ? ToJson(response) : RenderPlan(response.plan()));
}

int Stats(Invocation& inv) {
  v1::GetServiceStatsRequest request;
  request.set_service(inv.positionals()[0]);
  int code = kExitOk;
  if (!inv.Connect(&code)) return code;
  v1::GetServiceStatsResponse response;
  const grpc::Status status = inv.connection->stub().GetServiceStats(
      inv.connection->NewContext().get(), request, &response);
  if (!status.ok()) return inv.Fail(status);
  return inv.Print(inv.json ? ToJson(response) : RenderStats(response));
}

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
  std::unique_ptr<grpc::ClientContext> context = inv.connection->NewContext(/*with_deadline=*/false);
  std::unique_ptr<grpc::ClientReader<v1::WatchWarmupsResponse>> reader =
      inv.connection->stub().WatchWarmups(context.get(), request);
  if (inv.env.interrupter != nullptr) {
    grpc::ClientContext* raw = context.get();
    inv.env.interrupter->Arm([raw] { raw->TryCancel(); });
  }
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
  if (!DurationFlag(inv, "latency", [&] { return request.mutable_latency(); }, &code)) return code;
  if (std::optional<std::string> c = inv.local.Get("cold")) {
    absl::StatusOr<bool> cold = ParseBoolArg(*c, "--cold");
    if (!cold.ok()) return inv.Usage(cold.status().message());
    request.set_cold(*cold);
  }
  request.set_error_message(inv.local.Get("error").value_or(""));
  if (!inv.Connect(&code)) return code;
  v1::ReportWarmupResponse response;
  const grpc::Status status = inv.connection->stub().ReportWarmup(
      inv.connection->NewContext().get(), request, &response);
  if (!status.ok()) return inv.Fail(status);
  if (inv.json) return inv.Print(ToJson(response));
  return inv.Print(absl::StrCat("Reported warm-up ", request.warmup_id(), ": ",
                                request.success() ? "ok" : "failed",
                                request.has_latency()
                                    ? absl::StrCat(" in ", FormatSpan(FromProto(request.latency())))
                                    : "",
                                ".\n"));
}

// grpc.health.v1.Health/Check, called generically (Debian ships no generated health stubs):
// HealthCheckRequest is {string service = 1}; HealthCheckResponse is {ServingStatus status = 1}.
int Health(Invocation& inv) {
  const std::string service = inv.local.Get("service").value_or(kHealthService);
  std::string request_bytes;
  if (!service.empty()) {
    request_bytes.push_back(0x0a);  // Field 1, length-delimited.
    for (size_t n = service.size(); true; n >>= 7) {  // Varint length.
      if (n < 0x80) {
        request_bytes.push_back(static_cast<char>(n));
        break;
      }
      request_bytes.push_back(static_cast<char>((n & 0x7f) | 0x80));
    }
    request_bytes += service;
  }
  int code = kExitOk;
  if (!inv.Connect(&code)) return code;
  grpc::GenericStub generic(inv.connection->channel());
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  std::unique_ptr<grpc::ClientContext> context = inv.connection->NewContext();
  std::promise<grpc::Status> done;
  generic.UnaryCall(context.get(), "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                    &response, [&done](grpc::Status s) { done.set_value(std::move(s)); });
  const grpc::Status status = done.get_future().get();
  if (!status.ok()) return inv.Fail(status);
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (response.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  google::protobuf::UnknownFieldSet fields;
  int serving_status = 0;
  if (fields.ParseFromString(bytes)) {
    for (int i = 0; i < fields.field_count(); ++i) {
      if (fields.field(i).number() == 1 &&
          fields.field(i).type() == google::protobuf::UnknownField::TYPE_VARINT) {
        serving_status = static_cast<int>(fields.field(i).varint());
      }
    }
  }
  static const char* const kNames[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
  const std::string name = serving_status >= 0 && serving_status < 4
                               ? kNames[serving_status]
                               : absl::StrCat(serving_status);
  const std::string what = service.empty() ? "prewarmd" : service;
  google::protobuf::Value json;  // The proto3 JSON of HealthCheckResponse.
  (*json.mutable_struct_value()->mutable_fields())["status"].set_string_value(name);
  const int print = inv.Print(inv.json ? ToJson(json)
                                       : absl::StrCat(what, " at ", inv.connection_options.target,
                                                      ": ", name, "\n"));
  if (serving_status != 1) {
    inv.err << "prewarmctl: server error: " << what << " is " << name << "\n";
    return kExitServer;
  }
  return print;
}

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>{
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
           "prewarm.v1.Service, as JSON or YAML (a subset: block mappings and lists, flow lists, "
           "quoted and plain scalars, comments; no anchors or block scalars): a list, "
           "{\"services\": [...]} (what '--output json services list' prints) or one service. "
           "Durations may be written \"90s\", \"1m30s\", \"1500ms\" or as seconds. Services are "
           "registered in file order; the first failure stops (the earlier ones stay "
           "registered).\n\n"
           "With --output json: the RegisterServiceResponse, or a JSON list of them for --file.",
       .flags = {{"name", "NAME", "service name: 1 to 128 characters of [A-Za-z0-9._-]"},
                 {"url", "URL", "warm-up URL (http or https); required for managed services"},
                 {"method", "METHOD", "GET, POST or HEAD [GET]"},
                 {"timeout", "DURATION", "timeout of one warm-up attempt [server: 30s]"},
                 {"keep-alive", "DURATION",
                  "how long the platform keeps an idle container [server's default]"},
                 {"cold-start-prior", "DURATION",
                  "cold start assumed until learned [server's default]"},
                 {"warm-latency", "DURATION",
                  "answers at most this slow are warm [learned, or 50ms]"},
                 {"mode", "MODE", "managed (prewarmd fires) or delegated (a watcher fires) [managed]"},
                 {"container-concurrency", "N",
                  "requests a container serves at once (0: unlimited; Lambda: 1) [0]"},
                 {"file", "FILE", "register every service of a JSON or YAML file (- for stdin)"}},
       .examples =
           {"# A Knative service that prewarmd warms itself",
            "prewarmctl services register --name svc-a \\",
            "    --url http://svc-a.default.svc.cluster.local/warmup --keep-alive 90s "
            "--cold-start-prior 2.5s",
            "# A Lambda function warmed by your own watcher",
            "prewarmctl services register --name resize --mode delegated "
            "--container-concurrency 1",
            "# Several at once; services.yaml:",
            "#   services:",
            "#     - name: svc-a",
            "#       warmup_url: http://127.0.0.1:8081/warmup",
            "#       keep_alive: 90s",
            "#     - {name: resize, mode: WARMUP_MODE_DELEGATED, container_concurrency: 1}",
            "prewarmctl services register --file services.yaml"},
       .run = ServicesRegister},
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
       .examples = {"prewarmctl plan run-1",
                    "# Tasks that paid a cold start",
                    "prewarmctl --output json plan run-1 | "
                    "jq -r '.plan.tasks[] | select(.outcome == \"TASK_OUTCOME_MISS\") | .task_id'"},
       .min_args = 1,
       .max_args = 1,
       .run = Plan},
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
       .examples = {"prewarmctl watch",
                    "prewarmctl watch --service resize --service thumbnail",
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
      {.path = "health",
       .summary = "Check that prewarmd is up and serving",
       .usage = {"health [--service NAME]"},
       .description =
           "Calls the standard grpc.health.v1 Check for prewarm.v1.PrewarmService (or NAME; "
           "\"\" for the whole server). Exit code 0 when SERVING, 4 otherwise, 3 when prewarmd "
           "cannot be reached.",
       .flags = {{"service", "NAME", "the service to check [prewarm.v1.PrewarmService]"}},
       .examples = {"prewarmctl health",
                    "prewarmctl --server prewarm.internal:50051 --tls health"},
       .run = Health},
  };
  return *commands;
}

// --- Help ----------------------------------------------------------------------------------------

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

// Wraps prose lines at `width` columns; indented lines (examples, JSON) are kept as they are.
std::string Wrap(absl::string_view text, size_t width = 100) {
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
    absl::StrAppend(&out, i == 0 ? "Usage: " : "       ", "prewarmctl [global flags] ",
                    c.usage[i], "\n");
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

// Commands whose path starts with `group ` ("services" -> list, register).
std::string GroupHelp(absl::string_view group) {
  std::string out = absl::StrCat("Commands of 'prewarmctl ", group, "':\n");
  for (const Command& c : Commands()) {
    if (absl::StartsWith(c.path, absl::StrCat(group, " "))) {
      absl::StrAppend(&out, "  prewarmctl ", c.path, "   ", c.summary, "\n");
    }
  }
  absl::StrAppend(&out, "Run 'prewarmctl ", group, " COMMAND --help' for its flags and examples.\n");
  return out;
}

bool IsGroup(absl::string_view word) {
  for (const Command& c : Commands()) {
    if (absl::StartsWith(c.path, absl::StrCat(word, " "))) return true;
  }
  return false;
}

// The command named by words[0] (and words[1]); sets *used to how many words it took.
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
  if (absl::Status s = ParseFlags(args, 1, Pointers(GlobalFlags()), /*stop_at_positional=*/true,
                                  global, &next);
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
      return TopUsage(err, rest.size() < 2 ? absl::StrCat("'", rest[0], "' needs a command")
                                           : absl::StrCat("unknown command '", rest[0], " ",
                                                          rest[1], "'"));
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
  if (absl::Status s = ParseFlags(rest, used, specs, /*stop_at_positional=*/false, inv.local, &next);
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
