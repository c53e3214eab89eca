#include "tests/fakes/fake_clock.h"

#include "gtest/gtest.h"

namespace prewarm {
namespace {

TEST(FakeClockTest, MovesOnlyWhenTold) {
  const absl::Time start = absl::FromUnixSeconds(1000);
  FakeClock clock(start);
  EXPECT_EQ(clock.Now(), start);
  EXPECT_EQ(clock.MonotonicNow(), absl::ZeroDuration());
  clock.Advance(absl::Seconds(3));
  EXPECT_EQ(clock.Now(), start + absl::Seconds(3));
  EXPECT_EQ(clock.MonotonicNow(), absl::Seconds(3));
  clock.AdvanceTo(start + absl::Seconds(10));
  EXPECT_EQ(clock.MonotonicNow(), absl::Seconds(10));
  clock.AdvanceTo(start);  // Never backwards.
  EXPECT_EQ(clock.Now(), start + absl::Seconds(10));
}

TEST(RealClockTest, MonotonicTimeDoesNotGoBack) {
  Clock& clock = Clock::Real();
  absl::Duration a = clock.MonotonicNow();
  absl::Duration b = clock.MonotonicNow();
  EXPECT_LE(a, b);
  EXPECT_GT(clock.Now(), absl::FromUnixSeconds(1'600'000'000));
}

}  // namespace
}  // namespace prewarm
