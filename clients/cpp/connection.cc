#include "clients/cpp/connection.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "clients/cpp/render.h"

namespace prewarm::ctl {
namespace {

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, absl::string_view what) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open ", what, " '", path, "'"));
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// Plans can be large (up to 10,000 tasks); gRPC's default 4 MiB receive limit is not enough.
constexpr int kMaxReceiveBytes = 256 << 20;

}  // namespace

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(const ConnectionOptions& options) {
  std::unique_ptr<Connection> c(new Connection());
  c->options_ = options;
  if (options.target.empty()) return absl::InvalidArgumentError("--server is empty");
  if (options.client_cert_file.empty() != options.client_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--client-cert and --client-key go together (mTLS needs both)");
  }
  if (!options.token_file.empty()) {
    absl::StatusOr<std::string> token = ReadSmallFile(options.token_file, "token file");
    if (!token.ok()) return token.status();
    c->token_ = std::string(absl::StripAsciiWhitespace(*token));
    if (c->token_.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token file '", options.token_file, "' is empty"));
    }
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveBytes);
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  const bool tls = options.tls || !options.ca_cert_file.empty() ||
                   !options.client_cert_file.empty() || !options.tls_server_name.empty();
  if (tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.ca_cert_file.empty()) {
      absl::StatusOr<std::string> ca = ReadSmallFile(options.ca_cert_file, "CA certificate");
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *std::move(ca);
    }
    if (!options.client_cert_file.empty()) {
      absl::StatusOr<std::string> cert =
          ReadSmallFile(options.client_cert_file, "client certificate");
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadSmallFile(options.client_key_file, "client key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *std::move(cert);
      ssl.pem_private_key = *std::move(key);
    }
    if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  c->channel_ = grpc::CreateCustomChannel(options.target, credentials, args);
  c->stub_ = v1::PrewarmService::NewStub(c->channel_);
  return c;
}

std::unique_ptr<grpc::ClientContext> Connection::NewContext(bool with_deadline) const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (with_deadline) {
    context->set_deadline(std::chrono::system_clock::now() +
                          absl::ToChronoNanoseconds(options_.timeout));
  }
  if (!token_.empty()) context->AddMetadata("authorization", absl::StrCat("Bearer ", token_));
  return context;
}

grpc::Status Connection::Call(
    const std::function<grpc::Status(grpc::ClientContext*)>& attempt) const {
  const absl::Time deadline = absl::Now() + options_.timeout;
  absl::Duration backoff = kFirstBackoff;
  for (;;) {
    std::unique_ptr<grpc::ClientContext> context = NewContext(/*with_deadline=*/false);
    context->set_deadline(absl::ToChronoTime(deadline));
    grpc::Status status = attempt(context.get());
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return status;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return status;
    absl::SleepFor(std::min(backoff, left));
    if (absl::Now() >= deadline) return status;
    backoff = std::min(2 * backoff, kMaxBackoff);
  }
}

Connection::Failure Connection::Classify(const grpc::Status& status) const {
  const std::string code =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
  const std::string detail = absl::StrCat(code, ": ", status.error_message());
  const std::string hint =
      "\nIs prewarmd running there? Choose the server with --server or PREWARM_SERVER.";
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return {kExitConnection,
            absl::StrCat("cannot reach prewarmd at ", options_.target, ": ", detail, hint)};
  }
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
      channel_->GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_READY) {
    return {kExitConnection,
            absl::StrCat("no connection to prewarmd at ", options_.target, " within ",
                         FormatSpan(options_.timeout), " (--timeout): ", detail, hint)};
  }
  return {kExitServer, absl::StrCat("server error: ", detail)};
}

}  // namespace prewarm::ctl
