#include "server/warmup_dispatcher.h"

#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/proto_time.h"
#include "server/url_allowlist.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_http_warmer.h"
#include "tests/fakes/in_memory_history_store.h"
#include "tests/server/test_runs.h"

namespace prewarm {
namespace {

using ::prewarm::testing::BuildTestRun;
using ::prewarm::testing::ChainRequest;
using ::prewarm::testing::FakeHttpWarmer;
using ::prewarm::testing::TestHistoryOptions;

class WarmupDispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"svc-a", "svc-b"}) {
      v1::Service s;
      s.set_name(name);
      s.set_warmup_url(absl::StrCat("http://127.0.0.1:9/", name));
      *s.mutable_keep_alive() = ToProtoDuration(absl::Seconds(100));
      ASSERT_TRUE(services_.Register(s).ok());
    }
    t0_ = clock_.Now();
    // A chain a -> b starting a minute from now: a warmed at t0+58 s, b at t0+69 s.
    run_ = BuildTestRun(ChainRequest("run-1", {"a", "b"}, t0_ + absl::Seconds(60)), t0_, history_);
  }
  void TearDown() override {
    guarded_.Close();
    journal_.WaitForCallbacks();
    EXPECT_TRUE(store_->Close().ok());
  }

  FakeClock clock_;
  absl::Time t0_;
  std::unique_ptr<Metrics> metrics_ = Metrics::Create({.listen_address = ""}).value();
  std::unique_ptr<HistoryStore> store_ = NewInMemoryHistoryStore();
  RunJournal journal_{store_.get(), metrics_.get(), &clock_};
  ServiceRegistry services_{UrlAllowlist::Default(), ServiceDefaults{}};
  TimerQueue timers_{clock_};
  GuardedTimers guarded_{&timers_};
  std::vector<std::tuple<std::string, int, uint64_t>> due_;
  std::vector<std::tuple<std::string, int, uint64_t>> refresh_due_;
  WarmupDispatcher dispatcher_{
      {.warmup_attempts = 2, .max_warmup_refreshes = 1},
      {.clock = &clock_,
       .services = &services_,
       .timers = &guarded_,
       .metrics = metrics_.get(),
       .journal = &journal_},
      {.due = [this](const std::string& run, int v, uint64_t generation,
                     absl::Duration) { due_.emplace_back(run, v, generation); },
       .refresh_due = [this](const std::string& run, int v,
                             uint64_t id) { refresh_due_.emplace_back(run, v, id); }}};
  History history_{TestHistoryOptions()};
  std::unique_ptr<prewarm::Run> run_;
};

TEST_F(WarmupDispatcherTest, SyncSchedulesEachPlannedWarmupAtItsTime) {
  dispatcher_.Sync(*run_, {0, 1});
  EXPECT_EQ(dispatcher_.pending(), 2);
  EXPECT_EQ(run_->tasks[0].warmup, v1::WARMUP_STATE_PENDING);
  EXPECT_EQ(run_->tasks[1].scheduled_for, t0_ + absl::Seconds(69));
  clock_.AdvanceTo(t0_ + absl::Seconds(58));
  EXPECT_EQ(timers_.RunDue(), 1);
  ASSERT_EQ(due_.size(), 1u);
  EXPECT_EQ(due_[0], std::make_tuple(std::string("run-1"), 0, run_->tasks[0].generation));
  // Syncing again with an unchanged plan moves nothing.
  const uint64_t generation = run_->tasks[1].generation;
  dispatcher_.Sync(*run_, {1});
  EXPECT_EQ(run_->tasks[1].generation, generation);
  EXPECT_EQ(dispatcher_.pending(), 2);  // Fire() takes it off, not the timer.
}

