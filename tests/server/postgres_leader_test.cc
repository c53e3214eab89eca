#include "server/postgres_leader.h"

#include <libpq-fe.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/history_store.h"
#include "tests/server/postgres_test_server.h"

namespace prewarm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Waits long enough for any healthy machine; the tests assert what happens, not how fast.
constexpr absl::Duration kPatience = absl::Seconds(30);

// Runs SQL through a connection of the test's own; the first column of the first row, or "".
std::string RawQuery(const std::string& uri, const std::string& sql) {
  PGconn* conn = PQconnectdb(uri.c_str());
  EXPECT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
  PGresult* result = PQexec(conn, sql.c_str());
  const ExecStatusType status = PQresultStatus(result);
  EXPECT_TRUE(status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK)
      << sql << ": " << PQresultErrorMessage(result);
  std::string value =
      status == PGRES_TUPLES_OK && PQntuples(result) > 0 ? PQgetvalue(result, 0, 0) : "";
  PQclear(result);
  PQfinish(conn);
  return value;
}

absl::Status Write(HistoryStore& store, const std::string& name) {
  absl::Notification done;
  absl::Status result;
  store.PutService(name, "bytes", [&](absl::Status s) {
    result = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

// What the election told one replica, in order: "elected 3", "deposed: ...".
class Events {
 public:
  PostgresLeader::ElectedFn Elected(absl::Status answer = absl::OkStatus()) {
    return [this, answer](int64_t epoch) {
      absl::MutexLock lock(&mu_);
      events_.push_back(absl::StrCat("elected ", epoch));
      return answer;
    };
  }
  PostgresLeader::DeposedFn Deposed() {
    return [this](const absl::Status& reason) {
      absl::MutexLock lock(&mu_);
      events_.push_back(absl::StrCat("deposed: ", reason.message()));
    };
  }
  // Waits until there are `n` events; returns them.
  std::vector<std::string> WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return events_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), kPatience);
    return events_;
  }
  std::vector<std::string> Get() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
};

// leading() turns true once the elected callback has returned: waits for it.
bool WaitUntilLeading(const PostgresLeader& leader) {
  for (absl::Time end = absl::Now() + kPatience; absl::Now() < end && !leader.leading();) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  return leader.leading();
}

class PostgresLeaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PREWARM_SHARED_POSTGRES_OR_SKIP(server);
    static int databases = 0;
    absl::StatusOr<std::string> uri = server->CreateDatabase(absl::StrCat("leader", ++databases));
    ASSERT_TRUE(uri.ok()) << uri.status();
    uri_ = *uri;
  }

  std::unique_ptr<PostgresLeader> StartLeader(const std::string& id, Events& events,
                                              absl::Status elected_answer = absl::OkStatus()) {
    absl::StatusOr<std::unique_ptr<PostgresLeader>> leader = PostgresLeader::Start(
        {.uri = uri_, .replica_id = id, .poll = absl::Milliseconds(50), .lease = absl::Seconds(5)},
        events.Elected(elected_answer), events.Deposed());
    EXPECT_TRUE(leader.ok()) << leader.status();
    return leader.ok() ? *std::move(leader) : nullptr;
  }

  std::string uri_;
};

