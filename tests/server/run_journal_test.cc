#include "server/run_journal.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/event_learning.h"
#include "server/proto_time.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/in_memory_history_store.h"
#include "tests/server/test_runs.h"

namespace prewarm {
namespace {

using ::prewarm::testing::BuildTestRun;
using ::prewarm::testing::ChainRequest;
using ::prewarm::testing::TaskEvent;
using ::prewarm::testing::TestHistoryOptions;

class RunJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    metrics_ = Metrics::Create({.listen_address = ""}).value();
    store_ = NewInMemoryHistoryStore();
    journal_ = std::make_unique<RunJournal>(store_.get(), metrics_.get(), &clock_);
    now_ = clock_.Now();
  }
  void TearDown() override {
    journal_->WaitForCallbacks();
    EXPECT_TRUE(store_->Close().ok());
  }

  // Writes and waits until durable.
  absl::Status WriteAndWait(std::vector<Observation> observations, RunWrite write) {
    absl::Notification done;
    absl::Status result;
    journal_->Write({}, 0, std::move(observations), std::move(write), [&](absl::Status s) {
      result = s;
      done.Notify();
    })();
    done.WaitForNotification();
    return result;
  }

  FakeClock clock_;
  absl::Time now_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<HistoryStore> store_;
  std::unique_ptr<RunJournal> journal_;
  History history_{TestHistoryOptions()};
};

TEST_F(RunJournalTest, ARunsSnapshotAndLogComeBackAtLoad) {
  std::unique_ptr<prewarm::Run> run =
      BuildTestRun(ChainRequest("run-1", {"a", "b"}, now_ + absl::Seconds(60)), now_, history_);
  run->model = ModelToProto(RunModel{});
  ASSERT_TRUE(
      WriteAndWait({}, {RunWrite::Kind::kSnapshot, "run-1", RunJournal::Snapshot(*run)}).ok());
  journal_->LogWarmup(*run, 1, store::v1::WarmupRecord::KIND_FIRED, now_ + absl::Seconds(69),
                      now_ + absl::Seconds(130));
  store::v1::RunEvent event;
  *event.mutable_timing() =
      TaskEvent(*run, "a", v1::TASK_EVENT_TYPE_STARTED, now_ + absl::Seconds(60));
  ASSERT_TRUE(WriteAndWait({}, {RunWrite::Kind::kEvent, "run-1", event.SerializeAsString()}).ok());

  absl::StatusOr<StoredRuns> stored = journal_->LoadRuns();
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_TRUE(stored->unreadable.empty());
  ASSERT_TRUE(stored->snapshots.contains("run-1"));
  const store::v1::RunSnapshot& snapshot = stored->snapshots.at("run-1");
  EXPECT_EQ(snapshot.request().run_id(), "run-1");
  EXPECT_EQ(FromProto(snapshot.last_event_time(), "").value(), now_);  // When it was accepted.
  ASSERT_EQ(stored->logs.at("run-1").size(), 2u);                      // In the order written.
  const store::v1::WarmupRecord& fired = stored->logs.at("run-1")[0].warmup();
  EXPECT_EQ(fired.task_id(), "b");
  EXPECT_EQ(fired.kind(), store::v1::WarmupRecord::KIND_FIRED);
  EXPECT_EQ(FromProto(fired.warm_until(), "").value(), now_ + absl::Seconds(130));
  EXPECT_EQ(stored->logs.at("run-1")[1].timing().task_id(), "a");

  // Deleting the run takes its log too.
  ASSERT_TRUE(WriteAndWait({}, {RunWrite::Kind::kDelete, "run-1", ""}).ok());
  stored = journal_->LoadRuns();
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(stored->snapshots.empty());
  EXPECT_TRUE(stored->logs.empty());
}

TEST_F(RunJournalTest, ALogWithoutASnapshotIsMarkedForDeletion) {
  std::unique_ptr<prewarm::Run> run =
      BuildTestRun(ChainRequest("gone", {"a"}, now_ + absl::Seconds(60)), now_, history_);
  journal_->LogWarmup(*run, 0, store::v1::WarmupRecord::KIND_CANCELLED, now_, absl::InfinitePast());
  ASSERT_TRUE(store_->Flush().ok());
  absl::StatusOr<StoredRuns> stored = journal_->LoadRuns();
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->unreadable, std::vector<std::string>{"gone"});
}

TEST_F(RunJournalTest, HistoryComesBackWithItsEvictionOrder) {
  // Three keys observed in the order k2, k0, k1; a cap of 2 keeps the newest two.
  const std::vector<std::pair<std::string, absl::Duration>> seen = {
      {"k2", absl::Seconds(1)}, {"k0", absl::Seconds(2)}, {"k1", absl::Seconds(3)}};
  std::vector<Observation> observations;
  for (const auto& [key, offset] : seen) {
    observations.push_back(MakeObservation(Observation::Kind::kColdStart, key, 1.5, now_ + offset));
  }
  ASSERT_TRUE(WriteAndWait(std::move(observations), {}).ok());
  History loaded(TestHistoryOptions());
  absl::StatusOr<int64_t> count = journal_->LoadHistory(loaded, /*max_keys=*/2);
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 3);
  EXPECT_EQ(loaded.key_count(), 2u);
  EXPECT_EQ(loaded.ColdStarts("k2"), nullptr);  // The least recently observed went.
  ASSERT_NE(loaded.ColdStarts("k0"), nullptr);
  ASSERT_NE(loaded.ColdStarts("k1"), nullptr);
  // ... and left the store too.
  ASSERT_TRUE(store_->Flush().ok());
  History again(TestHistoryOptions());
  ASSERT_TRUE(journal_->LoadHistory(again, 100).ok());
  EXPECT_EQ(again.key_count(), 2u);
}

