// prewarmd: the prewarm server. Starts with no arguments: gRPC on 127.0.0.1:50051, metrics on
// 127.0.0.1:9464, store ./prewarm.db. Flags override the config file, which overrides defaults.
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "predictor/clock.h"
#include "server/config.h"
#include "server/log.h"
#include "server/proto_time.h"
#include "server/server.h"

ABSL_FLAG(std::string, config, "", "JSON configuration file (prewarm.config.v1.ServerConfig)");
ABSL_FLAG(std::string, grpc_address, "", "gRPC listen address [127.0.0.1:50051]");
ABSL_FLAG(std::string, metrics_address, "", "Prometheus /metrics listen address [127.0.0.1:9464]");
ABSL_FLAG(std::string, store, "",
          "store: an SQLite file, or a PostgreSQL URI (postgresql://user@host/db) shared by "
          "replicas of which one leads [./prewarm.db]");
ABSL_FLAG(std::string, replica_id, "",
          "PostgreSQL store: this replica's name in the leader election [host name-pid]");
ABSL_FLAG(absl::Duration, leader_poll, absl::ZeroDuration(),
          "PostgreSQL store: how often a standby tries to take over and a leader checks it "
          "still leads [1s]");
ABSL_FLAG(absl::Duration, leader_lease, absl::ZeroDuration(),
          "PostgreSQL store: how long a leader that stopped talking to the database keeps the "
          "leadership [10s]");
ABSL_FLAG(std::string, store_sync, "",
          "store durability: normal (survives a process crash) or full (also power loss) [normal]");
ABSL_FLAG(bool, store_accept_empty, false,
          "initialise a new store in an existing store file that is empty (0 bytes or no tables) "
          "instead of refusing to start");
ABSL_FLAG(std::string, allowlist, "",
          "comma-separated outbound allowlist for warm-up URLs [loopback,*.svc.cluster.local]");
ABSL_FLAG(double, delay_cost_ratio, 0,
          "default alpha/beta: idle container-seconds one second of delay is worth [200]");
ABSL_FLAG(absl::Duration, planning_horizon, absl::ZeroDuration(),
          "decide a task's warm-up this long before it could first fire; tasks further ahead are "
          "deferred (lazy planning) [60s]");
ABSL_FLAG(bool, eager_planning, false, "decide every task at every plan (no lazy planning)");
ABSL_FLAG(int, max_active_runs, 0, "active runs at most [10000]");
ABSL_FLAG(int, max_tasks_per_dag, 0, "tasks per DAG at most [10000]");
ABSL_FLAG(int, max_services, 0, "registered services at most [1000]");
ABSL_FLAG(int, max_history_keys, 0,
          "learned history keys at most, least recently observed evicted; >= 100 [100000]");
ABSL_FLAG(std::string, log_level, "", "debug, info, warning or error [info]");
ABSL_FLAG(std::string, tls_cert, "", "TLS certificate chain (PEM); plaintext when unset");
ABSL_FLAG(std::string, tls_key, "", "TLS private key (PEM)");
ABSL_FLAG(std::string, tls_client_ca, "", "CA bundle: require client certificates (mTLS)");
ABSL_FLAG(std::string, bearer_token_file, "", "file holding the bearer token clients must send");

