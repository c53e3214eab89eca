#include "server/server.h"

#include <fstream>
#include <future>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/log.h"
#include "server/url_allowlist.h"

namespace prewarm {
namespace {

constexpr char kServiceName[] = "prewarm.v1.PrewarmService";

absl::StatusOr<std::string> ReadPem(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", what, " '", path, "'"));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerOptions& o) {
  if (o.tls_cert_file.empty() && o.tls_key_file.empty()) {
    if (!o.tls_client_ca_file.empty()) {
      return absl::InvalidArgumentError("a TLS client CA needs a server certificate and key");
    }
    return grpc::InsecureServerCredentials();
  }
  if (o.tls_cert_file.empty() || o.tls_key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate and a key file");
  }
  absl::StatusOr<std::string> cert = ReadPem(o.tls_cert_file, "TLS certificate");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem(o.tls_key_file, "TLS key");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  if (!o.tls_client_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPem(o.tls_client_ca_file, "TLS client CA");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options,
                                                      Clock& clock) {
  SetMinLogLevel(options.log_level);
  std::unique_ptr<Server> s(new Server());

  absl::StatusOr<UrlAllowlist> allowlist = UrlAllowlist::Create(options.allowlist);
  if (!allowlist.ok()) return allowlist.status();
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = Credentials(options);
  if (!credentials.ok()) return credentials.status();

  absl::StatusOr<std::unique_ptr<Metrics>> metrics =
      Metrics::Create({.listen_address = options.metrics_address});
  if (!metrics.ok()) return metrics.status();
  s->metrics_ = *std::move(metrics);

  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(
      {.path = options.store_path,
       .max_observations_per_key = options.registry.history.window_size,
       .synchronous_full = options.store_sync_full,
       .accept_empty = options.store_accept_empty});
  if (!store.ok()) return store.status();
  s->store_ = *std::move(store);

  s->services_ = std::make_unique<ServiceRegistry>(*std::move(allowlist), options.service_defaults);
  s->timers_ = std::make_unique<TimerQueue>(clock);
  absl::StatusOr<std::unique_ptr<HttpWarmer>> warmer = HttpWarmer::Create({}, clock);
  if (!warmer.ok()) return warmer.status();
  s->warmer_ = *std::move(warmer);
  s->delegated_ = std::make_unique<DelegatedWarmups>();
  s->registry_ = std::make_unique<RunRegistry>(
      options.registry, RunRegistryDeps{.clock = &clock,
                                        .services = s->services_.get(),
                                        .timers = s->timers_.get(),
                                        .warmer = s->warmer_.get(),
                                        .delegated = s->delegated_.get(),
                                        .store = s->store_.get(),
                                        .metrics = s->metrics_.get()});
  if (absl::Status restored = s->registry_->Restore(); !restored.ok()) return restored;

  for (const v1::Service& service : options.services) {
    std::promise<absl::Status> registered;
    s->registry_->RegisterService(service, [&](absl::StatusOr<v1::RegisterServiceResponse> r) {
      registered.set_value(r.status());
    });
    if (absl::Status st = registered.get_future().get(); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat("configured service '", service.name(),
                                                  "': ", st.message()));
    }
  }
  s->timers_->Start();

  s->service_ = std::make_unique<PrewarmService>(*s->registry_, *s->services_, *s->delegated_,
                                                 *s->metrics_, clock, options.bearer_token);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.grpc_address, *credentials, &s->grpc_port_);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.RegisterService(s->service_.get());
  s->grpc_ = builder.BuildAndStart();
  if (s->grpc_ == nullptr || s->grpc_port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for gRPC on '", options.grpc_address, "'"));
  }
  grpc::HealthCheckServiceInterface* health = s->grpc_->GetHealthCheckService();
  if (health != nullptr) {
    health->SetServingStatus(kServiceName, true);
    health->SetServingStatus("", true);
  }
  PREWARM_LOG(INFO) << "prewarmd serving gRPC on port " << s->grpc_port_ << ", metrics on port "
                    << s->metrics_->port() << ", store '" << options.store_path << "'";
  return s;
}

absl::Status Server::Shutdown(absl::Duration grace) {
  if (shut_down_) return absl::OkStatus();
  shut_down_ = true;
  if (grpc_ != nullptr) {
    if (auto* health = grpc_->GetHealthCheckService()) health->Shutdown();
    // gRPC's own graceful shutdown waits for every client to close its connection (an idle
    // channel is held open for the whole deadline, measured 5 s per SIGTERM). Wait instead for
    // the calls that are doing work, then close everything at once.
    service_->Drain();
    if (!service_->WaitUntilIdle(grace)) {
      PREWARM_LOG(WARNING) << "calls still running after the shutdown grace of " << grace
                           << "; cancelling them";
    }
    grpc_->Shutdown(std::chrono::system_clock::now());
    grpc_->Wait();
  }
  // Timers and the warmer call into the registry: stop them while it is alive.
  if (timers_ != nullptr) timers_->Stop();
  if (warmer_ != nullptr) warmer_->Shutdown();
  absl::Status status = store_ != nullptr ? store_->Close() : absl::OkStatus();
  PREWARM_LOG(INFO) << "prewarmd stopped" << (status.ok() ? "" : ": ") << status.message();
  return status;
}

Server::~Server() { (void)Shutdown(absl::ZeroDuration()); }

}  // namespace prewarm
