#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/history_store.h"
#include "server/log.h"
#include "tests/fakes/in_memory_history_store.h"
#include "tests/server/postgres_test_server.h"

namespace prewarm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

using Kind = Observation::Kind;
// (kind, key, value, time): comparable and printable, unlike Observation.
using Row = std::tuple<Kind, std::string, double, absl::Time>;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

::testing::AssertionResult IsOk(const absl::Status& status) {
  if (status.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << status;
}

Observation Obs(Kind kind, std::string key, double value) {
  // Nanoseconds in the time check that the store keeps full precision.
  return Observation{.kind = kind,
                     .key = std::move(key),
                     .value = value,
                     .time = kT0 + absl::Seconds(value) + absl::Nanoseconds(7)};
}

std::string MakeTempDir() {
  std::string pattern = ::testing::TempDir() + "history_store_test_XXXXXX";
  char* dir = mkdtemp(pattern.data());
  EXPECT_NE(dir, nullptr) << "mkdtemp " << pattern;
  return pattern;
}

std::vector<Row> LoadRows(HistoryStore& store) {
  std::vector<Row> rows;
  absl::Status status = store.LoadObservations(
      [&](const Observation& o) { rows.emplace_back(o.kind, o.key, o.value, o.time); });
  EXPECT_TRUE(IsOk(status));
  return rows;
}

std::vector<std::pair<std::string, std::string>> LoadServices(HistoryStore& store) {
  std::vector<std::pair<std::string, std::string>> services;
  EXPECT_TRUE(IsOk(store.LoadServices([&](absl::string_view name, absl::string_view bytes) {
    services.emplace_back(std::string(name), std::string(bytes));
  })));
  return services;
}

std::vector<std::pair<std::string, std::string>> LoadRuns(HistoryStore& store) {
  std::vector<std::pair<std::string, std::string>> runs;
  EXPECT_TRUE(IsOk(store.LoadRuns([&](absl::string_view id, absl::string_view bytes) {
    runs.emplace_back(std::string(id), std::string(bytes));
  })));
  return runs;
}

// Starts one write and waits for its callback.
absl::Status Await(const std::function<void(CommitCallback)>& write) {
  absl::Notification done;
  absl::Status result;
  write([&](absl::Status status) {
    result = std::move(status);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

// Collects the outcome of many callbacks.
class Acks {
 public:
  CommitCallback Callback() {
    return [this](absl::Status status) {
      absl::MutexLock lock(&mu_);
      if (status.ok()) {
        ++ok_;
      } else {
        errors_.push_back(std::move(status));
      }
    };
  }
  int ok() const {
    absl::MutexLock lock(&mu_);
    return ok_;
  }
  std::vector<absl::Status> errors() const {
    absl::MutexLock lock(&mu_);
    return errors_;
  }

 private:
  mutable absl::Mutex mu_;
  int ok_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<absl::Status> errors_ ABSL_GUARDED_BY(mu_);
};

// The implementations under the shared behavioural tests. Skip() is non-empty when the
// implementation cannot run on this machine: the test is skipped, saying why.
struct SqliteImpl {
  static constexpr bool kPersistent = true;
  static std::string Skip() { return ""; }
  static std::unique_ptr<HistoryStore> Open(const std::string& path, int max_per_key) {
    absl::StatusOr<std::unique_ptr<HistoryStore>> store =
        HistoryStore::OpenSqlite({.path = path, .max_observations_per_key = max_per_key});
    EXPECT_TRUE(IsOk(store.status()));
    return store.ok() ? *std::move(store) : nullptr;
  }
};

// PostgreSQL: one database per store path, created on first use; reopening connects again.
struct PostgresImpl {
  static constexpr bool kPersistent = true;
  static std::string Skip() {
    std::string why;
    return SharedPostgres(&why) != nullptr ? "" : why;
  }
  static std::unique_ptr<HistoryStore> Open(const std::string& path, int max_per_key) {
    static auto* uris = new std::map<std::string, std::string>();
    std::string why;
    PostgresTestServer* server = SharedPostgres(&why);
    EXPECT_NE(server, nullptr) << why;
    if (server == nullptr) return nullptr;
    auto [it, inserted] = uris->try_emplace(path);
    if (inserted) {
      absl::StatusOr<std::string> uri = server->CreateDatabase(absl::StrCat("t", uris->size()));
      EXPECT_TRUE(IsOk(uri.status()));
      if (!uri.ok()) return nullptr;
      it->second = *uri;
    }
    absl::StatusOr<std::unique_ptr<HistoryStore>> store =
        HistoryStore::Open({.path = it->second, .max_observations_per_key = max_per_key});
    EXPECT_TRUE(IsOk(store.status()));
    return store.ok() ? *std::move(store) : nullptr;
  }
};

struct InMemoryImpl {
  static constexpr bool kPersistent = false;
  static std::string Skip() { return ""; }
  static std::unique_ptr<HistoryStore> Open(const std::string& path, int max_per_key) {
    return NewInMemoryHistoryStore(max_per_key);
  }
};

class ImplNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    if (std::is_same_v<T, SqliteImpl>) return "Sqlite";
    if (std::is_same_v<T, PostgresImpl>) return "Postgres";
    return "InMemory";
  }
};

template <typename Impl>
class HistoryStoreTest : public ::testing::Test {
 protected:
  static constexpr int kMaxPerKey = 4;

  void SetUp() override {
    if (const std::string why = Impl::Skip(); !why.empty()) GTEST_SKIP() << why;
    dir_ = MakeTempDir();
    Start(kMaxPerKey);
  }
  void TearDown() override {
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Replaces store_ with an empty store bounded to max_per_key.
  void Start(int max_per_key) {
    store_.reset();
    path_ = absl::StrCat(dir_, "/store", ++stores_, ".db");
    max_per_key_ = max_per_key;
    store_ = Impl::Open(path_, max_per_key);
    ASSERT_NE(store_, nullptr);
  }

  // Closes and reopens the store where the implementation persists; otherwise keeps it.
  void Reopen() {
    if (!Impl::kPersistent) return;
    ASSERT_TRUE(IsOk(store_->Close()));
    store_.reset();
    store_ = Impl::Open(path_, max_per_key_);
    ASSERT_NE(store_, nullptr);
  }

  std::string dir_;
  std::string path_;
  int stores_ = 0;
  int max_per_key_ = 0;
  std::unique_ptr<HistoryStore> store_;
};

using Implementations = ::testing::Types<SqliteImpl, PostgresImpl, InMemoryImpl>;
TYPED_TEST_SUITE(HistoryStoreTest, Implementations, ImplNames);

TYPED_TEST(HistoryStoreTest, RoundTripsEveryWriteKindAcrossReopen) {
  HistoryStore& store = *this->store_;
  Acks acks;
  const std::string task_key = std::string("etl\x1f") + "extract";
  store.AppendObservation(Obs(Kind::kTaskDuration, task_key, 12.5), acks.Callback());
  store.AppendObservation(Obs(Kind::kServiceDuration, "svc-a", 3.25), acks.Callback());
  store.AppendObservation(Obs(Kind::kColdStart, "svc-a", 1.75), acks.Callback());
  store.AppendObservation(Obs(Kind::kWarmLatency, "svc-a", 0.01), acks.Callback());
  store.AppendObservation(Obs(Kind::kDispatchGap, task_key, 0.5), acks.Callback());
  store.AppendObservation(Obs(Kind::kTaskRun, task_key, 1), acks.Callback());
  store.AppendObservation(Obs(Kind::kTaskRun, task_key, 0), acks.Callback());

  const std::string binary("\x00\x01\xff proto", 9);  // Opaque bytes, NUL included.
  store.PutService("svc-b", "old", acks.Callback());
  store.PutService("svc-a", binary, acks.Callback());
  store.PutService("svc-b", "new", acks.Callback());  // Upsert.
  store.PutService("svc-c", "", acks.Callback());
  store.DeleteService("svc-c", acks.Callback());
  store.DeleteService("never-existed", acks.Callback());
  store.PutService("svc-empty", "", acks.Callback());
  store.PutRun("run-2", "two", acks.Callback());
  store.PutRun("run-1", "one", acks.Callback());
  store.PutRun("run-1", "one again", acks.Callback());
  store.PutRun("run-3", "three", acks.Callback());
  store.DeleteRun("run-3", acks.Callback());
  ASSERT_TRUE(IsOk(store.Flush()));
  EXPECT_EQ(acks.ok(), 19);
  EXPECT_THAT(acks.errors(), ::testing::IsEmpty());

  this->Reopen();
  HistoryStore& reopened = *this->store_;
  const absl::Duration ns7 = absl::Nanoseconds(7);
  // Grouped by (kind, key), oldest first.
  EXPECT_THAT(
      LoadRows(reopened),
      ElementsAre(Row(Kind::kTaskDuration, task_key, 12.5, kT0 + absl::Seconds(12.5) + ns7),
                  Row(Kind::kServiceDuration, "svc-a", 3.25, kT0 + absl::Seconds(3.25) + ns7),
                  Row(Kind::kColdStart, "svc-a", 1.75, kT0 + absl::Seconds(1.75) + ns7),
                  Row(Kind::kWarmLatency, "svc-a", 0.01, kT0 + absl::Seconds(0.01) + ns7),
                  Row(Kind::kDispatchGap, task_key, 0.5, kT0 + absl::Seconds(0.5) + ns7),
                  Row(Kind::kTaskRun, task_key, 1, kT0 + absl::Seconds(1) + ns7),
                  Row(Kind::kTaskRun, task_key, 0, kT0 + ns7)));
  EXPECT_THAT(LoadServices(reopened),
              ElementsAre(Pair("svc-a", binary), Pair("svc-b", "new"), Pair("svc-empty", "")));
  EXPECT_THAT(LoadRuns(reopened), ElementsAre(Pair("run-1", "one again"), Pair("run-2", "two")));
}

TYPED_TEST(HistoryStoreTest, EachRunsEventsLoadInTheOrderAppendedAcrossReopen) {
  // Like concurrent runs reporting: every flush holds one event of each run. A restart replays
  // each run's log, so each run's order is the contract; how runs interleave is not.
  HistoryStore& store = *this->store_;
  Acks acks;
  const std::vector<std::string> runs = {"run-b", "run-a", "run-c", "run-d"};
  for (int e = 0; e < 5; ++e) {
    for (const std::string& run : runs) {
      store.AppendRunEvent(run, absl::StrCat(run, "#", e), acks.Callback());
    }
    ASSERT_TRUE(IsOk(store.Flush()));
  }
  store.DeleteRun("run-c", acks.Callback());
  store.AppendRunEvent("run-a", "run-a#5", acks.Callback());
  ASSERT_TRUE(IsOk(store.Flush()));
  EXPECT_EQ(acks.ok(), 22);

  this->Reopen();
  std::map<std::string, std::vector<std::string>> by_run;
  ASSERT_TRUE(IsOk(this->store_->LoadRunEvents([&](absl::string_view run, absl::string_view bytes) {
    by_run[std::string(run)].push_back(std::string(bytes));
  })));
  EXPECT_THAT(
      by_run,
      ElementsAre(
          Pair("run-a",
               ElementsAre("run-a#0", "run-a#1", "run-a#2", "run-a#3", "run-a#4", "run-a#5")),
          Pair("run-b", ElementsAre("run-b#0", "run-b#1", "run-b#2", "run-b#3", "run-b#4")),
          Pair("run-d", ElementsAre("run-d#0", "run-d#1", "run-d#2", "run-d#3", "run-d#4"))));
}

TYPED_TEST(HistoryStoreTest, PruningKeepsExactlyTheNewestPerKeyInOrder) {
  HistoryStore& store = *this->store_;  // At most kMaxPerKey = 4 per (kind, key).
  for (int i = 0; i < 10; ++i) {
    store.AppendObservation(Obs(Kind::kTaskDuration, "a", i), nullptr);
    if (i < 3) store.AppendObservation(Obs(Kind::kTaskDuration, "b", 100 + i), nullptr);
    // The same key under another kind is another window.
    store.AppendObservation(Obs(Kind::kColdStart, "a", 200 + i), nullptr);
    if (i % 3 == 0) {
      ASSERT_TRUE(IsOk(store.Flush()));  // Prune across several batches.
    }
  }
  ASSERT_TRUE(IsOk(store.Flush()));
  this->Reopen();

  std::vector<std::pair<std::string, double>> rows;
  for (const Row& row : LoadRows(*this->store_)) {
    rows.emplace_back(absl::StrCat(static_cast<int>(std::get<0>(row)), "/", std::get<1>(row)),
                      std::get<2>(row));
  }
  EXPECT_THAT(rows,
              ElementsAre(Pair("1/a", 6), Pair("1/a", 7), Pair("1/a", 8), Pair("1/a", 9),
                          Pair("1/b", 100), Pair("1/b", 101), Pair("1/b", 102), Pair("3/a", 206),
                          Pair("3/a", 207), Pair("3/a", 208), Pair("3/a", 209)));
}

// Issue 11, defect 1: a key evicted from the history is deleted from the store, so that a
// restart loads only live keys; its next observations start a fresh window.
TYPED_TEST(HistoryStoreTest, DeletingAKeysObservationsRemovesOnlyThatKey) {
  HistoryStore& store = *this->store_;  // At most kMaxPerKey = 4 per (kind, key).
  for (int i = 0; i < 6; ++i) {
    store.AppendObservation(Obs(Kind::kTaskDuration, "gone", i), nullptr);
    store.AppendObservation(Obs(Kind::kTaskDuration, "kept", 10 + i), nullptr);
    store.AppendObservation(Obs(Kind::kColdStart, "gone", 20 + i), nullptr);  // Another kind.
  }
  ASSERT_TRUE(IsOk(store.Flush()));
  Acks acks;
  store.DeleteObservations(Kind::kTaskDuration, "gone", acks.Callback());
  // Deleted and written again in one batch: the count behind pruning starts over.
  store.DeleteObservations(Kind::kTaskDuration, "again", nullptr);
  store.AppendObservation(Obs(Kind::kTaskDuration, "again", 30), nullptr);
  ASSERT_TRUE(IsOk(store.Flush()));
  EXPECT_EQ(acks.ok(), 1);
  store.DeleteObservations(Kind::kTaskDuration, "again", nullptr);
  for (int i = 0; i < 5; ++i)
    store.AppendObservation(Obs(Kind::kTaskDuration, "again", 40 + i), nullptr);
  ASSERT_TRUE(IsOk(store.Flush()));
  this->Reopen();

  std::vector<std::pair<std::string, double>> rows;
  for (const Row& row : LoadRows(*this->store_)) {
    rows.emplace_back(absl::StrCat(static_cast<int>(std::get<0>(row)), "/", std::get<1>(row)),
                      std::get<2>(row));
  }
  EXPECT_THAT(rows, ElementsAre(Pair("1/again", 41), Pair("1/again", 42), Pair("1/again", 43),
                                Pair("1/again", 44), Pair("1/kept", 12), Pair("1/kept", 13),
                                Pair("1/kept", 14), Pair("1/kept", 15), Pair("3/gone", 22),
                                Pair("3/gone", 23), Pair("3/gone", 24), Pair("3/gone", 25)));
}

TYPED_TEST(HistoryStoreTest, FlushWaitsForEveryEarlierWriteAndItsCallback) {
  HistoryStore& store = *this->store_;
  EXPECT_TRUE(IsOk(store.Flush()));  // Nothing queued.
  this->Start(/*max_per_key=*/1000);
  HistoryStore& bigger = *this->store_;
  Acks acks;
  for (int i = 0; i < 500; ++i) {
    bigger.AppendObservation(Obs(Kind::kTaskDuration, "k", i), acks.Callback());
  }
  ASSERT_TRUE(IsOk(bigger.Flush()));
  EXPECT_EQ(acks.ok(), 500);  // No waiting after Flush: the callbacks have run.
  StoreStats stats = bigger.stats();
  EXPECT_EQ(stats.writes, 500);
  EXPECT_EQ(stats.write_errors, 0);
  EXPECT_EQ(stats.queued, 0);
  EXPECT_GE(stats.commits, 1);
  EXPECT_EQ(LoadRows(bigger).size(), 500u);
}

TYPED_TEST(HistoryStoreTest, ConcurrentWritersLoseNothing) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 400;
  this->Start(/*max_per_key=*/kThreads * kPerThread);
  HistoryStore& store = *this->store_;
  Acks acks;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&store, &acks, t] {
      for (int i = 0; i < kPerThread; ++i) {
        store.AppendObservation(Obs(Kind::kTaskDuration, absl::StrCat("own-", t), i),
                                acks.Callback());
        store.AppendObservation(Obs(Kind::kTaskDuration, "shared", t * kPerThread + i),
                                acks.Callback());
        if (i % 100 == 0) store.PutRun(absl::StrCat("run-", t, "-", i), "x", acks.Callback());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_TRUE(IsOk(store.Flush()));
  const int runs_per_thread = kPerThread / 100;
  EXPECT_EQ(acks.ok(), kThreads * (2 * kPerThread + runs_per_thread));
  EXPECT_THAT(acks.errors(), ::testing::IsEmpty());

  this->Reopen();
  std::vector<std::vector<double>> own(kThreads);
  std::vector<std::vector<double>> shared_by_thread(kThreads);
  for (const auto& [kind, key, value, time] : LoadRows(*this->store_)) {
    if (key == "shared") {
      shared_by_thread[static_cast<int>(value) / kPerThread].push_back(value);
    } else {
      own[std::stoi(key.substr(4))].push_back(value);
    }
  }
  for (int t = 0; t < kThreads; ++t) {
    SCOPED_TRACE(t);
    // Everything arrived, and each thread's writes in the order it made them.
    ASSERT_EQ(own[t].size(), static_cast<size_t>(kPerThread));
    ASSERT_EQ(shared_by_thread[t].size(), static_cast<size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i) {
      EXPECT_EQ(own[t][i], i);
      EXPECT_EQ(shared_by_thread[t][i], t * kPerThread + i);
    }
  }
  EXPECT_EQ(LoadRuns(*this->store_).size(), static_cast<size_t>(kThreads * runs_per_thread));
}

TYPED_TEST(HistoryStoreTest, WritesAfterCloseFailCleanly) {
  HistoryStore& store = *this->store_;
  ASSERT_TRUE(IsOk(Await([&](CommitCallback done) {
    store.AppendObservation(Obs(Kind::kColdStart, "svc", 1), std::move(done));
  })));
  ASSERT_TRUE(IsOk(store.Close()));
  EXPECT_TRUE(IsOk(store.Close()));  // Idempotent.

  // The callback runs before the call returns, on this thread.
  absl::Status status = absl::UnknownError("callback did not run");
  store.AppendObservation(Obs(Kind::kColdStart, "svc", 2),
                          [&](absl::Status s) { status = std::move(s); });
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  status = absl::UnknownError("callback did not run");
  store.PutService("svc", "x", [&](absl::Status s) { status = std::move(s); });
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  store.DeleteRun("run", nullptr);  // An empty callback is fine too.

  EXPECT_EQ(store.stats().write_errors, 3);
  EXPECT_EQ(store.stats().writes, 1);
  EXPECT_EQ(store.Flush().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(IsOk(store.Flush()));  // The error was reported once.
  EXPECT_EQ(store.LoadObservations([](const Observation&) {}).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store.LoadServices([](absl::string_view, absl::string_view) {}).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store.LoadRuns([](absl::string_view, absl::string_view) {}).code(),
            absl::StatusCode::kFailedPrecondition);
}

TYPED_TEST(HistoryStoreTest, NanAndEmptyCallbacksRoundTrip) {
  HistoryStore& store = *this->store_;
  store.AppendObservation(Obs(Kind::kWarmLatency, "svc", std::nan("")), nullptr);
  store.AppendObservation(Obs(Kind::kWarmLatency, "svc", -0.5), nullptr);
  ASSERT_TRUE(IsOk(store.Flush()));
  this->Reopen();
  std::vector<Row> rows = LoadRows(*this->store_);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_TRUE(std::isnan(std::get<2>(rows[0])));
  EXPECT_EQ(std::get<2>(rows[1]), -0.5);
}

TYPED_TEST(HistoryStoreTest, LoadsFromCallbacksMayWrite) {
  HistoryStore& store = *this->store_;
  ASSERT_TRUE(
      IsOk(Await([&](CommitCallback done) { store.PutService("svc", "v1", std::move(done)); })));
  // A start-up migration that rewrites what it reads must not deadlock.
  ASSERT_TRUE(IsOk(store.LoadServices([&](absl::string_view name, absl::string_view) {
    store.PutService(std::string(name), "v2", nullptr);
  })));
  ASSERT_TRUE(IsOk(store.Flush()));
  EXPECT_THAT(LoadServices(store), ElementsAre(Pair("svc", "v2")));
}

TYPED_TEST(HistoryStoreTest, OversizedWritesAreRefusedAlone) {
  HistoryStore& store = *this->store_;
  Acks acks;
  store.PutService("svc", "small", acks.Callback());
  absl::Status status;
  store.PutService("svc", std::string((size_t{256} << 20) - 2, 'x'),  // 256 MiB + 1 with the key.
                   [&](absl::Status s) { status = std::move(s); });
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;  // At once.
  store.PutRun("run", "r", acks.Callback());
  EXPECT_EQ(store.Flush().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(acks.ok(), 2);  // The writes around it are unharmed.
  EXPECT_THAT(LoadServices(store), ElementsAre(Pair("svc", "small")));
}

// Observation kinds are added without a schema bump (kChildOutcomes was): a newer prewarmd may
// have written kinds this binary does not know. They are skipped at load, never read as another
// kind, and the known rows of the same keys are intact.
TYPED_TEST(HistoryStoreTest, RowsOfUnknownKindsAreSkippedAtLoad) {
  HistoryStore& store = *this->store_;
  const Kind unknown_before = static_cast<Kind>(0);  // Sorts before every known kind.
  const Kind unknown_after = static_cast<Kind>(99);  // And after.
  store.AppendObservation(Obs(unknown_before, "a", 1000), nullptr);
  store.AppendObservation(Obs(Kind::kTaskDuration, "a", 1), nullptr);
  store.AppendObservation(Obs(unknown_after, "a", 1001), nullptr);
  store.AppendObservation(Obs(Kind::kTaskDuration, "a", 2), nullptr);
  store.AppendObservation(Obs(unknown_after, "b", 1002), nullptr);
  store.AppendObservation(Obs(Kind::kChildOutcomes, "a", 3), nullptr);
  ASSERT_TRUE(IsOk(store.Flush()));
  this->Reopen();
  const absl::Duration ns7 = absl::Nanoseconds(7);
  EXPECT_THAT(LoadRows(*this->store_),
              ElementsAre(Row(Kind::kTaskDuration, "a", 1, kT0 + absl::Seconds(1) + ns7),
                          Row(Kind::kTaskDuration, "a", 2, kT0 + absl::Seconds(2) + ns7),
                          Row(Kind::kChildOutcomes, "a", 3, kT0 + absl::Seconds(3) + ns7)));
}

// SQLite only: durability, files and failures.
class SqliteHistoryStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    path_ = dir_ + "/prewarm.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  StoreOptions Options() const { return StoreOptions{.path = path_}; }

  // Runs SQL against the file through a connection of the test's own.
  void RawExec(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    char* error = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (error ? error : "");
    sqlite3_free(error);
    sqlite3_close(db);
  }

  // The first column of the first row of `sql`, read through a connection of the test's own.
  int64_t RawQueryInt(const std::string& sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    int64_t result = -1;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      result = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return result;
  }

  // Runs `fn` with the server log going to a file; returns what was logged.
  static std::string Logged(const std::function<void()>& fn) {
    char name[] = "/tmp/store_log_XXXXXX";
    const int fd = mkstemp(name);
    EXPECT_GE(fd, 0);
    SetLogFd(fd);
    fn();
    SetLogFd(2);
    std::ifstream in(name);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    close(fd);
    unlink(name);
    return text;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(SqliteHistoryStoreTest, CallbacksRunOnlyAfterCommit) {
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(Options());
  ASSERT_TRUE(IsOk(store.status()));

  // Callbacks check, through another connection, that their row is visible: committed.
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &reader, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* count_observation = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(reader, "SELECT count(*) FROM observations WHERE key = ?1", -1,
                               &count_observation, nullptr),
            SQLITE_OK);
  sqlite3_stmt* count_service = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(reader, "SELECT count(*) FROM services WHERE name = ?1", -1,
                               &count_service, nullptr),
            SQLITE_OK);
  auto visible = [](sqlite3_stmt* stmt, const std::string& key) {
    sqlite3_bind_text(stmt, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    int rc = sqlite3_step(stmt);
    int64_t count = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
    sqlite3_reset(stmt);
    return count;
  };

  constexpr int kWrites = 40;
  std::vector<int64_t> seen(kWrites, -2);  // Written only by callbacks, on the writer thread.
  for (int i = 0; i < kWrites; ++i) {
    std::string key = absl::StrCat("key-", i);
    if (i % 2 == 0) {
      (*store)->AppendObservation(Obs(Kind::kTaskDuration, key, i), [&, i, key](absl::Status s) {
        seen[i] = s.ok() ? visible(count_observation, key) : -3;
      });
    } else {
      (*store)->PutService(key, "bytes", [&, i, key](absl::Status s) {
        seen[i] = s.ok() ? visible(count_service, key) : -3;
      });
    }
  }
  ASSERT_TRUE(IsOk((*store)->Flush()));
  EXPECT_THAT(seen, ::testing::Each(1));
  sqlite3_finalize(count_observation);
  sqlite3_finalize(count_service);
  sqlite3_close(reader);
}

TEST_F(SqliteHistoryStoreTest, PruningOnDiskKeepsExactlyTheNewest) {
  StoreOptions options = Options();
  options.max_observations_per_key = 4;
  auto count_and_oldest = [&](const std::string& key) {
    const std::string where = absl::StrCat(" FROM observations WHERE key = '", key, "'");
    return std::pair(RawQueryInt("SELECT count(*)" + where),
                     RawQueryInt("SELECT min(value)" + where));
  };
  {
    absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(options);
    ASSERT_TRUE(IsOk(store.status()));
    for (int i = 0; i < 50; ++i) {
      (*store)->AppendObservation(Obs(Kind::kTaskDuration, "a", i), nullptr);
      if (i % 7 == 0) (*store)->AppendObservation(Obs(Kind::kTaskDuration, "b", i), nullptr);
      if (i % 5 == 0) {
        ASSERT_TRUE(IsOk((*store)->Flush()));
      }
    }
    for (int i = 0; i < 20; ++i) {  // Many more than the bound in one transaction.
      (*store)->AppendObservation(Obs(Kind::kTaskDuration, "c", i), nullptr);
    }
    ASSERT_TRUE(IsOk((*store)->Close()));
  }
  EXPECT_THAT(count_and_oldest("a"), Pair(4, 46));
  EXPECT_THAT(count_and_oldest("b"), Pair(4, 28));
  EXPECT_THAT(count_and_oldest("c"), Pair(4, 16));

  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(options);
  ASSERT_TRUE(IsOk(store.status()));
  (*store)->AppendObservation(Obs(Kind::kTaskDuration, "a", 50), nullptr);
  ASSERT_TRUE(IsOk((*store)->Close()));
  EXPECT_THAT(count_and_oldest("a"), Pair(4, 47));
}

TEST_F(SqliteHistoryStoreTest, GroupsQueuedWritesIntoOneTransaction) {
  StoreOptions options = Options();
  options.max_batch_delay = absl::Hours(1);  // Only a full batch or a Flush starts a commit.
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(options);
  ASSERT_TRUE(IsOk(store.status()));
  Acks acks;
  for (int i = 0; i < 10; ++i) {
    (*store)->AppendObservation(Obs(Kind::kTaskDuration, "k", i), acks.Callback());
  }
  EXPECT_EQ(acks.ok(), 0);  // Not committed: the batch is waiting to fill.
  ASSERT_TRUE(IsOk((*store)->Flush()));
  EXPECT_EQ(acks.ok(), 10);
  EXPECT_EQ((*store)->stats().commits, 1);
}

TEST_F(SqliteHistoryStoreTest, OneBatchOfMixedWritesKeepsEachTablesOrder) {
  // Appends of a batch are inserted many rows per statement: each table still sees its writes in
  // the batch's order, deletions included, whatever lies between them.
  StoreOptions options = Options();
  options.max_batch_delay = absl::Hours(1);  // Everything below in one transaction.
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(options);
  ASSERT_TRUE(IsOk(store.status()));
  Acks acks;
  std::vector<std::string> expected_events;
  for (int i = 0; i < 70; ++i) {  // 70 rows: statements of several sizes.
    (*store)->AppendObservation(Obs(Kind::kTaskDuration, "k", i), acks.Callback());
    if (i == 49) (*store)->DeleteObservations(Kind::kTaskDuration, "k", acks.Callback());
    if (i % 3 == 0) {
      (*store)->AppendObservation(Obs(Kind::kDispatchGap, "g", i), acks.Callback());
    }
    if (i < 40) {
      (*store)->AppendRunEvent("r", absl::StrCat("r", i), acks.Callback());
      if (i == 19) {
        (*store)->PutRun("r", "snapshot", acks.Callback());
        (*store)->DeleteRun("r", acks.Callback());
      }
      if (i > 19) expected_events.push_back(absl::StrCat("r:r", i));
    }
    if (i % 2 == 0) {
      (*store)->AppendRunEvent("s", absl::StrCat("s", i), acks.Callback());
      expected_events.push_back(absl::StrCat("s:s", i));
    }
  }
  ASSERT_TRUE(IsOk((*store)->Flush()));
  EXPECT_EQ((*store)->stats().commits, 1);
  EXPECT_TRUE(acks.errors().empty());

  std::vector<double> gaps;
  std::vector<double> durations;
  for (const auto& [kind, key, value, time] : LoadRows(**store)) {
    (kind == Kind::kDispatchGap ? gaps : durations).push_back(value);
  }
  std::vector<double> expected_durations;
  for (int i = 50; i < 70; ++i) expected_durations.push_back(i);
  EXPECT_THAT(durations, ::testing::ElementsAreArray(expected_durations));
  std::vector<double> expected_gaps;
  for (int i = 0; i < 70; i += 3) expected_gaps.push_back(i);
  EXPECT_THAT(gaps, ::testing::ElementsAreArray(expected_gaps));

  std::vector<std::string> events;
  ASSERT_TRUE(IsOk((*store)->LoadRunEvents([&](absl::string_view run, absl::string_view bytes) {
    events.push_back(absl::StrCat(run, ":", bytes));
  })));
  EXPECT_THAT(events, ::testing::ElementsAreArray(expected_events));
  EXPECT_TRUE(IsOk((*store)->Close()));
}

TEST_F(SqliteHistoryStoreTest, BatchesAreCutAtMaxBatch) {
  StoreOptions options = Options();
  options.max_batch = 4;
  options.max_batch_delay = absl::Hours(1);
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(options);
  ASSERT_TRUE(IsOk(store.status()));
  Acks acks;
  for (int i = 0; i < 8; ++i) {
    (*store)->AppendObservation(Obs(Kind::kTaskDuration, "k", i), acks.Callback());
  }
  (*store)->AppendObservation(Obs(Kind::kTaskDuration, "k", 8), acks.Callback());
  ASSERT_TRUE(IsOk((*store)->Flush()));
  EXPECT_EQ(acks.ok(), 9);
  // However the writer's wake-ups fall, 9 writes in transactions of at most 4 that wait to fill
  // take exactly 3.
  EXPECT_EQ((*store)->stats().commits, 3);
}

TEST_F(SqliteHistoryStoreTest, AFailedTransactionFailsAllItsWritesAndTheStoreCarriesOn) {
  StoreOptions options = Options();
  options.max_batch = 3;
  options.max_batch_delay = absl::Hours(1);  // So that the next three writes share a batch.
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(options);
  ASSERT_TRUE(IsOk(store.status()));
  // Another process's trigger makes one insert fail, like a full disk would.
  RawExec(
      "CREATE TRIGGER poison BEFORE INSERT ON observations WHEN NEW.key = 'poison' "
      "BEGIN SELECT RAISE(ABORT, 'injected failure'); END;");

  Acks acks;
  (*store)->AppendObservation(Obs(Kind::kTaskDuration, "good", 1), acks.Callback());
  (*store)->AppendObservation(Obs(Kind::kTaskDuration, "poison", 2), acks.Callback());
  (*store)->PutService("svc", "x", acks.Callback());
  absl::Status flushed = (*store)->Flush();
  EXPECT_THAT(flushed.message(), HasSubstr("injected failure"));
  EXPECT_THAT(flushed.message(), HasSubstr(path_));
  EXPECT_EQ(acks.ok(), 0);
  ASSERT_EQ(acks.errors().size(), 3u);
  EXPECT_EQ(acks.errors()[0], flushed);
  EXPECT_EQ((*store)->stats().write_errors, 3);

  // Reported once; later writes commit.
  EXPECT_TRUE(IsOk((*store)->Flush()));
  (*store)->AppendObservation(Obs(Kind::kTaskDuration, "good", 3), acks.Callback());
  EXPECT_TRUE(IsOk((*store)->Flush()));
  EXPECT_EQ(acks.ok(), 1);
  std::vector<Row> rows = LoadRows(**store);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(std::get<2>(rows[0]), 3);
  EXPECT_THAT(LoadServices(**store), ::testing::IsEmpty());
  EXPECT_TRUE(IsOk((*store)->Close()));
}

TEST_F(SqliteHistoryStoreTest, AcknowledgedWritesSurviveSigkill) {
  for (bool synchronous_full : {false, true}) {
    SCOPED_TRACE(synchronous_full ? "synchronous=FULL" : "synchronous=NORMAL");
    path_ = absl::StrCat(dir_, "/crash", synchronous_full, ".db");
    constexpr int kWritten = 20000;
    constexpr int kAcknowledged = 5000;
    StoreOptions options = Options();
    options.synchronous_full = synchronous_full;
    options.max_observations_per_key = kWritten;

    const pid_t pid = fork();
    ASSERT_NE(pid, -1);
    if (pid == 0) {
      // The child: no gtest here, only exit codes. It dies inside the kAcknowledged-th callback,
      // with later writes still queued or in flight.
      absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(options);
      if (!store.ok()) _exit(2);
      std::atomic<int> acknowledged = 0;
      for (int i = 0; i < kWritten; ++i) {
        (*store)->AppendObservation(Obs(Kind::kTaskDuration, "k", i), [&](absl::Status s) {
          if (!s.ok()) _exit(3);
          if (acknowledged.fetch_add(1) + 1 == kAcknowledged) kill(getpid(), SIGKILL);
        });
      }
      (*store)->Flush().IgnoreError();
      _exit(4);
    }
    int wait_status = 0;
    ASSERT_EQ(waitpid(pid, &wait_status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wait_status))
        << "child exited with " << (WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1);
    ASSERT_EQ(WTERMSIG(wait_status), SIGKILL);

    absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(options);
    ASSERT_TRUE(IsOk(store.status()));
    std::vector<Row> rows = LoadRows(**store);
    // One writer thread commits in call order, so the acknowledged writes are the first ones.
    ASSERT_GE(rows.size(), static_cast<size_t>(kAcknowledged));
    for (int i = 0; i < kAcknowledged; ++i) ASSERT_EQ(std::get<2>(rows[i]), i);
  }
}

TEST_F(SqliteHistoryStoreTest, OpeningAFileThatIsNotADatabaseNamesThePath) {
  {
    std::ofstream garbage(path_, std::ios::binary);
    for (int i = 0; i < 200; ++i) garbage << "this is not an SQLite database, line " << i << "\n";
  }
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(Options());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss) << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr(path_));
}

TEST_F(SqliteHistoryStoreTest, OpeningAnUnopenablePathNamesThePath) {
  path_ = dir_ + "/no/such/dir/prewarm.db";
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(Options());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable) << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr(path_));
}

TEST_F(SqliteHistoryStoreTest, OpeningANewerSchemaFails) {
  ASSERT_TRUE(IsOk(HistoryStore::OpenSqlite(Options()).status()));
  RawExec("UPDATE schema_version SET version = 99");
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(Options());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr(path_));
  EXPECT_THAT(store.status().message(), HasSubstr("99"));
}