namespace {

// Applies the flags given on the command line over `options` (a flag left at its empty default
// keeps the config file's value).
absl::Status ApplyFlags(prewarm::ServerOptions& o) {
  prewarm::config::v1::ServerConfig c;
  c.set_grpc_address(absl::GetFlag(FLAGS_grpc_address));
  c.set_metrics_address(absl::GetFlag(FLAGS_metrics_address));
  c.set_store_path(absl::GetFlag(FLAGS_store));
  c.set_store_sync(absl::GetFlag(FLAGS_store_sync));
  c.set_store_accept_empty(absl::GetFlag(FLAGS_store_accept_empty));
  c.mutable_leadership()->set_replica_id(absl::GetFlag(FLAGS_replica_id));
  if (absl::GetFlag(FLAGS_leader_poll) != absl::ZeroDuration()) {
    *c.mutable_leadership()->mutable_poll() =
        prewarm::ToProtoDuration(absl::GetFlag(FLAGS_leader_poll));
  }
  if (absl::GetFlag(FLAGS_leader_lease) != absl::ZeroDuration()) {
    *c.mutable_leadership()->mutable_lease() =
        prewarm::ToProtoDuration(absl::GetFlag(FLAGS_leader_lease));
  }
  for (absl::string_view rule :
       absl::StrSplit(absl::GetFlag(FLAGS_allowlist), ',', absl::SkipWhitespace())) {
    c.add_allowlist(std::string(rule));
  }
  c.mutable_planning()->set_delay_cost_ratio(absl::GetFlag(FLAGS_delay_cost_ratio));
  if (absl::GetFlag(FLAGS_planning_horizon) != absl::ZeroDuration()) {
    *c.mutable_planning()->mutable_planning_horizon() =
        prewarm::ToProtoDuration(absl::GetFlag(FLAGS_planning_horizon));
  }
  c.mutable_planning()->set_eager_planning(absl::GetFlag(FLAGS_eager_planning));
  c.mutable_limits()->set_max_active_runs(absl::GetFlag(FLAGS_max_active_runs));
  c.mutable_limits()->set_max_tasks_per_dag(absl::GetFlag(FLAGS_max_tasks_per_dag));
  c.mutable_limits()->set_max_services(absl::GetFlag(FLAGS_max_services));
  c.mutable_limits()->set_max_history_keys(absl::GetFlag(FLAGS_max_history_keys));
  c.set_log_level(absl::GetFlag(FLAGS_log_level));
  if (!absl::GetFlag(FLAGS_tls_cert).empty() || !absl::GetFlag(FLAGS_tls_key).empty()) {
    c.mutable_tls()->set_cert_file(absl::GetFlag(FLAGS_tls_cert));
    c.mutable_tls()->set_key_file(absl::GetFlag(FLAGS_tls_key));
    c.mutable_tls()->set_client_ca_file(absl::GetFlag(FLAGS_tls_client_ca));
  }
  c.set_bearer_token_file(absl::GetFlag(FLAGS_bearer_token_file));
  std::vector<prewarm::v1::Service> services = o.services;  // Flags carry none.
  absl::Status s = prewarm::ApplyConfig(c, o);
  o.services = std::move(services);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "prewarm server: plans and fires just-in-time warm-ups of serverless services.\n"
      "Usage: prewarmd [--config=FILE] [--grpc_address=HOST:PORT] [--store=FILE|URI] ...");
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil is built with mutex deadlock detection on; it costs every lock a graph
  // update. Tests keep it; the server does not need it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  prewarm::ServerOptions options;
  if (const std::string path = absl::GetFlag(FLAGS_config); !path.empty()) {
    absl::StatusOr<prewarm::config::v1::ServerConfig> config = prewarm::ReadConfigFile(path);
    if (!config.ok()) {
      std::fprintf(stderr, "prewarmd: %s\n", std::string(config.status().message()).c_str());
      return 2;
    }
    if (absl::Status s = prewarm::ApplyConfig(*config, options); !s.ok()) {
      std::fprintf(stderr, "prewarmd: config file '%s': %s\n", path.c_str(),
                   std::string(s.message()).c_str());
      return 2;
    }
  }
  if (absl::Status s = ApplyFlags(options); !s.ok()) {
    std::fprintf(stderr, "prewarmd: %s\n", std::string(s.message()).c_str());
    return 2;
  }

  // Signals are taken synchronously by this thread: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<prewarm::Server>> server =
      prewarm::Server::Start(options, prewarm::Clock::Real());
  if (!server.ok()) {
    PREWARM_LOG(ERROR) << "cannot start: " << server.status();
    return 1;
  }
  int signal = 0;
  sigwait(&signals, &signal);
  PREWARM_LOG(INFO) << "received " << (signal == SIGTERM ? "SIGTERM" : "SIGINT")
                    << "; shutting down";
  const absl::Status stopped = (*server)->Shutdown();
  return stopped.ok() ? 0 : 1;
}