// A kind this binary does not know (written by a newer prewarmd) must not be learned as a task
// duration, which is where an unknown kind used to land.
TEST_F(RunJournalTest, HistoryLoadSkipsObservationsOfUnknownKinds) {
  const std::string key = History::TaskKey("wf", "t");
  ASSERT_TRUE(WriteAndWait({MakeObservation(Observation::Kind::kTaskDuration, key, 4, now_),
                            MakeObservation(static_cast<Observation::Kind>(99), key, 1000, now_),
                            MakeObservation(static_cast<Observation::Kind>(99), "other", 7, now_)},
                           {})
                  .ok());
  History loaded(TestHistoryOptions());
  absl::StatusOr<int64_t> count = journal_->LoadHistory(loaded, /*max_keys=*/100);
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 1);
  EXPECT_EQ(loaded.key_count(), 1u);
  const SampleWindow* durations = loaded.TaskDurations("wf", "t");
  ASSERT_NE(durations, nullptr);
  EXPECT_EQ(durations->size(), 1);
}

TEST_F(RunJournalTest, AStoreErrorReachesTheCallerAsUnavailable) {
  ASSERT_TRUE(store_->Close().ok());
  absl::Status s =
      WriteAndWait({MakeObservation(Observation::Kind::kColdStart, "svc", 1, now_)}, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("the store could not commit"), std::string::npos) << s;
  store_ = NewInMemoryHistoryStore();  // For TearDown.
}

TEST_F(RunJournalTest, AModelSurvivesItsProtoAndAWrongSizeIsRefused) {
  std::unique_ptr<prewarm::Run> run =
      BuildTestRun(ChainRequest("run-1", {"a", "b"}, now_ + absl::Seconds(60)), now_, history_);
  RunModel model = BuildRunModel(*run->dag, "wf", history_, [](absl::string_view) {
    return ServiceInfo{.warmable = true, .keep_alive = absl::Seconds(90)};
  });
  store::v1::RunModel stored = ModelToProto(model);
  // Both tasks' cold starts share one prior distribution: stored once.
  EXPECT_LT(stored.distributions_size(), 5);
  std::optional<RunModel> back = ModelFromProto(stored, 2);
  ASSERT_TRUE(back.has_value());
  ASSERT_EQ(back->tasks.size(), 2u);
  EXPECT_EQ(back->tasks[1].service.keep_alive, absl::Seconds(90));
  EXPECT_TRUE(back->tasks[0].service.warmable);
  EXPECT_EQ(back->tasks[0].duration.distribution->samples(),
            model.tasks[0].duration.distribution->samples());
  EXPECT_EQ(ModelFromProto(stored, 3), std::nullopt);
}

TEST_F(RunJournalTest, ReplayAppliesWarmupRecordsAndCollectsPoolChanges) {
  std::unique_ptr<prewarm::Run> run =
      BuildTestRun(ChainRequest("run-1", {"a", "b"}, now_ + absl::Seconds(60)), now_, history_);
  std::vector<PoolOp> ops;
  int applied = 0;
  auto apply = [&](prewarm::Run&, const v1::ReportTimingRequest&, absl::Time) {
    ++applied;
    return true;
  };
  store::v1::RunEvent fired;
  fired.mutable_warmup()->set_task_id("a");
  fired.mutable_warmup()->set_kind(store::v1::WarmupRecord::KIND_FIRED);
  *fired.mutable_warmup()->mutable_time() = ToProtoTimestamp(now_ + absl::Seconds(58));
  ReplayRecord(*run, fired, 0, now_, apply, &ops);
  EXPECT_EQ(run->tasks[0].warmup, v1::WARMUP_STATE_FIRED);
  EXPECT_EQ(run->tasks[0].fired_at, now_ + absl::Seconds(58));

  store::v1::RunEvent ready = fired;
  ready.mutable_warmup()->set_kind(store::v1::WarmupRecord::KIND_READY);
  ready.mutable_warmup()->set_cold(true);
  *ready.mutable_warmup()->mutable_time() = ToProtoTimestamp(now_ + absl::Seconds(60));
  *ready.mutable_applied_time() = ToProtoTimestamp(now_ + absl::Seconds(60));
  ReplayRecord(*run, ready, 1, now_, apply, &ops);
  EXPECT_EQ(run->tasks[0].warmup, v1::WARMUP_STATE_READY);
  EXPECT_EQ(run->tasks[0].ready_at, now_ + absl::Seconds(60));
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0].kind, PoolOp::Kind::kAnswered);
  EXPECT_EQ(ops[0].task_key, "run-1#0");
  EXPECT_TRUE(ops[0].cold);
  EXPECT_FALSE(ops[0].forget_after);  // a still waits for it.

  store::v1::RunEvent started;
  *started.mutable_timing() =
      TaskEvent(*run, "a", v1::TASK_EVENT_TYPE_STARTED, now_ + absl::Seconds(61));
  started.set_outcome(v1::TASK_OUTCOME_HIT);
  ReplayRecord(*run, started, 2, now_, apply, &ops);
  EXPECT_EQ(applied, 1);
  EXPECT_EQ(run->events, 1);
  EXPECT_TRUE(run->tasks[0].outcome_counted);  // Counted before the restart.
  EXPECT_EQ(run->tasks[0].outcome, v1::TASK_OUTCOME_HIT);
  ASSERT_EQ(ops.size(), 2u);
  EXPECT_EQ(ops[1].kind, PoolOp::Kind::kAcquire);

  // An event the run refuses is not counted.
  ReplayRecord(
      *run, started, 3, now_,
      [](prewarm::Run&, const v1::ReportTimingRequest&, absl::Time) { return false; }, &ops);
  EXPECT_EQ(run->events, 1);
}

}  // namespace
}  // namespace prewarm