TEST_F(PostgresLeaderTest, AWriterAtAnOldEpochIsFencedOnceANewLeaderBumpsIt) {
  absl::StatusOr<std::unique_ptr<HistoryStore>> old_leader =
      HistoryStore::Open({.path = uri_, .fencing_epoch = 0});
  ASSERT_TRUE(old_leader.ok()) << old_leader.status();
  ASSERT_TRUE(Write(**old_leader, "before").ok());

  // A new leader takes over: it bumps the epoch (what PostgresLeader does after the lock).
  RawQuery(uri_, "UPDATE prewarm_fence SET epoch = 1, leader = 'replica-b' WHERE id = 1");
  absl::Status fenced = Write(**old_leader, "after");
  EXPECT_EQ(fenced.code(), absl::StatusCode::kUnavailable) << fenced;
  EXPECT_THAT(fenced.message(), HasSubstr("fenced"));
  EXPECT_THAT(fenced.message(), HasSubstr("replica-b"));
  EXPECT_EQ(RawQuery(uri_, "SELECT count(*) FROM services WHERE name = 'after'::bytea"), "0");

  // The new leader's store writes; the old one stays fenced.
  absl::StatusOr<std::unique_ptr<HistoryStore>> new_leader =
      HistoryStore::Open({.path = uri_, .fencing_epoch = 1});
  ASSERT_TRUE(new_leader.ok()) << new_leader.status();
  EXPECT_TRUE(Write(**new_leader, "new").ok());
  EXPECT_EQ(Write(**old_leader, "again").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(RawQuery(uri_, "SELECT count(*) FROM services"), "2");
}

TEST_F(PostgresLeaderTest, OneReplicaLeadsAndAnotherTakesOverWhenItStops) {
  Events a_events, b_events;
  std::unique_ptr<PostgresLeader> a = StartLeader("replica-a", a_events);
  EXPECT_THAT(a_events.WaitFor(1), ElementsAre("elected 1"));
  EXPECT_TRUE(WaitUntilLeading(*a));
  std::unique_ptr<PostgresLeader> b = StartLeader("replica-b", b_events);
  // b finds the lock taken and says by whom.
  for (absl::Time end = absl::Now() + kPatience;
       absl::Now() < end && !absl::StrContains(b->state(), "replica-a");) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_THAT(b->state(), HasSubstr("standby: replica \"replica-a\" leads at epoch 1"));
  EXPECT_TRUE(a->leading());
  EXPECT_FALSE(b->leading());
  EXPECT_THAT(b_events.Get(), ::testing::IsEmpty());

  a.reset();  // Steps down and releases the lock at once.
  EXPECT_THAT(a_events.Get(), ElementsAre("elected 1", "deposed: shutting down"));
  EXPECT_THAT(b_events.WaitFor(1), ElementsAre("elected 2"));
  EXPECT_TRUE(WaitUntilLeading(*b));
  EXPECT_EQ(b->takeovers(), 1);
  EXPECT_EQ(RawQuery(uri_, "SELECT leader FROM prewarm_fence"), "replica-b");
}

TEST_F(PostgresLeaderTest, ALeaderWhoseSessionEndsStepsDownAndIsElectedAgainAtANewEpoch) {
  Events events;
  std::unique_ptr<PostgresLeader> a = StartLeader("replica-a", events);
  EXPECT_THAT(events.WaitFor(1), ElementsAre("elected 1"));
  // What PostgreSQL does to a leader that stopped talking for longer than the lease (or an
  // operator to a stuck one): its session ends, and the lock with it.
  RawQuery(uri_,
           "SELECT pg_terminate_backend(pid) FROM pg_locks "
           "WHERE locktype = 'advisory' AND objid = 2 AND granted");
  const std::vector<std::string> seen = events.WaitFor(3);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_THAT(seen[1], HasSubstr("deposed: "));
  EXPECT_THAT(seen[1], HasSubstr("checking the leadership"));
  EXPECT_EQ(seen[2], "elected 2");
}

TEST_F(PostgresLeaderTest, AReplicaThatCannotStartLeadingGivesTheLockUp) {
  Events failing, healthy;
  std::unique_ptr<PostgresLeader> a =
      StartLeader("replica-a", failing, absl::DataLossError("store unreadable"));
  EXPECT_THAT(failing.WaitFor(1), ElementsAre("elected 1"));
  std::unique_ptr<PostgresLeader> b = StartLeader("replica-b", healthy);
  // Either replica may win the next rounds, but one that refuses must never keep the lock: b
  // eventually leads.
  EXPECT_TRUE(WaitUntilLeading(*b));
  EXPECT_FALSE(a->leading());
  EXPECT_THAT(a->state(), HasSubstr("store unreadable"));
}

TEST_F(PostgresLeaderTest, AnUnreachableDatabaseLeavesAStandbySayingWhy) {
  Events events;
  absl::StatusOr<std::unique_ptr<PostgresLeader>> leader =
      PostgresLeader::Start({.uri = "postgresql://nobody@/none?host=/nonexistent-dir",
                             .replica_id = "replica-a",
                             .poll = absl::Milliseconds(50),
                             .lease = absl::Seconds(5)},
                            events.Elected(), events.Deposed());
  ASSERT_TRUE(leader.ok());
  for (absl::Time end = absl::Now() + kPatience;
       absl::Now() < end && !absl::StrContains((*leader)->state(), "cannot connect");) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_THAT((*leader)->state(), HasSubstr("standby: prewarm store postgresql://nobody@"));
  EXPECT_THAT((*leader)->state(), HasSubstr("cannot connect"));
  EXPECT_FALSE((*leader)->leading());
}

TEST(PostgresLeaderOptionsTest, BadOptionsAreRefused) {
  auto start = [](LeaderOptions options) {
    return PostgresLeader::Start(std::move(options), nullptr, nullptr).status();
  };
  EXPECT_EQ(start({.uri = "postgresql:///x", .replica_id = "a", .lease = absl::Seconds(1)}).code(),
            absl::StatusCode::kInvalidArgument);  // lease not more than poll
  EXPECT_EQ(start({.uri = "postgresql:///x", .replica_id = ""}).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace prewarm
