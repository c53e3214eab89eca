#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace prewarm {

struct LeaderOptions {
  // The PostgreSQL database the replicas share (the store's URI).
  std::string uri;
  // This replica's name, written into prewarm_fence.leader and shown by standbys ("standby:
  // replica X leads"). Defaults to the host name in prewarmd.
  std::string replica_id;
  // How often a standby tries to take the lock, and a leader checks that it still holds it.
  absl::Duration poll = absl::Seconds(1);
  // idle_session_timeout of the lock's session: PostgreSQL ends the session of a leader that
  // stopped talking (paused, partitioned) after this long, which releases its lock so that a
  // standby takes over. A crashed leader's lock goes at once (its connection closes). Must be
  // more than `poll`.
  absl::Duration lease = absl::Seconds(10);
};

// Leader election through PostgreSQL: a session-level advisory lock held on a connection of its
// own, plus a fencing epoch. The replica that takes the lock bumps prewarm_fence.epoch and leads
// at the new epoch; every write transaction of its store checks that epoch (see
// StoreOptions::fencing_epoch), so that a replica that lost the lock, e.g. paused longer than
// `lease`, cannot write once its successor took over, even before it notices. A leader that
// cannot confirm the lock (connection lost, epoch moved) steps down. Runs one thread; the
// callbacks run on it. Thread-safe.
class PostgresLeader {
 public:
  // Runs after this replica took the lock and bumped the epoch: start leading at `epoch`. An
  // error gives the lock up again (and is retried after `poll`).
  using ElectedFn = std::function<absl::Status(int64_t epoch)>;
  // Runs when this replica stops leading: stop firing, answer UNAVAILABLE. `reason` says why.
  using DeposedFn = std::function<void(const absl::Status& reason)>;
  // Runs with state() whenever it changes (e.g. another replica took over); may be empty.
  using StateFn = std::function<void(const std::string& state)>;

  // Starts the election thread. INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<PostgresLeader>> Start(LeaderOptions options,
                                                               ElectedFn elected, DeposedFn deposed,
                                                               StateFn on_state = nullptr);
  // Stops the thread; a leader steps down first (`deposed` runs) and releases the lock.
  ~PostgresLeader();

  bool leading() const ABSL_LOCKS_EXCLUDED(mu_);
  // Why this replica does not lead ("standby: replica X leads at epoch 7"), or "leader at epoch
  // 8".
  std::string state() const ABSL_LOCKS_EXCLUDED(mu_);
  // Times this replica took over.
  int64_t takeovers() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  PostgresLeader(LeaderOptions options, ElectedFn elected, DeposedFn deposed, StateFn on_state);
  void Loop();
  void SetState(bool leading, std::string state) ABSL_LOCKS_EXCLUDED(mu_);

  const LeaderOptions options_;
  const ElectedFn elected_;
  const DeposedFn deposed_;
  const StateFn on_state_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool leading_ ABSL_GUARDED_BY(mu_) = false;
  std::string state_ ABSL_GUARDED_BY(mu_) = "standby: not connected to the database yet";
  int64_t takeovers_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace prewarm
