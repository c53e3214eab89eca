#pragma once

#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "predictor/clock.h"
#include "server/config.h"
#include "server/delegated_warmups.h"
#include "server/gated_service.h"
#include "server/history_store.h"
#include "server/http_warmer.h"
#include "server/metrics.h"
#include "server/postgres_leader.h"
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
//
// With an SQLite store it leads from the start. With a PostgreSQL store it is one of several
// replicas: it serves gRPC at once, but as a standby (health NOT_SERVING for
// prewarm.v1.PrewarmService, SERVING for the server "" as it is alive; every prewarm RPC
// UNAVAILABLE naming the leader) until it wins the leader election (PostgresLeader); then it
// opens the store at the new fencing epoch, restores services, history and active runs (passed
// warm-up deadlines fire at once), and turns SERVING. Losing the leadership (or the database)
// steps it down to standby again. The state of one leadership is a "term".
class Server {
 public:
  // Opens the store (SQLite) or starts the election (PostgreSQL), restores state, registers the
  // configured services and starts serving. Errors name what failed (a port in use, an
  // unreadable store, a refused service URL).
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options, Clock& clock);
  // Shuts down if still running.
  ~Server();

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_->port(); }
  // The run registry of the current term. REQUIRES: leading() (always true with SQLite).
  RunRegistry& registry() ABSL_LOCKS_EXCLUDED(term_mu_);
  // Whether this replica leads (always with SQLite).
  bool leading() const ABSL_LOCKS_EXCLUDED(term_mu_);
  // The WatchWarmups subscriptions (tests wait on subscribers()); they outlive terms.
  DelegatedWarmups& delegated() { return *delegated_; }
  Metrics& metrics() { return *metrics_; }

  // Stops taking calls (new ones get UNAVAILABLE), lets running ones finish (at most `grace`),
  // then closes every connection and stream at once, stops firing warm-ups and flushes the
  // store. Returns as soon as the running calls are done: idle client connections and
  // WatchWarmups streams do not hold it for the grace period. Returns the store's last error.
  // Idempotent.
  absl::Status Shutdown(absl::Duration grace = absl::Seconds(5));

 private:
  struct Term;

  Server(const ServerOptions& options, Clock& clock);
  // Opens the store at `epoch`, restores, and opens the gate.
  absl::Status StartTerm(int64_t epoch) ABSL_LOCKS_EXCLUDED(term_mu_);
  // Closes the gate with `reason`, drains the term's calls (at most `grace`), stops its timers
  // and closes its store; returns the store's last error. No-op without a term.
  absl::Status StopTerm(absl::string_view reason, absl::Duration grace)
      ABSL_LOCKS_EXCLUDED(term_mu_);
  void SetServing(bool serving);

  const ServerOptions options_;
  Clock& clock_;
  bool shut_down_ = false;
  int grpc_port_ = 0;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<DelegatedWarmups> delegated_;
  std::unique_ptr<GatedPrewarmService> gate_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<PostgresLeader> leader_;  // PostgreSQL store only.
  // How long a stepping-down term waits for its calls; Shutdown's grace once shutting down.
  absl::Duration step_down_grace_ = absl::Seconds(5);

  mutable absl::Mutex term_mu_;
  std::unique_ptr<Term> term_ ABSL_GUARDED_BY(term_mu_);
  // The first store error of a term that stepped down, for Shutdown() to return.
  absl::Status stop_status_ ABSL_GUARDED_BY(term_mu_);
};

}  // namespace prewarm
