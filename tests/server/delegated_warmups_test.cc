#include "server/delegated_warmups.h"

#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prewarm {
namespace {

using ::testing::ElementsAre;

v1::WatchWarmupsResponse Instruction(std::string service, std::string id) {
  v1::WatchWarmupsResponse r;
  r.set_service(std::move(service));
  r.set_warmup_id(std::move(id));
  return r;
}

// Pops everything queued for `id`, returning the warm-up ids.
std::vector<std::string> Drain(DelegatedWarmups& hub, DelegatedWarmups::SubscriberId id) {
  std::vector<std::string> out;
  v1::WatchWarmupsResponse r;
  while (hub.Pop(id, &r)) out.push_back(r.warmup_id());
  return out;
}

TEST(DelegatedWarmupsTest, NoSubscriberMeansNobodyFires) {
  DelegatedWarmups hub;
  EXPECT_EQ(hub.Publish(Instruction("a", "1")), 0);
  EXPECT_EQ(hub.subscribers(), 0u);
  v1::WatchWarmupsResponse r;
  EXPECT_FALSE(hub.Pop(1, &r));
}

TEST(DelegatedWarmupsTest, FiltersByService) {
  DelegatedWarmups hub;
  const auto all = hub.Subscribe({}, [] {});
  const auto only_a = hub.Subscribe({"a"}, [] {});
  const auto a_or_b = hub.Subscribe({"a", "b"}, [] {});
  EXPECT_EQ(hub.subscribers(), 3u);

  EXPECT_EQ(hub.Publish(Instruction("a", "1")), 3);
  EXPECT_EQ(hub.Publish(Instruction("b", "2")), 2);
  EXPECT_EQ(hub.Publish(Instruction("c", "3")), 1);

  EXPECT_THAT(Drain(hub, all), ElementsAre("1", "2", "3"));
  EXPECT_THAT(Drain(hub, only_a), ElementsAre("1"));
  EXPECT_THAT(Drain(hub, a_or_b), ElementsAre("1", "2"));
}

TEST(DelegatedWarmupsTest, PopReturnsTheWholeInstruction) {
  DelegatedWarmups hub;
  const auto id = hub.Subscribe({}, [] {});
  v1::WatchWarmupsResponse in = Instruction("svc", "7");
  in.set_run_id("run-1");
  in.set_task_id("t");
  in.set_warmup_url("http://127.0.0.1/warmup");
  hub.Publish(in);
  v1::WatchWarmupsResponse out;
  ASSERT_TRUE(hub.Pop(id, &out));
  EXPECT_EQ(out.SerializeAsString(), in.SerializeAsString());
  EXPECT_FALSE(hub.Pop(id, &out));
}

TEST(DelegatedWarmupsTest, BoundedQueueDropsTheOldest) {
  DelegatedWarmups hub(/*max_queue_per_subscriber=*/3);
  const auto id = hub.Subscribe({}, [] {});
  for (int i = 1; i <= 5; ++i) EXPECT_EQ(hub.Publish(Instruction("a", std::to_string(i))), 1);
  EXPECT_EQ(hub.dropped(), 2);
  EXPECT_THAT(Drain(hub, id), ElementsAre("3", "4", "5"));
}

TEST(DelegatedWarmupsTest, ASlowSubscriberDoesNotCostAnother) {
  DelegatedWarmups hub(2);
  const auto slow = hub.Subscribe({}, [] {});
  const auto fast = hub.Subscribe({}, [] {});
  for (int i = 1; i <= 4; ++i) {
    hub.Publish(Instruction("a", std::to_string(i)));
    EXPECT_THAT(Drain(hub, fast), ElementsAre(std::to_string(i)));
  }
  EXPECT_EQ(hub.dropped(), 2);
  EXPECT_THAT(Drain(hub, slow), ElementsAre("3", "4"));
}

TEST(DelegatedWarmupsTest, WakeOnlyWhenTheQueueBecomesNonEmpty) {
  DelegatedWarmups hub;
  int wakes = 0;
  const auto id = hub.Subscribe({}, [&] { ++wakes; });
  hub.Publish(Instruction("a", "1"));
  EXPECT_EQ(wakes, 1);
  hub.Publish(Instruction("a", "2"));
  hub.Publish(Instruction("a", "3"));
  EXPECT_EQ(wakes, 1);  // Still non-empty: the writer is already busy with it.

  v1::WatchWarmupsResponse r;
  ASSERT_TRUE(hub.Pop(id, &r));
  hub.Publish(Instruction("a", "4"));
  EXPECT_EQ(wakes, 1);  // Not empty yet.
  Drain(hub, id);
  hub.Publish(Instruction("a", "5"));
  EXPECT_EQ(wakes, 2);  // Empty -> non-empty again.
}

TEST(DelegatedWarmupsTest, WakeOnlyOnEmptyToNonEmptyWhenTheQueueIsFull) {
  // A full queue of one: every publish drops the old instruction and queues the new one, but the
  // queue was never empty, so the writer must not be woken again.
  DelegatedWarmups hub(/*max_queue_per_subscriber=*/1);
  int wakes = 0;
  const auto id = hub.Subscribe({}, [&] { ++wakes; });
  hub.Publish(Instruction("a", "1"));
  hub.Publish(Instruction("a", "2"));
  hub.Publish(Instruction("a", "3"));
  EXPECT_EQ(wakes, 1);
  EXPECT_EQ(hub.dropped(), 2);
  EXPECT_THAT(Drain(hub, id), ElementsAre("3"));
}

TEST(DelegatedWarmupsTest, WakeIsNotCalledForFilteredOutServices) {
  DelegatedWarmups hub;
  int wakes = 0;
  hub.Subscribe({"a"}, [&] { ++wakes; });
  hub.Publish(Instruction("b", "1"));
  EXPECT_EQ(wakes, 0);
}

TEST(DelegatedWarmupsTest, WakeRunsOutsideTheLock) {
  // The wake-up of a stream pops from the hub at once: it must not deadlock.
  DelegatedWarmups hub;
  std::vector<std::string> popped;
  DelegatedWarmups::SubscriberId id = 0;
  id = hub.Subscribe({}, [&] {
    v1::WatchWarmupsResponse r;
    while (hub.Pop(id, &r)) popped.push_back(r.warmup_id());
  });
  hub.Publish(Instruction("a", "1"));
  hub.Publish(Instruction("a", "2"));
  EXPECT_THAT(popped, ElementsAre("1", "2"));
}

TEST(DelegatedWarmupsTest, EndAllEndsTheCurrentSubscriptionsAfterTheirQueues) {
  DelegatedWarmups hub;
  int wakes = 0;
  const auto id = hub.Subscribe({}, [&] { ++wakes; });
  hub.Publish(Instruction("a", "1"));
  EXPECT_FALSE(hub.Ended(id));
  hub.EndAll();
  EXPECT_EQ(wakes, 2);  // Woken to notice the end even though its queue was not empty.
  EXPECT_TRUE(hub.Ended(id));
  EXPECT_THAT(Drain(hub, id), ElementsAre("1"));  // What was queued still goes out first.
  hub.EndAll();
  EXPECT_EQ(wakes, 2);  // Once.

  // A later subscription (the replica leads again) is not ended.
  const auto later = hub.Subscribe({}, nullptr);
  EXPECT_FALSE(hub.Ended(later));
  hub.Unsubscribe(later);
  EXPECT_TRUE(hub.Ended(later));  // Unknown ids read as ended.
}

TEST(DelegatedWarmupsTest, Unsubscribe) {
  DelegatedWarmups hub;
  int wakes = 0;
  const auto id = hub.Subscribe({}, [&] { ++wakes; });
  hub.Publish(Instruction("a", "1"));
  hub.Unsubscribe(id);
  EXPECT_EQ(hub.subscribers(), 0u);
  EXPECT_EQ(hub.Publish(Instruction("a", "2")), 0);
  EXPECT_EQ(wakes, 1);
  v1::WatchWarmupsResponse r;
  EXPECT_FALSE(hub.Pop(id, &r));  // Its queue went with it.
  hub.Unsubscribe(id);            // Twice is harmless.
  hub.Unsubscribe(999);
}

TEST(DelegatedWarmupsTest, SubscriberIdsAreNotReused) {
  DelegatedWarmups hub;
  const auto a = hub.Subscribe({}, [] {});
  hub.Unsubscribe(a);
  const auto b = hub.Subscribe({}, [] {});
  EXPECT_NE(a, b);
}

TEST(DelegatedWarmupsTest, AnEmptyWakeCallbackIsAllowed) {
  DelegatedWarmups hub;
  const auto id = hub.Subscribe({}, nullptr);
  EXPECT_EQ(hub.Publish(Instruction("a", "1")), 1);
  EXPECT_THAT(Drain(hub, id), ElementsAre("1"));
}

TEST(DelegatedWarmupsTest, ConcurrentPublishersLoseNothingBelowTheBound) {
  DelegatedWarmups hub(100'000);
  const auto id = hub.Subscribe({}, [] {});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&hub, t] {
      for (int i = 0; i < 1000; ++i) hub.Publish(Instruction("a", std::to_string(t * 1000 + i)));
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(Drain(hub, id).size(), 4000u);
  EXPECT_EQ(hub.dropped(), 0);
}

}  // namespace
}  // namespace prewarm