TEST_F(SqliteHistoryStoreTest, OpeningSomeoneElsesDatabaseFails) {
  RawExec("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance REAL)");
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(Options());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr(path_));
}

TEST_F(SqliteHistoryStoreTest, CreatesAWalFileAtTheCurrentSchemaVersion) {
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(Options());
  ASSERT_TRUE(IsOk(store.status()));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  auto query = [db](const char* sql) {
    sqlite3_stmt* stmt = nullptr;
    std::string result;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      result = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    return result;
  };
  EXPECT_EQ(query("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(query("SELECT version FROM schema_version"), "2");
  sqlite3_close(db);
  // Reopening an up-to-date store is a no-op migration.
  ASSERT_TRUE(IsOk((*store)->Close()));
  EXPECT_TRUE(IsOk(HistoryStore::OpenSqlite(Options()).status()));
}

TEST_F(SqliteHistoryStoreTest, RejectsBadOptions) {
  for (StoreOptions options : {StoreOptions{.path = path_, .max_observations_per_key = 0},
                               StoreOptions{.path = path_, .max_batch = 0},
                               StoreOptions{.path = path_, .max_batch_delay = -absl::Seconds(1)},
                               StoreOptions{.path = ""}, StoreOptions{.path = ":memory:"}}) {
    EXPECT_EQ(HistoryStore::OpenSqlite(options).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST_F(SqliteHistoryStoreTest, ASmallerBoundAtReopenLoadsAndKeepsOnlyTheNewest) {
  StoreOptions options = Options();
  options.max_observations_per_key = 8;
  {
    absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(options);
    ASSERT_TRUE(IsOk(store.status()));
    for (int i = 0; i < 8; ++i) {
      (*store)->AppendObservation(Obs(Kind::kTaskDuration, "a", i), nullptr);
      (*store)->AppendObservation(Obs(Kind::kTaskDuration, "b", 10 + i), nullptr);
    }
  }  // The destructor flushes and closes.
  options.max_observations_per_key = 3;
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(options);
  ASSERT_TRUE(IsOk(store.status()));
  std::vector<double> values;
  for (const Row& row : LoadRows(**store)) values.push_back(std::get<2>(row));
  EXPECT_THAT(values, ElementsAre(5, 6, 7, 15, 16, 17));

  // The next write to a key prunes its rows on disk down to the new bound.
  (*store)->AppendObservation(Obs(Kind::kTaskDuration, "a", 8), nullptr);
  ASSERT_TRUE(IsOk((*store)->Close()));
  EXPECT_EQ(RawQueryInt("SELECT count(*) FROM observations WHERE key = 'a'"), 3);
  EXPECT_EQ(RawQueryInt("SELECT count(*) FROM observations WHERE key = 'b'"), 8);  // Not written.
}

TEST_F(SqliteHistoryStoreTest, AFileWithRowsOfAnUnknownKindLoadsTheRestAndKeepsThem) {
  {
    absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(Options());
    ASSERT_TRUE(IsOk(store.status()));
    (*store)->AppendObservation(Obs(Kind::kTaskDuration, "wf\x1ft", 4), nullptr);
    (*store)->AppendObservation(Obs(Kind::kColdStart, "svc", 1.5), nullptr);
    ASSERT_TRUE(IsOk((*store)->Close()));
  }
  // What a newer prewarmd with a kind 99 would have written, twice, next to the known rows.
  RawExec(
      "INSERT INTO observations (kind, key, value, time_unix_nanos) VALUES "
      "(99, 'wf' || char(31) || 't', 1000, 1), (99, 'svc', 1001, 2)");
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(Options());
  ASSERT_TRUE(IsOk(store.status()));
  std::vector<Row> rows;
  const std::string log = Logged([&] { rows = LoadRows(**store); });
  const absl::Duration ns7 = absl::Nanoseconds(7);
  EXPECT_THAT(rows,
              ElementsAre(Row(Kind::kTaskDuration, "wf\x1ft", 4, kT0 + absl::Seconds(4) + ns7),
                          Row(Kind::kColdStart, "svc", 1.5, kT0 + absl::Seconds(1.5) + ns7)));
  // One line for the whole load, naming the store, the kind and how many rows.
  EXPECT_THAT(log, HasSubstr("WARNING"));
  EXPECT_THAT(log, HasSubstr(path_));
  EXPECT_THAT(log, HasSubstr("skipped 2 history rows"));
  EXPECT_THAT(log, HasSubstr("99 (2 rows)"));
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;

  // The rows stay for the binary that knows them, also after writes to the same keys.
  (*store)->AppendObservation(Obs(Kind::kTaskDuration, "wf\x1ft", 5), nullptr);
  ASSERT_TRUE(IsOk((*store)->Close()));
  EXPECT_EQ(RawQueryInt("SELECT count(*) FROM observations WHERE kind = 99"), 2);
}

// Every run's events, "run:bytes", in the order LoadRunEvents passes them.
std::vector<std::string> LoadEvents(HistoryStore& store) {
  std::vector<std::string> events;
  EXPECT_TRUE(IsOk(store.LoadRunEvents([&](absl::string_view run, absl::string_view bytes) {
    events.push_back(absl::StrCat(run, ":", bytes));
  })));
  return events;
}

TEST_F(SqliteHistoryStoreTest,
       InterleavedRunsLoadInTheOrderAppendedAndDeleteRunRemovesOnlyItsEvents) {
  // Like concurrent runs reporting: each batch holds one event of every run, across reopens. They
  // load as they were appended, interleaved (each run's in its order).
  StoreOptions options = Options();
  options.max_batch_delay = absl::Hours(1);
  const std::vector<std::string> runs = {"run-b", "run-a", "run-10", "run-9"};
  for (int round = 0; round < 3; ++round) {
    absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(options);
    ASSERT_TRUE(IsOk(store.status()));
    for (int i = 0; i < 5; ++i) {
      for (const std::string& run : runs) {
        (*store)->AppendRunEvent(run, absl::StrCat(round * 5 + i), nullptr);
      }
      ASSERT_TRUE(IsOk((*store)->Flush()));
    }
    if (round == 1) (*store)->DeleteRun("run-a", nullptr);
    ASSERT_TRUE(IsOk((*store)->Close()));
  }
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(options);
  ASSERT_TRUE(IsOk(store.status()));
  std::vector<std::string> expected;
  for (int i = 0; i < 15; ++i) {
    for (const std::string& run : runs) {
      // run-a was deleted after its first 10 events; the last 5 came after.
      if (run == "run-a" && i < 10) continue;
      expected.push_back(absl::StrCat(run, ":", i));
    }
  }
  EXPECT_THAT(LoadEvents(**store), ::testing::ElementsAreArray(expected));

  for (const std::string& run : runs) (*store)->DeleteRun(run, nullptr);
  (*store)->AppendRunEvent("run-new", "after", nullptr);
  ASSERT_TRUE(IsOk((*store)->Close()));
  EXPECT_EQ(RawQueryInt("SELECT count(*) FROM run_events"), 1);
  // Seqs never go back: the new event comes after every one appended before.
  EXPECT_EQ(RawQueryInt("SELECT seq FROM run_events"), 3 * 5 * 4 + 1);
}

TEST_F(SqliteHistoryStoreTest, AFailedBatchForgetsItsRunEventsAndLaterDeletesStillRemoveAll) {
  StoreOptions options = Options();
  options.max_batch_delay = absl::Hours(1);
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(options);
  ASSERT_TRUE(IsOk(store.status()));
  (*store)->AppendRunEvent("r", "e1", nullptr);
  (*store)->AppendRunEvent("r", "e2", nullptr);
  ASSERT_TRUE(IsOk((*store)->Flush()));
  RawExec(
      "CREATE TRIGGER poison BEFORE INSERT ON runs WHEN NEW.run_id = 'poison' "
      "BEGIN SELECT RAISE(ABORT, 'injected failure'); END;");

  // One batch that appends to r, deletes r and fails at its end: none of it happened.
  (*store)->AppendRunEvent("r", "e3", nullptr);
  (*store)->DeleteRun("r", nullptr);
  (*store)->AppendRunEvent("r", "e4", nullptr);
  (*store)->PutRun("poison", "x", nullptr);
  EXPECT_THAT((*store)->Flush().message(), HasSubstr("injected failure"));
  EXPECT_THAT(LoadEvents(**store), ElementsAre("r:e1", "r:e2"));

  (*store)->AppendRunEvent("r", "e5", nullptr);
  ASSERT_TRUE(IsOk((*store)->Flush()));
  EXPECT_THAT(LoadEvents(**store), ElementsAre("r:e1", "r:e2", "r:e5"));
  (*store)->DeleteRun("r", nullptr);
  ASSERT_TRUE(IsOk((*store)->Flush()));
  EXPECT_THAT(LoadEvents(**store), ::testing::IsEmpty());
  ASSERT_TRUE(IsOk((*store)->Close()));
  EXPECT_EQ(RawQueryInt("SELECT count(*) FROM run_events"), 0);
}

TEST_F(SqliteHistoryStoreTest, AVersion1StoreIsMigratedWithItsData) {
  // A store as version 1 left it, written by hand: its schema, verbatim (a copy of kMigrations[0]
  // on purpose: the released text, not whatever the code holds now), and rows of every table,
  // run events of two runs interleaved.
  RawExec(R"sql(
    CREATE TABLE schema_version (version INTEGER NOT NULL);
    INSERT INTO schema_version (version) VALUES (1);
    PRAGMA application_id = 1886549869;
    CREATE TABLE observations (
      seq INTEGER PRIMARY KEY,
      kind INTEGER NOT NULL,
      key TEXT NOT NULL,
      value REAL,
      time_unix_nanos INTEGER NOT NULL
    );
    CREATE INDEX observations_by_key ON observations (kind, key, seq);
    CREATE TABLE services (name TEXT PRIMARY KEY, serialized BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE runs (run_id TEXT PRIMARY KEY, serialized BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE run_events (
      seq INTEGER PRIMARY KEY,
      run_id TEXT NOT NULL,
      serialized BLOB NOT NULL
    );
    CREATE INDEX run_events_by_run ON run_events (run_id, seq);
    INSERT INTO observations (kind, key, value, time_unix_nanos) VALUES
      (1, 'wf' || char(31) || 't', 2.5, 1700000000000000007), (3, 'svc', 1.5, 1700000001000000007);
    INSERT INTO services VALUES ('svc', x'0a0373766300');
    INSERT INTO runs VALUES ('run-1', 'one'), ('run-2', 'two');
    INSERT INTO run_events (run_id, serialized) VALUES
      ('run-2', 'a'), ('run-1', 'b'), ('run-2', 'c'), ('run-1', 'd');
  )sql");

  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(Options());
  ASSERT_TRUE(IsOk(store.status()));
  EXPECT_THAT(LoadRows(**store),
              ElementsAre(Row(Kind::kTaskDuration, "wf\x1ft", 2.5, kT0 + absl::Nanoseconds(7)),
                          Row(Kind::kColdStart, "svc", 1.5,
                              kT0 + absl::Seconds(1) + absl::Nanoseconds(7))));
  EXPECT_THAT(LoadServices(**store), ElementsAre(Pair("svc", std::string("\x0a\x03svc\x00", 6))));
  EXPECT_THAT(LoadRuns(**store), ElementsAre(Pair("run-1", "one"), Pair("run-2", "two")));
  EXPECT_THAT(LoadEvents(**store), ElementsAre("run-2:a", "run-1:b", "run-2:c", "run-1:d"));
  EXPECT_EQ(RawQueryInt("SELECT version FROM schema_version"), 2);
  EXPECT_EQ(RawQueryInt("SELECT count(*) FROM sqlite_master WHERE name = 'run_events_by_run'"), 0);

  // The migrated rows' seqs are known: deleting a run removes its old events and new ones.
  (*store)->AppendRunEvent("run-2", "e", nullptr);
  (*store)->AppendRunEvent("run-1", "f", nullptr);
  (*store)->DeleteRun("run-2", nullptr);
  ASSERT_TRUE(IsOk((*store)->Flush()));
  EXPECT_THAT(LoadEvents(**store), ElementsAre("run-1:b", "run-1:d", "run-1:f"));
  ASSERT_TRUE(IsOk((*store)->Close()));
  EXPECT_EQ(RawQueryInt("SELECT count(*) FROM run_events WHERE run_id = 'run-2'"), 0);

  // A file of a newer version than this binary's is still refused.
  RawExec("UPDATE schema_version SET version = 3");
  absl::StatusOr<std::unique_ptr<HistoryStore>> newer = HistoryStore::OpenSqlite(Options());
  ASSERT_FALSE(newer.ok());
  EXPECT_EQ(newer.status().code(), absl::StatusCode::kFailedPrecondition) << newer.status();
  EXPECT_THAT(newer.status().message(),
              HasSubstr("schema version 3 is not supported by this binary (which supports up to "
                        "2); upgrade prewarmd"));
}

// --- Issue 11, defect 2: a damaged or emptied store is refused, not served as empty. ---

class DamagedStoreTest : public SqliteHistoryStoreTest {
 protected:
  // A closed store holding one service and `observations` observations.
  void WriteStore(int observations = 10) {
    absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(Options());
    ASSERT_TRUE(IsOk(store.status()));
    (*store)->PutService("svc", "registration", nullptr);
    for (int i = 0; i < observations; ++i) {
      (*store)->AppendObservation(Obs(Kind::kTaskDuration, absl::StrCat("key-", i), i), nullptr);
    }
    ASSERT_TRUE(IsOk((*store)->Close()));
  }

  static void Poke(const std::string& path, int64_t offset, const std::string& bytes) {
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(offset);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(f.good()) << path;
  }
};

TEST_F(DamagedStoreTest, AStoreTruncatedToZeroBytesIsRefused) {
  WriteStore();
  std::filesystem::resize_file(path_, 0);
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(Options());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss) << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr(path_));
  EXPECT_THAT(store.status().message(), HasSubstr("empty (0 bytes)"));
  EXPECT_THAT(store.status().message(), HasSubstr("--store_accept_empty"));
  EXPECT_EQ(std::filesystem::file_size(path_), 0u) << "refusing must not write to the file";
}

TEST_F(DamagedStoreTest, AnSqliteFileWithoutATableIsRefused) {
  RawExec("CREATE TABLE x (a); DROP TABLE x;");
  ASSERT_GT(std::filesystem::file_size(path_), 0u);
  absl::Status status = HistoryStore::OpenSqlite(Options()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr("without any table"));
}

TEST_F(DamagedStoreTest, AcceptingAnEmptyFileInitialisesItWithAWarning) {
  WriteStore();
  std::filesystem::resize_file(path_, 0);
  StoreOptions options = Options();
  options.accept_empty = true;
  std::string log = Logged([&] {
    absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(options);
    ASSERT_TRUE(IsOk(store.status()));
    EXPECT_THAT(LoadServices(**store), ::testing::IsEmpty());
    (*store)->PutService("svc", "again", nullptr);
  });
  EXPECT_THAT(log, HasSubstr("WARNING"));
  EXPECT_THAT(log, HasSubstr(path_));
  EXPECT_THAT(log, HasSubstr("NEW EMPTY STORE"));
  // It is a store now: it opens without the flag.
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(Options());
  ASSERT_TRUE(IsOk(store.status()));
  EXPECT_THAT(LoadServices(**store), ElementsAre(Pair("svc", "again")));
}

TEST_F(DamagedStoreTest, ANewStoreIsMarkedWithTheApplicationId) {
  WriteStore();
  EXPECT_EQ(RawQueryInt("PRAGMA application_id"), 0x7072776d);  // "prwm"
}

TEST_F(DamagedStoreTest, AnotherApplicationsDatabaseIsRefused) {
  RawExec("PRAGMA application_id = 42; CREATE TABLE t (a);");
  absl::Status status = HistoryStore::OpenSqlite(Options()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(), HasSubstr("application_id 42"));
}

TEST_F(DamagedStoreTest, ADamagedPageIsRefusedByQuickCheck) {
  WriteStore(2000);  // Several pages of observations and their index.
  const uintmax_t bytes = std::filesystem::file_size(path_);
  const int64_t page_size = RawQueryInt("PRAGMA page_size");
  ASSERT_GE(bytes / page_size, 6u);
  // Garbage over a page in the middle of the file.
  Poke(path_, (bytes / page_size / 2) * page_size, std::string(page_size, '\x5a'));
  absl::Status status = HistoryStore::OpenSqlite(Options()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr(path_));
  EXPECT_THAT(status.message(), HasSubstr("quick_check"));
}

// What a crash leaves: the store open, its recent commits in the WAL, not checkpointed. Copies
// the files as they are on disk to `copy` (+ "-wal") and returns the WAL's frame count.
class CrashedStoreTest : public DamagedStoreTest {
 protected:
  void CrashCopy(const std::string& copy, int commits) {
    absl::StatusOr<std::unique_ptr<HistoryStore>> store =
        HistoryStore::OpenSqlite({.path = path_, .max_batch_delay = {}});
    ASSERT_TRUE(IsOk(store.status()));
    for (int i = 0; i < commits; ++i) {
      (*store)->AppendObservation(Obs(Kind::kColdStart, "svc", i), nullptr);
      ASSERT_TRUE(IsOk((*store)->Flush()));  // One transaction each.
    }
    std::filesystem::copy_file(path_, copy);
    std::filesystem::copy_file(path_ + "-wal", copy + "-wal");
  }
  static int64_t Frames(const std::string& wal) {
    return (static_cast<int64_t>(std::filesystem::file_size(wal)) - 32) / (24 + 4096);
  }
};

TEST_F(CrashedStoreTest, AnIntactWalIsReplayed) {
  const std::string copy = dir_ + "/copy.db";
  CrashCopy(copy, 6);
  path_ = copy;
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(Options());
  ASSERT_TRUE(IsOk(store.status()));
  EXPECT_EQ(LoadRows(**store).size(), 6u);
}

TEST_F(CrashedStoreTest, AWalWithCommitsAfterADamagedFrameIsRefused) {
  const std::string copy = dir_ + "/copy.db";
  CrashCopy(copy, 6);
  const std::string wal = copy + "-wal";
  const int64_t frames = Frames(wal);
  ASSERT_GE(frames, 6);
  // One byte of a page in the middle: SQLite would stop there and drop every later commit.
  Poke(wal, 32 + (frames / 2) * (24 + 4096) + 24 + 2000, "\x01");
  path_ = copy;
  absl::Status status = HistoryStore::OpenSqlite(Options()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr(wal));
  EXPECT_THAT(status.message(), HasSubstr("damaged frame"));
  EXPECT_THAT(status.message(), HasSubstr("committed transaction"));

  // The documented way to accept the loss: checkpoint what precedes the damage.
  RawExec("PRAGMA wal_checkpoint(TRUNCATE)");
  absl::StatusOr<std::unique_ptr<HistoryStore>> store = HistoryStore::OpenSqlite(Options());
  ASSERT_TRUE(IsOk(store.status()));
  EXPECT_LT(LoadRows(**store).size(), 6u);
}

TEST_F(CrashedStoreTest, AWalWithoutItsDatabaseIsRefused) {
  const std::string copy = dir_ + "/copy.db";
  CrashCopy(copy, 3);
  std::filesystem::remove(copy);
  path_ = copy;
  absl::Status status = HistoryStore::OpenSqlite(Options()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr("does not exist but its WAL"));
}

TEST(InMemoryHistoryStoreTest, InjectedWriteErrorsReachCallbacksAndFlush) {
  InMemoryHistoryStore store;
  store.SetWriteError(absl::ResourceExhaustedError("disk full"));
  absl::Status status;
  store.AppendObservation(Obs(Kind::kColdStart, "svc", 1), [&](absl::Status s) { status = s; });
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store.Flush().code(), absl::StatusCode::kResourceExhausted);
  store.SetWriteError(absl::OkStatus());
  store.AppendObservation(Obs(Kind::kColdStart, "svc", 2), [&](absl::Status s) { status = s; });
  EXPECT_TRUE(IsOk(status));
  EXPECT_TRUE(IsOk(store.Flush()));
  std::vector<Row> rows = LoadRows(store);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(std::get<2>(rows[0]), 2);
  EXPECT_EQ(store.stats().write_errors, 1);
  EXPECT_EQ(store.stats().writes, 1);
}

}  // namespace
}  // namespace prewarm
