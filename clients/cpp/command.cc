#include "clients/cpp/command.h"

#include <optional>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "clients/cpp/render.h"

namespace prewarm::ctl {

int Invocation::Usage(absl::string_view message) {
  err << "prewarmctl: " << message << "\nRun 'prewarmctl " << command.path
      << " --help' for usage and examples.\n";
  return kExitUsage;
}

bool Invocation::Connect(int* exit_code) {
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Open(connection_options);
  if (!c.ok()) {
    *exit_code = Usage(c.status().message());
    return false;
  }
  connection = *std::move(c);
  return true;
}

int Invocation::Fail(const grpc::Status& status, absl::string_view context) {
  const Connection::Failure f = connection->Classify(status);
  err << "prewarmctl: " << context << f.message << "\n";
  return f.exit_code;
}

int Invocation::Print(const std::string& text) {
  out << text;
  out.flush();
  return out ? kExitOk : kExitFailure;
}

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

}  // namespace prewarm::ctl
