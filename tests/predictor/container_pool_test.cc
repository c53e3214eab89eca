#include "predictor/container_pool.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace prewarm {
namespace {

const absl::Time t0 = absl::FromUnixSeconds(1'700'000'000);
constexpr absl::Duration kKeepAlive = absl::Seconds(60);

absl::Time At(double seconds) { return t0 + absl::Seconds(seconds); }

TEST(ContainerPoolTest, ACallStartsAContainerThatIdlesWarmForTheKeepAlive) {
  ContainerPool pool(1, kKeepAlive);
  std::vector<std::string> displaced;
  EXPECT_FALSE(pool.Acquire("r#0", At(0), &displaced));
  EXPECT_FALSE(pool.Acquire("r#0", At(1), &displaced));        // Repeats its first answer...
  EXPECT_EQ(pool.FreeWarmUntil(At(1)), absl::InfinitePast());  // ...and it is busy.
  pool.Release("r#0", At(10));
  EXPECT_EQ(pool.FreeWarmUntil(At(10)), At(70));
  EXPECT_TRUE(pool.Acquire("r#1", At(69), &displaced));
  pool.Release("r#1", At(75));
  // Reclaimed after the keep-alive: the next call is cold again.
  EXPECT_FALSE(pool.Acquire("r#2", At(136), &displaced));
  EXPECT_TRUE(displaced.empty());
}

TEST(ContainerPoolTest, WithConcurrencyOneABusyServiceIsNotWarmForAnotherCall) {
  ContainerPool pool(1, kKeepAlive);
  std::vector<std::string> displaced;
  pool.Acquire("a#0", At(0), &displaced);
  pool.Release("a#0", At(5));
  EXPECT_TRUE(pool.Acquire("b#0", At(6), &displaced));   // the idle container
  EXPECT_FALSE(pool.Acquire("c#0", At(7), &displaced));  // busy: a second, cold
  EXPECT_EQ(pool.containers(), 2u);
}

TEST(ContainerPoolTest, UnlimitedConcurrencySharesOneContainer) {
  ContainerPool pool(0, kKeepAlive);
  std::vector<std::string> displaced;
  EXPECT_FALSE(pool.Acquire("a#0", At(0), &displaced));
  EXPECT_TRUE(pool.Acquire("b#0", At(1), &displaced));
  EXPECT_EQ(pool.FreeWarmUntil(At(1)), At(61));  // busy, and still free for more
  pool.WarmupAnswered("c#0", At(2), /*cold=*/false);
  EXPECT_TRUE(pool.Acquire("d#0", At(3), &displaced));  // a hold takes nothing from others
  EXPECT_TRUE(displaced.empty());
  EXPECT_EQ(pool.containers(), 1u);
}

TEST(ContainerPoolTest, AWarmupHoldsItsContainerForItsTask) {
  ContainerPool pool(1, kKeepAlive);
  std::vector<std::string> displaced;
  pool.WarmupAnswered("a#1", At(0), /*cold=*/true);
  EXPECT_EQ(pool.HeldUntil("a#1", At(0)), At(60));
  EXPECT_EQ(pool.FreeWarmUntil(At(0)), absl::InfinitePast());
  EXPECT_FALSE(pool.Claim("b#1", At(1), At(2)));
  EXPECT_TRUE(pool.Acquire("a#1", At(5), &displaced));
  EXPECT_TRUE(displaced.empty());
  EXPECT_EQ(pool.HeldUntil("a#1", At(5)), absl::InfinitePast());  // used: no longer held
}

TEST(ContainerPoolTest, ACallThatTakesAHeldContainerNamesTheTaskItDisplaced) {
  ContainerPool pool(1, kKeepAlive);
  std::vector<std::string> displaced;
  pool.WarmupAnswered("a#1", At(0), /*cold=*/true);
  // The platform knows nothing of holds: an unwarmed call takes the warm container.
  EXPECT_TRUE(pool.Acquire("b#0", At(1), &displaced));
  EXPECT_EQ(displaced, std::vector<std::string>{"a#1"});
  EXPECT_EQ(pool.HeldUntil("a#1", At(1)), absl::InfinitePast());
  displaced.clear();
  EXPECT_FALSE(pool.Acquire("a#1", At(2), &displaced));  // its task comes too late: cold
  EXPECT_TRUE(displaced.empty());
}

TEST(ContainerPoolTest, AWarmWarmupHoldsAFreeContainerAndRefreshesIt) {
  ContainerPool pool(1, kKeepAlive);
  std::vector<std::string> displaced;
  pool.Acquire("a#0", At(0), &displaced);
  pool.Release("a#0", At(10));  // idle until 70
  pool.WarmupAnswered("b#0", At(50), /*cold=*/false);
  EXPECT_EQ(pool.containers(), 1u);
  EXPECT_EQ(pool.HeldUntil("b#0", At(50)), At(110));
  EXPECT_EQ(pool.FreeWarmUntil(At(50)), absl::InfinitePast());
  // A refresh of the held container extends it.
  pool.WarmupAnswered("b#0", At(100), /*cold=*/false);
  EXPECT_EQ(pool.HeldUntil("b#0", At(100)), At(160));
}

TEST(ContainerPoolTest, AWarmupThatFindsOnlyHeldContainersSharesOneAndIsDisplacedByTheFirstCall) {
  ContainerPool pool(1, kKeepAlive);
  std::vector<std::string> displaced;
  pool.WarmupAnswered("a#0", At(0), /*cold=*/true);  // a's own container
  // b's warm-up finds a's container idle: the platform sends it there and starts nothing.
  pool.WarmupAnswered("b#0", At(5), /*cold=*/false);
  EXPECT_EQ(pool.containers(), 1u);
  EXPECT_EQ(pool.HeldUntil("b#0", At(5)), At(65));
  // a calls and takes its container: b holds nothing now, and must be warmed again.
  EXPECT_TRUE(pool.Acquire("a#0", At(10), &displaced));
  EXPECT_EQ(displaced, std::vector<std::string>{"b#0"});
  EXPECT_EQ(pool.HeldUntil("b#0", At(10)), absl::InfinitePast());
  // Whoever of the two calls first takes it.
  pool.Release("a#0", At(20));
  pool.WarmupAnswered("c#0", At(21), /*cold=*/false);  // free: c holds it alone
  pool.WarmupAnswered("d#0", At(22), /*cold=*/false);  // shares c's
  displaced.clear();
  EXPECT_TRUE(pool.Acquire("d#0", At(23), &displaced));
  EXPECT_EQ(displaced, std::vector<std::string>{"c#0"});
}

TEST(ContainerPoolTest, ClaimNeedsAFreeContainerWarmUntilTheStart) {
  ContainerPool pool(1, kKeepAlive);
  std::vector<std::string> displaced;
  pool.Acquire("a#0", At(0), &displaced);
  pool.Release("a#0", At(10));  // idle until 70
  EXPECT_FALSE(pool.Claim("b#0", At(20), At(71)));
  EXPECT_TRUE(pool.Claim("b#0", At(20), At(69)));
  EXPECT_TRUE(pool.Claim("b#0", At(21), At(69)));  // already holds it
  EXPECT_FALSE(pool.Claim("c#0", At(21), At(30)));
  pool.Forget("b#0");
  EXPECT_TRUE(pool.Claim("c#0", At(22), At(30)));
}

TEST(ContainerPoolTest, ForgettingACallInProgressWarmsNothing) {
  ContainerPool pool(1, kKeepAlive);
  std::vector<std::string> displaced;
  pool.Acquire("a#0", At(0), &displaced);
  pool.Forget("a#0");  // e.g. its run expired without a FINISHED
  EXPECT_EQ(pool.FreeWarmUntil(At(1)), absl::InfinitePast());
  pool.Release("a#0", At(2));  // unknown by now: no effect
  EXPECT_EQ(pool.FreeWarmUntil(At(2)), absl::InfinitePast());
}

TEST(ContainerPoolTest, IsBounded) {
  ContainerPool pool(1, absl::Hours(24));
  std::vector<std::string> displaced;
  for (int i = 0; i < ContainerPool::kMaxContainers + 100; ++i) {
    const std::string task = "r#" + std::to_string(i);
    pool.Acquire(task, At(i), &displaced);
    pool.Release(task, At(i));
    pool.WarmupAnswered("w#" + std::to_string(i), At(i), /*cold=*/true);
    pool.Forget("w#" + std::to_string(i));
  }
  EXPECT_LE(pool.containers(), static_cast<size_t>(ContainerPool::kMaxContainers));
}

}  // namespace
}  // namespace prewarm
