#include "tests/fakes/fake_http_warmer.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prewarm::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Collects the results `done` receives, with the thread each ran on.
struct Results {
  std::vector<WarmupResult> results;
  std::vector<std::thread::id> threads;

  std::function<void(const WarmupResult&)> Done() {
    return [this](const WarmupResult& r) {
      results.push_back(r);
      threads.push_back(std::this_thread::get_id());
    };
  }
};

WarmupRequest Request(uint64_t id) {
  return WarmupRequest{.id = id, .url = "http://fn.ns.svc.cluster.local/warm"};
}

TEST(FakeHttpWarmerTest, FireOnlyQueuesUntilTheTestCompletes) {
  Results seen;  // before the warmer, whose destructor may still call back
  FakeHttpWarmer warmer;
  warmer.Fire(Request(1), seen.Done());
  warmer.Fire(Request(2), seen.Done());
  EXPECT_THAT(seen.results, IsEmpty());
  EXPECT_EQ(warmer.in_flight(), 2);
  EXPECT_THAT(warmer.pending_ids(), ElementsAre(1, 2));

  ASSERT_TRUE(warmer.Complete(2, FakeHttpWarmer::Success(absl::Seconds(3))).ok());
  ASSERT_EQ(seen.results.size(), 1u);
  EXPECT_EQ(seen.results[0].id, 2u);
  EXPECT_TRUE(seen.results[0].success);
  EXPECT_EQ(seen.results[0].http_status, 200);
  EXPECT_EQ(seen.results[0].attempts, 1);
  EXPECT_EQ(seen.results[0].latency, absl::Seconds(3));
  EXPECT_EQ(seen.threads[0], std::this_thread::get_id());
  EXPECT_EQ(warmer.in_flight(), 1);
  EXPECT_THAT(warmer.pending_ids(), ElementsAre(1));

  ASSERT_TRUE(warmer.Complete(1, FakeHttpWarmer::Failure("HTTP 503", 503, 3)).ok());
  ASSERT_EQ(seen.results.size(), 2u);
  EXPECT_EQ(seen.results[1].id, 1u);
  EXPECT_FALSE(seen.results[1].success);
  EXPECT_EQ(seen.results[1].http_status, 503);
  EXPECT_EQ(seen.results[1].attempts, 3);
  EXPECT_EQ(seen.results[1].error, "HTTP 503");
  EXPECT_EQ(warmer.in_flight(), 0);
}

