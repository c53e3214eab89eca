#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "prewarm/config/v1/config.pb.h"
#include "prewarm/v1/prewarm.pb.h"
#include "server/log.h"
#include "server/run_registry.h"
#include "server/service_registry.h"

namespace prewarm {

// Everything prewarmd is configured with, defaults included: it starts with no arguments on
// loopback ports and a store in the working directory.
struct ServerOptions {
  std::string grpc_address = "127.0.0.1:50051";
  std::string metrics_address = "127.0.0.1:9464";
  // An SQLite path or a PostgreSQL URI (HistoryStore::Open).
  std::string store_path = "./prewarm.db";
  bool store_sync_full = false;
  // StoreOptions::accept_empty.
  bool store_accept_empty = false;
  // Leader election on a PostgreSQL store (LeaderOptions); replica_id empty: the host name.
  std::string replica_id;
  absl::Duration leader_poll = absl::Seconds(1);
  absl::Duration leader_lease = absl::Seconds(10);
  // Registered at start.
  std::vector<v1::Service> services;
  std::vector<std::string> allowlist = {"loopback", "*.svc.cluster.local"};
  RunRegistryOptions registry;
  ServiceDefaults service_defaults;
  int max_message_bytes = 4 << 20;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // Read from bearer_token_file; empty: no token check.
  std::string bearer_token;
  LogLevel log_level = LogLevel::kInfo;
};

// Parses a JSON configuration file (prewarm.config.v1.ServerConfig). Errors name the file and
// what is wrong with it.
absl::StatusOr<config::v1::ServerConfig> ReadConfigFile(absl::string_view path);

// Applies the fields `config` sets over `options`. INVALID_ARGUMENT names a bad value.
absl::Status ApplyConfig(const config::v1::ServerConfig& config, ServerOptions& options);

}  // namespace prewarm