TEST_F(WarmupDispatcherTest, FireSendsTheWarmupAndTracksItUntilItsResult) {
  dispatcher_.Sync(*run_, {0, 1});
  clock_.AdvanceTo(t0_ + absl::Seconds(58));
  OutgoingWarmup out;
  // A superseded timer does nothing.
  EXPECT_EQ(dispatcher_.Fire(*run_, 0, run_->tasks[0].generation + 1, absl::ZeroDuration(), &out),
            WarmupDispatcher::FireResult::kStale);
  ASSERT_EQ(dispatcher_.Fire(*run_, 0, run_->tasks[0].generation, absl::ZeroDuration(), &out),
            WarmupDispatcher::FireResult::kFired);
  EXPECT_EQ(dispatcher_.pending(), 1);
  EXPECT_EQ(run_->tasks[0].warmup, v1::WARMUP_STATE_FIRED);
  EXPECT_EQ(run_->tasks[0].fired_at, t0_ + absl::Seconds(58));
  EXPECT_EQ(out.http.url, "http://127.0.0.1:9/svc-a");
  EXPECT_EQ(out.http.max_attempts, 2);
  EXPECT_EQ(out.http.id, run_->tasks[0].warmup_id);

  // Sent through the (fake) warmer, the result comes back to the callback.
  FakeHttpWarmer warmer;
  DelegatedWarmups delegated;
  std::vector<std::tuple<uint64_t, bool, absl::Duration>> results;
  SendWarmup(out, warmer, delegated, [&](uint64_t id, bool success, absl::Duration latency, bool) {
    results.emplace_back(id, success, latency);
  });
  ASSERT_TRUE(warmer.Complete(out.http.id, FakeHttpWarmer::Success(absl::Seconds(2))).ok());
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0], std::make_tuple(out.http.id, true, absl::Seconds(2)));

  EXPECT_TRUE(dispatcher_.Overdue(clock_.Now() + absl::Minutes(5), absl::Minutes(10)).empty());
  EXPECT_EQ(dispatcher_.Overdue(clock_.Now() + absl::Minutes(11), absl::Minutes(10)),
            std::vector<uint64_t>{out.http.id});
  std::optional<InFlight> flight = dispatcher_.TakeInFlight(out.http.id);
  ASSERT_TRUE(flight.has_value());
  EXPECT_EQ(flight->run_id, "run-1");
  EXPECT_EQ(flight->service, "svc-a");
  EXPECT_FALSE(flight->refresh);
  EXPECT_EQ(dispatcher_.TakeInFlight(out.http.id), std::nullopt);  // Reported once.
}

TEST_F(WarmupDispatcherTest, AColdAnswerTeachesAColdStartAndSchedulesARefresh) {
  dispatcher_.Sync(*run_, {0});
  clock_.AdvanceTo(t0_ + absl::Seconds(58));
  OutgoingWarmup out;
  EXPECT_EQ(timers_.RunDue(), 1);  // The due hook: the test fires by hand.
  ASSERT_EQ(dispatcher_.Fire(*run_, 0, run_->tasks[0].generation, absl::ZeroDuration(), &out),
            WarmupDispatcher::FireResult::kFired);
  clock_.AdvanceTo(t0_ + absl::Seconds(60));
  std::optional<InFlight> flight = dispatcher_.TakeInFlight(out.http.id);
  ASSERT_TRUE(flight.has_value());
  WarmupDispatcher::Answer answer = dispatcher_.Answered(run_.get(), *flight, out.http.id, true,
                                                         absl::Seconds(2), std::nullopt, false);
  ASSERT_TRUE(answer.lesson.has_value());
  EXPECT_EQ(answer.lesson->kind, Observation::Kind::kColdStart);
  EXPECT_DOUBLE_EQ(answer.lesson->value, 2);
  EXPECT_FALSE(answer.failed);
  EXPECT_EQ(run_->tasks[0].warmup, v1::WARMUP_STATE_READY);
  EXPECT_EQ(run_->tasks[0].ready_at, t0_ + absl::Seconds(60));
  // Held for the task: warm until the keep-alive runs out.
  EXPECT_EQ(services_.HeldUntil("svc-a", "run-1#0", clock_.Now()), t0_ + absl::Seconds(160));
  // The refresh is due a tenth of the keep-alive before it runs out.
  clock_.AdvanceTo(t0_ + absl::Seconds(149));
  EXPECT_EQ(timers_.RunDue(), 0);
  clock_.AdvanceTo(t0_ + absl::Seconds(150));
  EXPECT_EQ(timers_.RunDue(), 1);
  ASSERT_EQ(refresh_due_.size(), 1u);
  OutgoingWarmup refresh;
  ASSERT_TRUE(dispatcher_.Refresh(*run_, 0, out.http.id, &refresh));
  EXPECT_EQ(run_->tasks[0].refreshes, 1);
  EXPECT_TRUE(dispatcher_.TakeInFlight(out.http.id)->refresh);
  // A refresh teaches nothing, and max_warmup_refreshes = 1 allows no second one.
  InFlight again = *flight;
  again.refresh = true;
  answer = dispatcher_.Answered(run_.get(), again, out.http.id, true, absl::Milliseconds(5),
                                std::nullopt, false);
  EXPECT_FALSE(answer.lesson.has_value());
  EXPECT_EQ(run_->tasks[0].refresh_timer, 0u);
}

