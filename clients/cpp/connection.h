#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "prewarm/v1/prewarm.grpc.pb.h"

namespace prewarm::ctl {

// prewarmctl's exit codes; scripts branch on them.
enum ExitCode : int {
  kExitOk = 0,
  // Something prewarmctl itself could not do (write the output).
  kExitFailure = 1,
  // Bad flags, arguments or input file: fix the command line.
  kExitUsage = 2,
  // prewarmd could not be reached (UNAVAILABLE, or DEADLINE_EXCEEDED before a connection):
  // retrying later may help.
  kExitConnection = 3,
  // prewarmd answered with an error (any other status); the message is the server's.
  kExitServer = 4,
};

// How to reach prewarmd.
struct ConnectionOptions {
  // host:port, or any gRPC target ("dns:///prewarm.example:50051", "unix:///run/prewarm.sock").
  std::string target = "127.0.0.1:50051";
  // Deadline of each unary call (streams have none).
  absl::Duration timeout = absl::Seconds(10);
  // TLS with the system's roots unless ca_cert_file is set. Any of the files below implies TLS.
  bool tls = false;
  std::string ca_cert_file;
  // mTLS: both or neither.
  std::string client_cert_file;
  std::string client_key_file;
  // Overrides the name checked against the server's certificate (testing with IP targets).
  std::string tls_server_name;
  // File holding the bearer token sent as "authorization: Bearer <token>".
  std::string token_file;
};

// A channel to prewarmd with the options every call needs. Thread-safe (as gRPC stubs are).
class Connection {
 public:
  // Reads the TLS and token files and creates the channel; connecting happens on the first call.
  // INVALID_ARGUMENT or NOT_FOUND name an unreadable or inconsistent file option.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const ConnectionOptions& options);

  v1::PrewarmService::Stub& stub() { return *stub_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const ConnectionOptions& options() const { return options_; }

  // A context carrying the token and, when `with_deadline`, the unary deadline.
  std::unique_ptr<grpc::ClientContext> NewContext(bool with_deadline = true) const;

  // Runs one unary call, `attempt(context)`, and while it fails with UNAVAILABLE (prewarmd
  // restarting, or a standby replica answering while another takes over) runs it again after a
  // backoff (kFirstBackoff, doubling up to kMaxBackoff) with a fresh context, until
  // options.timeout from the first attempt has passed: each attempt's deadline is what remains
  // of it. Returns the last attempt's status.
  grpc::Status Call(const std::function<grpc::Status(grpc::ClientContext*)>& attempt) const;
  static constexpr absl::Duration kFirstBackoff = absl::Milliseconds(50);
  static constexpr absl::Duration kMaxBackoff = absl::Seconds(1);

  // What a failed call means: the exit code and a message for stderr (the server's code and
  // message for server errors; the address and a hint for connection errors).
  struct Failure {
    int exit_code;
    std::string message;
  };
  // REQUIRES: !status.ok().
  Failure Classify(const grpc::Status& status) const;

 private:
  Connection() = default;

  ConnectionOptions options_;
  std::string token_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PrewarmService::Stub> stub_;
};

}  // namespace prewarm::ctl
