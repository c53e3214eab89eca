#include "server/timer_queue.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "predictor/clock.h"
#include "tests/fakes/fake_clock.h"

namespace prewarm {
namespace {

using ::testing::ElementsAre;

// Generous: only a broken timer thread comes near it, however loaded the machine.
constexpr absl::Duration kPatience = absl::Seconds(30);

class TimerQueueTest : public ::testing::Test {
 protected:
  // A callback that appends `name` to fired_ (RunDue runs callbacks on the calling thread).
  TimerQueue::Callback Record(std::string name) {
    return [this, name](absl::Duration lateness) {
      fired_.push_back(name);
      lateness_.push_back(lateness);
    };
  }

  FakeClock clock_;
  TimerQueue timers_{clock_};
  std::vector<std::string> fired_;
  std::vector<absl::Duration> lateness_;
};

TEST_F(TimerQueueTest, EmptyQueue) {
  EXPECT_EQ(timers_.pending(), 0u);
  EXPECT_EQ(timers_.NextDeadline(), absl::InfiniteFuture());
  EXPECT_EQ(timers_.RunDue(), 0);
}

TEST_F(TimerQueueTest, FiresInDeadlineOrderNotScheduleOrder) {
  const absl::Time t0 = clock_.Now();
  timers_.Schedule(t0 + absl::Seconds(3), Record("c"));
  timers_.Schedule(t0 + absl::Seconds(1), Record("a"));
  timers_.Schedule(t0 + absl::Seconds(2), Record("b"));
  EXPECT_EQ(timers_.pending(), 3u);
  EXPECT_EQ(timers_.NextDeadline(), t0 + absl::Seconds(1));

  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(timers_.RunDue(), 3);
  EXPECT_THAT(fired_, ElementsAre("a", "b", "c"));
  EXPECT_EQ(timers_.pending(), 0u);
}

TEST_F(TimerQueueTest, EqualDeadlinesFireInScheduleOrder) {
  const absl::Time t = clock_.Now() + absl::Seconds(1);
  timers_.Schedule(t, Record("first"));
  timers_.Schedule(t, Record("second"));
  timers_.Schedule(t, Record("third"));
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(timers_.RunDue(), 3);
  EXPECT_THAT(fired_, ElementsAre("first", "second", "third"));
}

TEST_F(TimerQueueTest, RunDueRunsOnlyWhatIsDue) {
  const absl::Time t0 = clock_.Now();
  timers_.Schedule(t0 + absl::Seconds(1), Record("a"));
  timers_.Schedule(t0 + absl::Seconds(5), Record("b"));

  EXPECT_EQ(timers_.RunDue(), 0);  // Nothing is due yet.
  clock_.Advance(absl::Milliseconds(999));
  EXPECT_EQ(timers_.RunDue(), 0);
  clock_.Advance(absl::Milliseconds(1));  // Exactly at the deadline: due.
  EXPECT_EQ(timers_.RunDue(), 1);
  EXPECT_THAT(fired_, ElementsAre("a"));
  EXPECT_EQ(timers_.NextDeadline(), t0 + absl::Seconds(5));

  clock_.Advance(absl::Seconds(3));
  EXPECT_EQ(timers_.RunDue(), 0);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(timers_.RunDue(), 1);
  EXPECT_THAT(fired_, ElementsAre("a", "b"));
  EXPECT_EQ(timers_.RunDue(), 0);  // A timer runs once.
}

TEST_F(TimerQueueTest, PastDeadlineIsDueAtOnce) {
  timers_.Schedule(clock_.Now() - absl::Seconds(2), Record("late"));
  EXPECT_EQ(timers_.RunDue(), 1);
  ASSERT_THAT(fired_, ElementsAre("late"));
  EXPECT_EQ(lateness_[0], absl::Seconds(2));
}

TEST_F(TimerQueueTest, LatenessIsFiringTimeMinusDeadline) {
  const absl::Time t0 = clock_.Now();
  timers_.Schedule(t0 + absl::Seconds(1), Record("a"));
  timers_.Schedule(t0 + absl::Seconds(4), Record("b"));
  timers_.Schedule(t0 + absl::Seconds(5), Record("c"));
  clock_.AdvanceTo(t0 + absl::Seconds(5));
  EXPECT_EQ(timers_.RunDue(), 3);
  EXPECT_THAT(lateness_, ElementsAre(absl::Seconds(4), absl::Seconds(1), absl::ZeroDuration()));
}

TEST_F(TimerQueueTest, CancelPreventsFiring) {
  const absl::Time t0 = clock_.Now();
  const TimerQueue::TimerId a = timers_.Schedule(t0 + absl::Seconds(1), Record("a"));
  timers_.Schedule(t0 + absl::Seconds(2), Record("b"));
  EXPECT_TRUE(timers_.Cancel(a));
  EXPECT_EQ(timers_.pending(), 1u);
  EXPECT_EQ(timers_.NextDeadline(), t0 + absl::Seconds(2));
  EXPECT_FALSE(timers_.Cancel(a));  // No longer pending.

  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(timers_.RunDue(), 1);
  EXPECT_THAT(fired_, ElementsAre("b"));
}

TEST_F(TimerQueueTest, CancelOfFiredOrUnknownTimerReturnsFalse) {
  const TimerQueue::TimerId a = timers_.Schedule(clock_.Now(), Record("a"));
  EXPECT_EQ(timers_.RunDue(), 1);
  EXPECT_FALSE(timers_.Cancel(a));
  EXPECT_FALSE(timers_.Cancel(0));
  EXPECT_FALSE(timers_.Cancel(123456));
}

TEST_F(TimerQueueTest, IdsAreUnique) {
  const absl::Time t = clock_.Now() + absl::Seconds(1);
  const TimerQueue::TimerId a = timers_.Schedule(t, Record("a"));
  const TimerQueue::TimerId b = timers_.Schedule(t, Record("b"));
  EXPECT_NE(a, b);
  EXPECT_NE(a, 0u);
  EXPECT_NE(b, 0u);
}

TEST_F(TimerQueueTest, RescheduleByCancelAndScheduleMovesTheTimer) {
  const absl::Time t0 = clock_.Now();
  TimerQueue::TimerId id = timers_.Schedule(t0 + absl::Seconds(10), Record("moved"));
  timers_.Schedule(t0 + absl::Seconds(5), Record("other"));

  // Earlier.
  ASSERT_TRUE(timers_.Cancel(id));
  id = timers_.Schedule(t0 + absl::Seconds(2), Record("moved"));
  EXPECT_EQ(timers_.NextDeadline(), t0 + absl::Seconds(2));
  clock_.AdvanceTo(t0 + absl::Seconds(2));
  EXPECT_EQ(timers_.RunDue(), 1);
  EXPECT_THAT(fired_, ElementsAre("moved"));

  // Later.
  id = timers_.Schedule(t0 + absl::Seconds(3), Record("again"));
  ASSERT_TRUE(timers_.Cancel(id));
  timers_.Schedule(t0 + absl::Seconds(8), Record("again"));
  clock_.AdvanceTo(t0 + absl::Seconds(7));
  EXPECT_EQ(timers_.RunDue(), 1);
  EXPECT_THAT(fired_, ElementsAre("moved", "other"));
  clock_.AdvanceTo(t0 + absl::Seconds(8));
  EXPECT_EQ(timers_.RunDue(), 1);
  EXPECT_THAT(fired_, ElementsAre("moved", "other", "again"));
}

TEST_F(TimerQueueTest, CallbackMayScheduleAndCancel) {
  const absl::Time t0 = clock_.Now();
  TimerQueue::TimerId victim = timers_.Schedule(t0 + absl::Seconds(3), Record("victim"));
  timers_.Schedule(t0 + absl::Seconds(1), [&](absl::Duration) {
    fired_.push_back("parent");
    EXPECT_TRUE(timers_.Cancel(victim));
    timers_.Schedule(t0 + absl::Seconds(2), Record("child"));
  });
  clock_.AdvanceTo(t0 + absl::Seconds(1));
  EXPECT_EQ(timers_.RunDue(), 1);  // The child is not due yet.
  clock_.AdvanceTo(t0 + absl::Seconds(10));
  EXPECT_EQ(timers_.RunDue(), 1);
  EXPECT_THAT(fired_, ElementsAre("parent", "child"));
}

TEST_F(TimerQueueTest, CallbackSchedulingADueTimerDoesNotLoopForever) {
  // A timer that re-arms itself at a deadline already due runs once per RunDue call.
  int runs = 0;
  std::function<void(absl::Duration)> rearm = [&](absl::Duration) {
    ++runs;
    timers_.Schedule(clock_.Now() - absl::Seconds(1), rearm);
  };
  timers_.Schedule(clock_.Now(), rearm);
  EXPECT_EQ(timers_.RunDue(), 1);
  EXPECT_EQ(timers_.RunDue(), 1);
  EXPECT_EQ(runs, 2);
}

TEST_F(TimerQueueTest, DestructionDropsPendingTimers) {
  bool ran = false;
  {
    TimerQueue local(clock_);
    local.Schedule(clock_.Now() + absl::Seconds(1), [&](absl::Duration) { ran = true; });
  }
  EXPECT_FALSE(ran);
}

TEST_F(TimerQueueTest, ManyTimersFireInOrder) {
  // Deadlines in a scrambled order; every one fires once, in deadline order.
  const absl::Time t0 = clock_.Now();
  std::vector<int> order;
  constexpr int kTimers = 1000;
  for (int i = 0; i < kTimers; ++i) {
    const int ms = (i * 7919) % kTimers;  // 7919 is prime: a permutation of 0..999.
    timers_.Schedule(t0 + absl::Milliseconds(ms),
                     [&order, ms](absl::Duration) { order.push_back(ms); });
  }
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(timers_.RunDue(), kTimers);
  ASSERT_EQ(order.size(), static_cast<size_t>(kTimers));
  for (int i = 0; i < kTimers; ++i) EXPECT_EQ(order[i], i);
}

// The real thread on the real clock. No timing assertion: only that timers fire at all and in
// the right order, within a deadline only a broken queue comes near.
TEST(TimerQueueThreadTest, FiresANearFutureTimer) {
  TimerQueue timers(Clock::Real());
  timers.Start();
  absl::Notification fired;
  absl::Duration lateness = -absl::Seconds(1);
  const absl::Time deadline = Clock::Real().Now() + absl::Milliseconds(20);
  timers.Schedule(deadline, [&](absl::Duration l) {
    lateness = l;
    fired.Notify();
  });
  ASSERT_TRUE(fired.WaitForNotificationWithTimeout(kPatience));
  EXPECT_GE(lateness, absl::ZeroDuration());
  EXPECT_GE(Clock::Real().Now(), deadline);
  timers.Stop();
}

TEST(TimerQueueThreadTest, AnEarlierTimerScheduledLaterWakesTheThread) {
  TimerQueue timers(Clock::Real());
  timers.Start();
  absl::Notification far_fired;
  absl::Notification near_fired;
  // The thread goes to sleep until this one, an hour away...
  timers.Schedule(Clock::Real().Now() + absl::Hours(1),
                  [&](absl::Duration) { far_fired.Notify(); });
  // ...and must wake for this one, scheduled after it went to sleep.
  absl::SleepFor(absl::Milliseconds(20));  // Let the thread reach its wait (not a timing test).
  timers.Schedule(Clock::Real().Now() + absl::Milliseconds(10),
                  [&](absl::Duration) { near_fired.Notify(); });
  ASSERT_TRUE(near_fired.WaitForNotificationWithTimeout(kPatience));
  EXPECT_FALSE(far_fired.HasBeenNotified());
  EXPECT_EQ(timers.pending(), 1u);
  timers.Stop();
}

TEST(TimerQueueThreadTest, PastDeadlineFiresAtOnceAndCancelledTimerNever) {
  TimerQueue timers(Clock::Real());
  timers.Start();
  absl::Notification fired;
  bool cancelled_ran = false;
  const TimerQueue::TimerId cancelled = timers.Schedule(
      Clock::Real().Now() + absl::Milliseconds(30), [&](absl::Duration) { cancelled_ran = true; });
  ASSERT_TRUE(timers.Cancel(cancelled));
  timers.Schedule(Clock::Real().Now() + absl::Milliseconds(60),
                  [&](absl::Duration) { fired.Notify(); });
  ASSERT_TRUE(fired.WaitForNotificationWithTimeout(kPatience));
  timers.Stop();
  EXPECT_FALSE(cancelled_ran);
}

TEST(TimerQueueThreadTest, StartAndStopAreIdempotent) {
  TimerQueue timers(Clock::Real());
  timers.Start();
  timers.Start();
  timers.Stop();
  timers.Stop();
  // Stopped: a due timer waits for RunDue.
  int runs = 0;
  timers.Schedule(Clock::Real().Now() - absl::Seconds(1), [&](absl::Duration) { ++runs; });
  EXPECT_EQ(timers.RunDue(), 1);
  EXPECT_EQ(runs, 1);
}

TEST(TimerQueueThreadTest, StopWithoutStart) {
  TimerQueue timers(Clock::Real());
  timers.Stop();
  EXPECT_EQ(timers.pending(), 0u);
}

}  // namespace
}  // namespace prewarm
