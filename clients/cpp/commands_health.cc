#include "clients/cpp/commands_health.h"

#include <future>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/cpp/connection.h"
#include "clients/cpp/render.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/generic/generic_stub.h"

namespace prewarm::ctl {
namespace {

constexpr char kHealthService[] = "prewarm.v1.PrewarmService";

// grpc.health.v1.Health/Check, called generically (Debian ships no generated health stubs):
// HealthCheckRequest is {string service = 1}; HealthCheckResponse is {ServingStatus status = 1}.
int Health(Invocation& inv) {
  const std::string service = inv.local.Get("service").value_or(kHealthService);
  std::string request_bytes;
  if (!service.empty()) {
    request_bytes.push_back(0x0a);                    // Field 1, length-delimited.
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
  const grpc::Status status = inv.connection->Call([&](grpc::ClientContext* context) {
    std::promise<grpc::Status> done;
    generic.UnaryCall(context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                      &response, [&done](grpc::Status s) { done.set_value(std::move(s)); });
    return done.get_future().get();
  });
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
  const std::string name = serving_status >= 0 && serving_status < 4 ? kNames[serving_status]
                                                                     : absl::StrCat(serving_status);
  const std::string what = service.empty() ? "prewarmd" : service;
  google::protobuf::Value json;  // The proto3 JSON of HealthCheckResponse.
  (*json.mutable_struct_value()->mutable_fields())["status"].set_string_value(name);
  const int print = inv.Print(
      inv.json ? ToJson(json)
               : absl::StrCat(what, " at ", inv.connection_options.target, ": ", name, "\n"));
  if (serving_status != 1) {
    inv.err << "prewarmctl: server error: " << what << " is " << name << "\n";
    return kExitServer;
  }
  return print;
}

}  // namespace

std::vector<Command> HealthCommands() {
  return {
      {.path = "health",
       .summary = "Check that prewarmd is up and serving",
       .usage = {"health [--service NAME]"},
       .description =
           "Calls the standard grpc.health.v1 Check for prewarm.v1.PrewarmService (or NAME; "
           "\"\" for the whole server). Exit code 0 when SERVING, 4 otherwise, 3 when prewarmd "
           "cannot be reached.",
       .flags = {{"service", "NAME", "the service to check [prewarm.v1.PrewarmService]"}},
       .examples = {"prewarmctl health", "prewarmctl --server prewarm.internal:50051 --tls health"},
       .run = Health},
  };
}

}  // namespace prewarm::ctl