TEST(FakeHttpWarmerTest, CompletingWhatIsNotPendingIsNotFound) {
  Results seen;
  FakeHttpWarmer warmer;
  EXPECT_EQ(warmer.Complete(9, FakeHttpWarmer::Success()).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(warmer.CompleteNext(FakeHttpWarmer::Success()).status().code(),
            absl::StatusCode::kNotFound);
  warmer.Fire(Request(9), seen.Done());
  ASSERT_TRUE(warmer.Complete(9, FakeHttpWarmer::Success()).ok());
  // `done` runs exactly once.
  EXPECT_EQ(warmer.Complete(9, FakeHttpWarmer::Success()).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(seen.results.size(), 1u);
}

TEST(FakeHttpWarmerTest, TheResultTakesThePendingId) {
  Results seen;
  FakeHttpWarmer warmer;
  warmer.Fire(Request(5), seen.Done());
  warmer.Fire(Request(6), seen.Done());
  WarmupResult wrong_id = FakeHttpWarmer::Success();
  wrong_id.id = 77;
  ASSERT_TRUE(warmer.Complete(6, wrong_id).ok());
  absl::StatusOr<uint64_t> next = warmer.CompleteNext(wrong_id);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, 5u);
  ASSERT_EQ(seen.results.size(), 2u);
  EXPECT_EQ(seen.results[0].id, 6u);
  EXPECT_EQ(seen.results[1].id, 5u);
}

TEST(FakeHttpWarmerTest, RepeatedIdsCompleteOldestFirst) {
  Results first;
  Results second;
  FakeHttpWarmer warmer;
  warmer.Fire(Request(4), first.Done());
  warmer.Fire(Request(4), second.Done());
  ASSERT_TRUE(warmer.Complete(4, FakeHttpWarmer::Success()).ok());
  EXPECT_EQ(first.results.size(), 1u);
  EXPECT_THAT(second.results, IsEmpty());
  ASSERT_TRUE(warmer.Complete(4, FakeHttpWarmer::Success()).ok());
  EXPECT_EQ(second.results.size(), 1u);
}

TEST(FakeHttpWarmerTest, CompleteAllLeavesWhatTheCallbacksFire) {
  std::vector<uint64_t> ended;
  FakeHttpWarmer warmer;
  // Each warm-up fires the next, as the registry's refreshes do.
  std::function<void(const WarmupResult&)> refresh = [&](const WarmupResult& r) {
    ended.push_back(r.id);
    if (r.id < 3) warmer.Fire(Request(r.id + 1), refresh);
  };
  warmer.Fire(Request(1), refresh);
  warmer.Fire(Request(10), [&](const WarmupResult& r) { ended.push_back(r.id); });

  EXPECT_EQ(warmer.CompleteAll(FakeHttpWarmer::Success()), 2);
  EXPECT_THAT(ended, ElementsAre(1, 10));
  EXPECT_THAT(warmer.pending_ids(), ElementsAre(2));
  EXPECT_EQ(warmer.CompleteAll(FakeHttpWarmer::Success()), 1);
  EXPECT_EQ(warmer.CompleteAll(FakeHttpWarmer::Success()), 1);
  EXPECT_EQ(warmer.CompleteAll(FakeHttpWarmer::Success()), 0);
  EXPECT_THAT(ended, ElementsAre(1, 10, 2, 3));
}

TEST(FakeHttpWarmerTest, RecordsTheRequestsAsFired) {
  Results seen;
  FakeHttpWarmer warmer;
  warmer.Fire(WarmupRequest{.id = 1, .url = "http://a/", .method = "HEAD", .max_attempts = 2},
              seen.Done());
  warmer.Fire(Request(2), seen.Done());
  ASSERT_TRUE(warmer.Complete(1, FakeHttpWarmer::Success()).ok());

  std::vector<WarmupRequest> pending = warmer.pending();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].url, "http://fn.ns.svc.cluster.local/warm");
  std::vector<WarmupRequest> fired = warmer.fired();
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(fired[0].url, "http://a/");
  EXPECT_EQ(fired[0].method, "HEAD");
  EXPECT_EQ(fired[0].max_attempts, 2);
  EXPECT_EQ(fired[1].id, 2u);
}

TEST(FakeHttpWarmerTest, ShutdownFailsPendingAndLaterWarmupsAtOnce) {
  Results seen;
  FakeHttpWarmer warmer;
  warmer.Fire(Request(1), seen.Done());
  warmer.Fire(Request(2), seen.Done());
  warmer.Shutdown();
  ASSERT_EQ(seen.results.size(), 2u);
  for (const WarmupResult& r : seen.results) {
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.error, "shut down");
  }
  EXPECT_EQ(seen.results[0].id, 1u);
  EXPECT_EQ(seen.results[1].id, 2u);
  EXPECT_EQ(warmer.in_flight(), 0);

  // As the real warmer: after Shutdown(), `done` runs at once on the calling thread.
  warmer.Fire(Request(3), seen.Done());
  ASSERT_EQ(seen.results.size(), 3u);
  EXPECT_EQ(seen.results[2].id, 3u);
  EXPECT_EQ(seen.results[2].error, "shut down");
  EXPECT_EQ(warmer.in_flight(), 0);
  EXPECT_EQ(warmer.Complete(3, FakeHttpWarmer::Success()).code(), absl::StatusCode::kNotFound);

  warmer.Shutdown();  // idempotent
  EXPECT_EQ(seen.results.size(), 3u);
  EXPECT_EQ(warmer.fired().size(), 3u);
}

TEST(FakeHttpWarmerTest, DestructionFailsWhatIsStillPending) {
  Results seen;
  {
    FakeHttpWarmer warmer;
    warmer.Fire(Request(1), seen.Done());
  }
  ASSERT_EQ(seen.results.size(), 1u);
  EXPECT_EQ(seen.results[0].error, "shut down");
}

TEST(FakeHttpWarmerTest, FiresFromManyThreads) {
  constexpr int kThreads = 4;
  constexpr int kEach = 50;
  std::atomic<int> done{0};
  FakeHttpWarmer warmer;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        warmer.Fire(Request(t * kEach + i), [&](const WarmupResult&) { done.fetch_add(1); });
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(warmer.in_flight(), kThreads * kEach);
  EXPECT_EQ(warmer.CompleteAll(FakeHttpWarmer::Success()), kThreads * kEach);
  EXPECT_EQ(done.load(), kThreads * kEach);
}

}  // namespace
}  // namespace prewarm::testing