TEST_F(WarmupDispatcherTest, AFailedWarmupIsCountedAndMarked) {
  dispatcher_.Sync(*run_, {0});
  clock_.AdvanceTo(t0_ + absl::Seconds(58));
  OutgoingWarmup out;
  ASSERT_EQ(dispatcher_.Fire(*run_, 0, run_->tasks[0].generation, absl::ZeroDuration(), &out),
            WarmupDispatcher::FireResult::kFired);
  std::optional<InFlight> flight = dispatcher_.TakeInFlight(out.http.id);
  WarmupDispatcher::Answer answer = dispatcher_.Answered(run_.get(), *flight, out.http.id, false,
                                                         absl::ZeroDuration(), std::nullopt, false);
  EXPECT_TRUE(answer.failed);
  EXPECT_FALSE(answer.lesson.has_value());
  EXPECT_EQ(run_->tasks[0].warmup, v1::WARMUP_STATE_FAILED);
}

TEST_F(WarmupDispatcherTest, AFreeWarmContainerIsClaimedInsteadOfFiring) {
  // Another run's warm-up left a container of svc-a free and warm until t0+157 s.
  services_.WarmupAnswered("svc-a", "other#0", t0_ + absl::Seconds(57), /*cold=*/true);
  services_.ForgetTask("svc-a", "other#0");
  dispatcher_.Sync(*run_, {0});
  clock_.AdvanceTo(t0_ + absl::Seconds(58));
  OutgoingWarmup out;
  EXPECT_EQ(dispatcher_.Fire(*run_, 0, run_->tasks[0].generation, absl::ZeroDuration(), &out),
            WarmupDispatcher::FireResult::kClaimed);
  EXPECT_EQ(run_->tasks[0].warmup, v1::WARMUP_STATE_NONE);
  EXPECT_EQ(run_->planner->plan(0).decision, WarmupDecision::kSkipAlreadyWarm);
  // The re-plan of a's descendants scheduled b's warm-up, the only one pending.
  EXPECT_EQ(dispatcher_.pending(), 1);
  EXPECT_EQ(run_->tasks[1].warmup, v1::WARMUP_STATE_PENDING);
  EXPECT_GE(services_.HeldUntil("svc-a", "run-1#0", clock_.Now()), t0_ + absl::Seconds(60));
}

TEST_F(WarmupDispatcherTest, AWarmupOfAnUnregisteredServiceIsDropped) {
  std::unique_ptr<prewarm::Run> run =
      BuildTestRun(ChainRequest("run-2", {"x"}, t0_ + absl::Seconds(60)), t0_, history_);
  dispatcher_.Sync(*run, {0});
  ASSERT_EQ(run->tasks[0].warmup, v1::WARMUP_STATE_PENDING);
  clock_.AdvanceTo(t0_ + absl::Seconds(58));
  OutgoingWarmup out;
  EXPECT_EQ(dispatcher_.Fire(*run, 0, run->tasks[0].generation, absl::ZeroDuration(), &out),
            WarmupDispatcher::FireResult::kUnregistered);
  EXPECT_EQ(run->tasks[0].warmup, v1::WARMUP_STATE_NONE);
  EXPECT_EQ(dispatcher_.pending(), 0);
}

TEST_F(WarmupDispatcherTest, CancelStopsThePendingTimer) {
  dispatcher_.Sync(*run_, {0, 1});
  dispatcher_.Cancel(run_->tasks[1]);
  EXPECT_EQ(run_->tasks[1].warmup, v1::WARMUP_STATE_CANCELLED);
  EXPECT_EQ(dispatcher_.pending(), 1);
  clock_.AdvanceTo(t0_ + absl::Seconds(100));
  EXPECT_EQ(timers_.RunDue(), 1);  // a's only.
  EXPECT_EQ(due_.size(), 1u);
}

TEST(GuardedTimersTest, NoCallbackRunsAfterClose) {
  FakeClock clock;
  TimerQueue timers(clock);
  int runs = 0;
  {
    GuardedTimers guarded(&timers);
    guarded.Schedule(clock.Now() + absl::Seconds(1), [&](absl::Duration) { ++runs; });
    guarded.Schedule(clock.Now() + absl::Seconds(2), [&](absl::Duration) { ++runs; });
    clock.AdvanceTo(clock.Now() + absl::Seconds(1));
    EXPECT_EQ(timers.RunDue(), 1);
    guarded.Close();
  }
  clock.AdvanceTo(clock.Now() + absl::Seconds(5));
  timers.RunDue();  // The queue still holds the second one; it must not touch `runs`.
  EXPECT_EQ(runs, 1);
}

}  // namespace
}  // namespace prewarm
