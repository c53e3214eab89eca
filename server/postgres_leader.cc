#include "server/postgres_leader.h"

#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "server/log.h"
#include "server/postgres_connection.h"
#include "server/postgres_schema.h"

namespace prewarm {
namespace {

// pg_advisory_lock key of the leadership ("prwm" 2).
constexpr int64_t kLeaderLockKey = 0x7072776d00000002;

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresLeader>> PostgresLeader::Start(LeaderOptions options,
                                                                      ElectedFn elected,
                                                                      DeposedFn deposed,
                                                                      StateFn on_state) {
  if (options.poll <= absl::ZeroDuration() || options.lease <= options.poll) {
    return absl::InvalidArgumentError(absl::StrCat(
        "leader election: poll (", absl::FormatDuration(options.poll), ") must be > 0 and lease (",
        absl::FormatDuration(options.lease), ") more than poll"));
  }
  if (options.replica_id.empty()) {
    return absl::InvalidArgumentError("leader election: replica_id must not be empty");
  }
  std::unique_ptr<PostgresLeader> leader(new PostgresLeader(
      std::move(options), std::move(elected), std::move(deposed), std::move(on_state)));
  leader->thread_ = std::thread([l = leader.get()] { l->Loop(); });
  return leader;
}

PostgresLeader::PostgresLeader(LeaderOptions options, ElectedFn elected, DeposedFn deposed,
                               StateFn on_state)
    : options_(std::move(options)),
      elected_(std::move(elected)),
      deposed_(std::move(deposed)),
      on_state_(std::move(on_state)) {}

PostgresLeader::~PostgresLeader() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool PostgresLeader::leading() const {
  absl::MutexLock lock(&mu_);
  return leading_;
}

std::string PostgresLeader::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

int64_t PostgresLeader::takeovers() const {
  absl::MutexLock lock(&mu_);
  return takeovers_;
}

void PostgresLeader::SetState(bool leading, std::string state) {
  {
    absl::MutexLock lock(&mu_);
    if (leading && !leading_) ++takeovers_;
    leading_ = leading;
    if (state_ == state) return;
    state_ = state;
  }
  // Only the election thread sets the state: callbacks arrive in order.
  if (on_state_) on_state_(state);
}

void PostgresLeader::Loop() {
  const std::string& uri = options_.uri;
  pg::ConnPtr conn;
  int64_t epoch = 0;  // While leading.
  bool leading = false;
  // Steps down (if leading) and drops the connection, which releases the lock.
  auto lose = [&](const absl::Status& reason) {
    conn.reset();
    if (leading) {
      leading = false;
      PREWARM_LOG(WARNING) << "replica " << options_.replica_id << " steps down: " << reason;
      SetState(false, absl::StrCat("standby: replica ", options_.replica_id,
                                   " stepped down: ", reason.message()));
      deposed_(reason);
    } else {
      SetState(false, absl::StrCat("standby: ", reason.message()));
    }
  };
  auto stopping = [this] {
    absl::MutexLock lock(&mu_);
    return stop_;
  };
  for (bool first = true;; first = false) {
    {
      // Sleeps `poll` (except the first time) unless asked to stop.
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stop_), first ? absl::ZeroDuration() : options_.poll);
      if (stop_) break;
    }
    if (conn == nullptr) {
      absl::StatusOr<pg::ConnPtr> c = pg::Connect(uri, options_.lease);
      if (!c.ok()) {
        lose(c.status());
        continue;
      }
      conn = *std::move(c);
      absl::Status s = pg::ExecScript(
          conn.get(), uri,
          absl::StrCat("SET idle_session_timeout = ", absl::ToInt64Milliseconds(options_.lease))
              .c_str(),
          "setting idle_session_timeout");
      if (s.ok()) s = MigratePostgresSchema(conn.get(), uri);
      if (!s.ok()) {
        lose(s);
        continue;
      }
    }
    if (leading) {
      // Still ours? The session (and with it the lock) is gone if the query fails.
      absl::StatusOr<pg::ResultPtr> row =
          pg::Exec(conn.get(), uri, "SELECT epoch, leader FROM prewarm_fence WHERE id = 1",
                   pg::Params(), "checking the leadership");
      if (!row.ok()) {
        lose(row.status());
      } else if (const int64_t now = pg::GetInt64(row->get(), 0, 0); now != epoch) {
        lose(absl::UnavailableError(absl::StrCat("replica \"", pg::GetBytes(row->get(), 0, 1),
                                                 "\" took over at epoch ", now,
                                                 " (this replica led at epoch ", epoch, ")")));
      }
      continue;
    }
    absl::StatusOr<pg::ResultPtr> locked =
        pg::Exec(conn.get(), uri, "SELECT pg_try_advisory_lock($1::bigint)::integer",
                 pg::Params().Int64(kLeaderLockKey), "trying the leader lock");
    if (!locked.ok()) {
      lose(locked.status());
      continue;
    }
    if (pg::GetInt32(locked->get(), 0, 0) == 0) {
      absl::StatusOr<pg::ResultPtr> row =
          pg::Exec(conn.get(), uri, "SELECT epoch, leader FROM prewarm_fence WHERE id = 1",
                   pg::Params(), "reading the leader");
      SetState(false, row.ok() ? absl::StrCat("standby: replica \"", pg::GetBytes(row->get(), 0, 1),
                                              "\" leads at epoch ", pg::GetInt64(row->get(), 0, 0),
                                              "; this replica is ", options_.replica_id)
                               : absl::StrCat("standby: ", row.status().message()));
      continue;
    }
    // The bump waits for write transactions of the previous leader that still hold the fence
    // row; once it commits, none of theirs can.
    absl::StatusOr<pg::ResultPtr> bumped =
        pg::Exec(conn.get(), uri,
                 "UPDATE prewarm_fence SET epoch = epoch + 1, leader = $1::text, since = now() "
                 "WHERE id = 1 RETURNING epoch",
                 pg::Params().Bytes(options_.replica_id), "bumping the fencing epoch");
    if (!bumped.ok()) {
      lose(bumped.status());
      continue;
    }
    epoch = pg::GetInt64(bumped->get(), 0, 0);
    PREWARM_LOG(INFO) << "replica " << options_.replica_id << " took the leader lock at epoch "
                      << epoch << "; restoring";
    if (stopping()) break;
    if (absl::Status s = elected_(epoch); !s.ok()) {
      PREWARM_LOG(ERROR) << "replica " << options_.replica_id
                         << " cannot lead, giving the lock up: " << s;
      lose(s);
      continue;
    }
    leading = true;
    SetState(true, absl::StrCat("leader at epoch ", epoch));
  }
  lose(absl::UnavailableError("shutting down"));
}

}  // namespace prewarm
