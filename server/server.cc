#include "server/server.h"

#include <unistd.h>

#include <fstream>
#include <future>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "predictor/check.h"
#include "server/log.h"
#include "server/postgres_connection.h"
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

// One leadership: what a replica builds when it starts leading and tears down when it stops.
struct Server::Term {
  std::unique_ptr<HistoryStore> store;
  std::unique_ptr<ServiceRegistry> services;
  std::unique_ptr<TimerQueue> timers;
  std::unique_ptr<HttpWarmer> warmer;
  std::unique_ptr<RunRegistry> registry;
  std::unique_ptr<PrewarmService> service;

  // Stops firing, then closes the store (which runs every pending write's callback, so that
  // calls waiting on one finish); returns the store's last error.
  absl::Status Stop() {
    // Timers and the warmer call into the registry: stop them while it is alive.
    if (timers != nullptr) timers->Stop();
    if (warmer != nullptr) warmer->Shutdown();
    return store != nullptr ? store->Close() : absl::OkStatus();
  }
};

Server::Server(const ServerOptions& options, Clock& clock) : options_(options), clock_(clock) {}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options, Clock& clock) {
  SetMinLogLevel(options.log_level);
  std::unique_ptr<Server> s(new Server(options, clock));

  // Checked once up front, so that a bad allowlist fails the start rather than every election.
  if (absl::StatusOr<UrlAllowlist> allowlist = UrlAllowlist::Create(options.allowlist);
      !allowlist.ok()) {
    return allowlist.status();
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = Credentials(options);
  if (!credentials.ok()) return credentials.status();

  absl::StatusOr<std::unique_ptr<Metrics>> metrics =
      Metrics::Create({.listen_address = options.metrics_address});
  if (!metrics.ok()) return metrics.status();
  s->metrics_ = *std::move(metrics);
  s->delegated_ = std::make_unique<DelegatedWarmups>();

  const bool replicated = pg::IsPostgresUri(options.store_path);
  std::string replica_id = options.replica_id;
  if (replica_id.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    replica_id = absl::StrCat(host, "-", getpid());
  }
  s->gate_ = std::make_unique<GatedPrewarmService>(
      *s->metrics_, options.bearer_token,
      absl::StrCat("standby: replica ", replica_id, " has not become the leader yet (store ",
                   pg::Describe(options.store_path), ")"));
  s->metrics_->SetLeader(false);
  if (!replicated) {
    // The only replica: lead at once, before listening, so that a bad store fails the start.
    if (absl::Status started = s->StartTerm(/*epoch=*/0); !started.ok()) return started;
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.grpc_address, *credentials, &s->grpc_port_);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.RegisterService(s->gate_.get());
  s->grpc_ = builder.BuildAndStart();
  if (s->grpc_ == nullptr || s->grpc_port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for gRPC on '", options.grpc_address, "'"));
  }
  s->SetServing(s->leading());

  if (replicated) {
    Server* server = s.get();
    absl::StatusOr<std::unique_ptr<PostgresLeader>> leader = PostgresLeader::Start(
        {.uri = options.store_path,
         .replica_id = replica_id,
         .poll = options.leader_poll,
         .lease = options.leader_lease},
        [server](int64_t epoch) { return server->StartTerm(epoch); },
        [server](const absl::Status& reason) {
          absl::Status stopped = server->StopTerm(
              absl::StrCat("standby: this replica stepped down: ", reason.message()),
              server->step_down_grace_);
          if (!stopped.ok()) PREWARM_LOG(WARNING) << "stepping down: " << stopped;
          absl::MutexLock lock(&server->term_mu_);
          if (server->stop_status_.ok()) server->stop_status_ = stopped;
        },
        [server](const std::string& state) {
          // What a standby answers: who leads, or why nobody does.
          if (absl::StartsWith(state, "standby")) server->gate_->SetReason(state);
        });
    if (!leader.ok()) return leader.status();
    s->leader_ = *std::move(leader);
  }
  PREWARM_LOG(INFO) << "prewarmd serving gRPC on port " << s->grpc_port_ << ", metrics on port "
                    << s->metrics_->port() << ", store '" << pg::Describe(options.store_path) << "'"
                    << (replicated ? absl::StrCat(" as replica ", replica_id) : "");
  return s;
}

void Server::SetServing(bool serving) {
  if (grpc_ == nullptr) return;
  if (grpc::HealthCheckServiceInterface* health = grpc_->GetHealthCheckService()) {
    // The service answers for leadership (readiness: route calls here); the server as a whole
    // ("") for the process being up (liveness: a standby must not be restarted).
    health->SetServingStatus(kServiceName, serving);
    health->SetServingStatus("", true);
  }
}

absl::Status Server::StartTerm(int64_t epoch) {
  const ServerOptions& options = options_;
  auto t = std::make_unique<Term>();
  auto fail = [&t](absl::Status status) {
    t->Stop().IgnoreError();
    return status;
  };
  Metrics* metrics = metrics_.get();
  const bool postgres = pg::IsPostgresUri(options.store_path);
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::Open(
      {.path = options.store_path,
       .max_observations_per_key = options.registry.history.window_size,
       .synchronous_full = options.store_sync_full,
       .accept_empty = options.store_accept_empty,
       .fencing_epoch = epoch,
       // A transaction's round trip to PostgreSQL; SQLite has none (StoreWrite covers it).
       .on_commit =
           postgres ? [metrics](bool, absl::Duration latency) { metrics->StoreRoundTrip(latency); }
                    : std::function<void(bool, absl::Duration)>()});
  if (!store.ok()) return store.status();
  t->store = *std::move(store);

  absl::StatusOr<UrlAllowlist> allowlist = UrlAllowlist::Create(options.allowlist);
  if (!allowlist.ok()) return fail(allowlist.status());
  t->services = std::make_unique<ServiceRegistry>(*std::move(allowlist), options.service_defaults);
  t->timers = std::make_unique<TimerQueue>(clock_);
  absl::StatusOr<std::unique_ptr<HttpWarmer>> warmer = HttpWarmer::Create({}, clock_);
  if (!warmer.ok()) return fail(warmer.status());
  t->warmer = *std::move(warmer);
  t->registry =
      std::make_unique<RunRegistry>(options.registry, RunRegistryDeps{.clock = &clock_,
                                                                      .services = t->services.get(),
                                                                      .timers = t->timers.get(),
                                                                      .warmer = t->warmer.get(),
                                                                      .delegated = delegated_.get(),
                                                                      .store = t->store.get(),
                                                                      .metrics = metrics});
  if (absl::Status restored = t->registry->Restore(); !restored.ok()) return fail(restored);

  for (const v1::Service& service : options.services) {
    std::promise<absl::Status> registered;
    t->registry->RegisterService(service, [&](absl::StatusOr<v1::RegisterServiceResponse> r) {
      registered.set_value(r.status());
    });
    if (absl::Status st = registered.get_future().get(); !st.ok()) {
      return fail(absl::Status(
          st.code(), absl::StrCat("configured service '", service.name(), "': ", st.message())));
    }
  }
  // Deadlines that passed while no replica led fire at once.
  t->timers->Start();
  t->service =
      std::make_unique<PrewarmService>(*t->registry, *t->services, *delegated_, *metrics, clock_);
  PrewarmService* service = t->service.get();
  {
    absl::MutexLock lock(&term_mu_);
    term_ = std::move(t);
  }
  gate_->Open(service);
  SetServing(true);
  metrics->SetLeader(true);
  if (epoch > 0) {
    metrics->LeaderTakeover();
    PREWARM_LOG(INFO) << "leading at epoch " << epoch << ": state restored, serving";
  }
  return absl::OkStatus();
}

absl::Status Server::StopTerm(absl::string_view reason, absl::Duration grace) {
  SetServing(false);
  metrics_->SetLeader(false);
  PrewarmService* service = gate_->Close(std::string(reason));
  // Nothing more will be published to the WatchWarmups streams open here: end them, so that
  // delegated watchers reconnect to the next leader.
  delegated_->EndAll();
  std::unique_ptr<Term> t;
  {
    absl::MutexLock lock(&term_mu_);
    t = std::move(term_);
  }
  if (t == nullptr) return absl::OkStatus();
  if (service != nullptr) {
    // New calls were already turned away by the gate; the service's own drain covers calls
    // that entered just before.
    service->Drain();
    if (!service->WaitUntilIdle(grace)) {
      PREWARM_LOG(WARNING) << "calls still running after the grace of " << grace
                           << "; their store writes fail as the store closes";
    }
  }
  absl::Status status = t->Stop();
  // Closing the store ran the callbacks of the calls still waiting; let them finish before the
  // service they count in goes away. One that never does keeps its service (leaked, not freed
  // under it).
  if (t->service != nullptr && !t->service->WaitUntilIdle(grace)) {
    PREWARM_LOG(ERROR) << "a call is still running after its term ended; keeping its service";
    t->service.release();
  }
  return status;
}

RunRegistry& Server::registry() {
  absl::MutexLock lock(&term_mu_);
  PREWARM_CHECK(term_ != nullptr, "Server::registry() on a standby");
  return *term_->registry;
}

bool Server::leading() const {
  absl::MutexLock lock(&term_mu_);
  return term_ != nullptr;
}

absl::Status Server::Shutdown(absl::Duration grace) {
  if (shut_down_) return absl::OkStatus();
  shut_down_ = true;
  if (grpc_ != nullptr) {
    if (auto* health = grpc_->GetHealthCheckService()) health->Shutdown();
  }
  // A leader steps down through the election (releasing the lock at once, so that a standby
  // takes over without waiting for the lease); the term is stopped below either way.
  step_down_grace_ = grace;
  leader_.reset();
  absl::Status status = StopTerm("prewarmd is shutting down", grace);
  {
    absl::MutexLock lock(&term_mu_);
    if (status.ok()) status = std::exchange(stop_status_, absl::OkStatus());
  }
  if (grpc_ != nullptr) {
    // gRPC's own graceful shutdown waits for every client to close its connection (an idle
    // channel is held open for the whole deadline, measured 5 s per SIGTERM). The calls doing
    // work are done (StopTerm): close everything at once.
    grpc_->Shutdown(std::chrono::system_clock::now());
    grpc_->Wait();
  }
  PREWARM_LOG(INFO) << "prewarmd stopped" << (status.ok() ? "" : ": ") << status.message();
  return status;
}

Server::~Server() { (void)Shutdown(absl::ZeroDuration()); }

}  // namespace prewarm
