#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "predictor/clock.h"
#include "server/config.h"
#include "server/delegated_warmups.h"
#include "server/history_store.h"
#include "server/http_warmer.h"
#include "server/metrics.h"
#include "server/prewarm_service.h"
#include "server/run_registry.h"
#include "server/service_registry.h"
#include "server/timer_queue.h"

namespace grpc {
class Server;
}

namespace prewarm {

// A running prewarmd: store, metrics, warmer, timers, run registry and the gRPC server (with the
// standard health service and reflection), wired together. main.cc and the integration tests
// start it the same way. Thread-safe.
class Server {
 public:
  // Opens the store, restores its state, registers the configured services and starts serving.
  // Errors name what failed (a port in use, an unreadable store, a refused service URL).
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options,
                                                       Clock& clock);
  // Shuts down if still running.
  ~Server();

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_->port(); }
  RunRegistry& registry() { return *registry_; }
  // The WatchWarmups subscriptions (tests wait on subscribers()).
  DelegatedWarmups& delegated() { return *delegated_; }
  Metrics& metrics() { return *metrics_; }

  // Stops taking calls (new ones get UNAVAILABLE), lets running ones finish (at most `grace`),
  // then closes every connection and stream at once, stops firing warm-ups and flushes the
  // store. Returns as soon as the running calls are done: idle client connections and
  // WatchWarmups streams do not hold it for the grace period. Returns the store's last error.
  // Idempotent.
  absl::Status Shutdown(absl::Duration grace = absl::Seconds(5));

 private:
  Server() = default;

  bool shut_down_ = false;
  int grpc_port_ = 0;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<HistoryStore> store_;
  std::unique_ptr<ServiceRegistry> services_;
  std::unique_ptr<TimerQueue> timers_;
  std::unique_ptr<HttpWarmer> warmer_;
  std::unique_ptr<DelegatedWarmups> delegated_;
  std::unique_ptr<RunRegistry> registry_;
  std::unique_ptr<PrewarmService> service_;
  std::unique_ptr<grpc::Server> grpc_;
};

}  // namespace prewarm
