#include "server/http_warmer.h"

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "predictor/clock.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_http_target.h"

namespace prewarm {
namespace {

using ::prewarm::testing::FakeHttpTarget;
using ::prewarm::testing::Route;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Generous: only a broken warmer comes near it, however loaded the machine.
constexpr absl::Duration kPatience = absl::Seconds(30);

// Collects results in arrival order and counts callbacks per request id. Callbacks share its
// state, so a callback arriving after a failed test has returned is harmless.
class Results {
 public:
  std::function<void(const WarmupResult&)> Sink() {
    return [state = state_](const WarmupResult& result) {
      absl::MutexLock lock(&state->mu);
      state->results.push_back(result);
      ++state->calls[result.id];
      state->threads.push_back(std::this_thread::get_id());
    };
  }

  // Waits for `n` results in all; false when kPatience passes first.
  bool WaitFor(size_t n) {
    absl::MutexLock lock(&state_->mu);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
      return state_->results.size() >= n;
    };
    return state_->mu.AwaitWithTimeout(absl::Condition(&enough), kPatience);
  }

  std::vector<WarmupResult> results() {
    absl::MutexLock lock(&state_->mu);
    return state_->results;
  }
  std::map<uint64_t, int> calls() {
    absl::MutexLock lock(&state_->mu);
    return state_->calls;
  }
  std::vector<std::thread::id> threads() {
    absl::MutexLock lock(&state_->mu);
    return state_->threads;
  }

 private:
  struct State {
    absl::Mutex mu;
    std::vector<WarmupResult> results ABSL_GUARDED_BY(mu);
    std::map<uint64_t, int> calls ABSL_GUARDED_BY(mu);
    std::vector<std::thread::id> threads ABSL_GUARDED_BY(mu);
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

HttpWarmerOptions FastRetries() {
  HttpWarmerOptions options;
  options.initial_backoff = absl::Milliseconds(10);
  options.max_backoff = absl::Milliseconds(50);
  return options;
}

std::unique_ptr<HttpWarmer> MakeWarmer(HttpWarmerOptions options = FastRetries(),
                                       Clock& clock = Clock::Real()) {
  absl::StatusOr<std::unique_ptr<HttpWarmer>> warmer = HttpWarmer::Create(options, clock);
  EXPECT_TRUE(warmer.ok()) << warmer.status();
  return *std::move(warmer);
}

WarmupRequest Request(uint64_t id, std::string url, std::string method = "GET") {
  WarmupRequest request;
  request.id = id;
  request.url = std::move(url);
  request.method = std::move(method);
  return request;
}

// Fires one request and waits for its result.
WarmupResult FireAndWait(HttpWarmer& warmer, WarmupRequest request) {
  Results results;
  warmer.Fire(std::move(request), results.Sink());
  EXPECT_TRUE(results.WaitFor(1));
  return results.results().at(0);
}

TEST(HttpWarmerTest, WarmsWithGetHeadAndPost) {
  auto target = FakeHttpTarget::Start();
  target->SetRoute("/warmup", Route{.status = 200, .body_bytes = 100});
  auto warmer = MakeWarmer();
  Results results;
  uint64_t id = 1;
  for (const char* method : {"GET", "HEAD", "post", ""}) {
    warmer->Fire(Request(id, target->Url("/warmup?from=test"), method), results.Sink());
    ASSERT_TRUE(results.WaitFor(id));
    ++id;
  }
  EXPECT_THAT(target->methods("/warmup"), ElementsAre("GET", "HEAD", "POST", "GET"));
  for (const WarmupResult& result : results.results()) {
    EXPECT_TRUE(result.success) << result.error;
    EXPECT_EQ(result.http_status, 200);
    EXPECT_EQ(result.attempts, 1);
    EXPECT_EQ(result.error, "");
    EXPECT_GT(result.latency, absl::ZeroDuration());
    EXPECT_GE(result.total_time, result.latency);
  }
  // Callbacks run on the warmer's thread, never inside Fire().
  for (std::thread::id thread : results.threads()) EXPECT_NE(thread, std::this_thread::get_id());
  EXPECT_EQ(warmer->in_flight(), 0);
}

TEST(HttpWarmerTest, RetriesServiceUnavailableThenSucceeds) {
  auto target = FakeHttpTarget::Start();
  target->SetRoute("/warmup", Route{.status = 200, .fail_first_n = 1});
  auto warmer = MakeWarmer();
  WarmupResult result = FireAndWait(*warmer, Request(7, target->Url("/warmup")));
  EXPECT_EQ(result.id, 7u);
  EXPECT_TRUE(result.success);
  EXPECT_EQ(result.http_status, 200);
  EXPECT_EQ(result.attempts, 2);
  EXPECT_EQ(result.error, "");
  EXPECT_EQ(target->requests("/warmup"), 2);
}

TEST(HttpWarmerTest, GivesUpAfterMaxAttemptsOfServiceUnavailable) {
  auto target = FakeHttpTarget::Start();
  target->SetRoute("/warmup", Route{.status = 200, .fail_first_n = 100});
  auto warmer = MakeWarmer();
  WarmupResult result = FireAndWait(*warmer, Request(1, target->Url("/warmup")));
  EXPECT_FALSE(result.success);
  EXPECT_EQ(result.http_status, 503);
  EXPECT_EQ(result.attempts, 3);
  EXPECT_EQ(result.error, "HTTP 503");
  EXPECT_EQ(target->requests("/warmup"), 3);
}

TEST(HttpWarmerTest, DoesNotRetryOtherErrorStatuses) {
  auto target = FakeHttpTarget::Start();
  target->SetRoute("/broken", Route{.status = 500});
  auto warmer = MakeWarmer();
  WarmupResult missing = FireAndWait(*warmer, Request(1, target->Url("/missing")));
  EXPECT_FALSE(missing.success);
  EXPECT_EQ(missing.http_status, 404);
  EXPECT_EQ(missing.attempts, 1);
  EXPECT_EQ(missing.error, "HTTP 404");
  WarmupResult broken = FireAndWait(*warmer, Request(2, target->Url("/broken")));
  EXPECT_EQ(broken.http_status, 500);
  EXPECT_EQ(broken.attempts, 1);
  EXPECT_EQ(target->requests("/missing"), 1);
  EXPECT_EQ(target->requests("/broken"), 1);
}

TEST(HttpWarmerTest, RetriesConnectionRefusedThenFails) {
  auto warmer = MakeWarmer();
  std::string url = absl::StrCat("http://127.0.0.1:", FakeHttpTarget::UnusedPort(), "/warmup");
  WarmupResult result = FireAndWait(*warmer, Request(1, url));
  EXPECT_FALSE(result.success);
  EXPECT_EQ(result.http_status, 0);
  EXPECT_EQ(result.attempts, 3);
  EXPECT_EQ(result.error, "connection refused");
}

TEST(HttpWarmerTest, RetriesConnectionClosedWithoutResponse) {
  auto target = FakeHttpTarget::Start();
  target->SetRoute("/warmup", Route{.close_without_response = true});
  auto warmer = MakeWarmer();
  WarmupRequest request = Request(1, target->Url("/warmup"));
  request.max_attempts = 2;
  WarmupResult result = FireAndWait(*warmer, request);
  EXPECT_FALSE(result.success);
  EXPECT_EQ(result.attempts, 2);
  EXPECT_EQ(result.error, "connection closed without a response");
  EXPECT_EQ(target->requests("/warmup"), 2);
}

TEST(HttpWarmerTest, ReportsTimeoutWithoutRetrying) {
  auto target = FakeHttpTarget::Start();
  target->SetRoute("/slow", Route{.delay = absl::Seconds(20)});
  auto warmer = MakeWarmer();
  WarmupRequest request = Request(1, target->Url("/slow"));
  request.timeout = absl::Milliseconds(300);
  WarmupResult result = FireAndWait(*warmer, request);
  EXPECT_FALSE(result.success);
  EXPECT_EQ(result.http_status, 0);
  EXPECT_EQ(result.attempts, 1);
  EXPECT_EQ(result.error, "timeout after 300ms");
  // libcurl times the transfer from a point a fraction of a millisecond after its timeout starts.
  EXPECT_GT(result.latency, absl::Milliseconds(250));
  EXPECT_EQ(target->requests("/slow"), 1);
}

TEST(HttpWarmerTest, DoesNotFollowRedirects) {
  auto elsewhere = FakeHttpTarget::Start();
  elsewhere->SetRoute("/landing", Route{});
  auto target = FakeHttpTarget::Start();
  target->SetRoute("/warmup", Route{.status = 302, .location = elsewhere->Url("/landing")});
  auto warmer = MakeWarmer();
  WarmupResult result = FireAndWait(*warmer, Request(1, target->Url("/warmup")));
  // The service answered: that is what a warm-up needs.
  EXPECT_TRUE(result.success);
  EXPECT_EQ(result.http_status, 302);
  EXPECT_EQ(result.attempts, 1);
  EXPECT_EQ(elsewhere->total_requests(), 0);
}

TEST(HttpWarmerTest, StopsReadingLargeBodies) {
  auto target = FakeHttpTarget::Start();
  target->SetRoute("/big", Route{.body_bytes = 8 << 20});
  auto warmer = MakeWarmer();
  WarmupResult result = FireAndWait(*warmer, Request(1, target->Url("/big")));
  EXPECT_TRUE(result.success) << result.error;
  EXPECT_EQ(result.http_status, 200);
  EXPECT_EQ(result.attempts, 1);
}

TEST(HttpWarmerTest, RunsRequestsConcurrently) {
  auto target = FakeHttpTarget::Start();
  target->SetRoute("/warmup", Route{.delay = absl::Milliseconds(200)});
  auto warmer = MakeWarmer();
  Results results;
  constexpr int kRequests = 100;
  absl::Time start = absl::Now();
  for (int i = 0; i < kRequests; ++i) {
    warmer->Fire(Request(i, target->Url("/warmup")), results.Sink());
  }
  ASSERT_TRUE(results.WaitFor(kRequests));
  // One at a time would take 100 x 200 ms = 20 s.
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  for (const WarmupResult& result : results.results()) {
    EXPECT_TRUE(result.success) << result.id << ": " << result.error;
    EXPECT_GE(result.latency, absl::Milliseconds(200));
  }
  EXPECT_EQ(results.calls().size(), static_cast<size_t>(kRequests));
  EXPECT_EQ(target->requests("/warmup"), kRequests);
}

TEST(HttpWarmerTest, SlowAndDeadTargetsDoNotDelayHealthyOne) {
  auto slow = FakeHttpTarget::Start();
  slow->SetRoute("/warmup", Route{.delay = absl::Seconds(3)});
  auto healthy = FakeHttpTarget::Start();
  healthy->SetRoute("/warmup", Route{});
  HttpWarmerOptions options;
  options.initial_backoff = absl::Seconds(1);  // the dead target's result takes >= 2.4 s
  auto warmer = MakeWarmer(options);
  Results results;
  warmer->Fire(Request(1, slow->Url("/warmup")), results.Sink());
  warmer->Fire(
      Request(2, absl::StrCat("http://127.0.0.1:", FakeHttpTarget::UnusedPort(), "/warmup")),
      results.Sink());
  ASSERT_TRUE(slow->WaitForRequests("/warmup", 1, kPatience));
  warmer->Fire(Request(3, healthy->Url("/warmup")), results.Sink());
  ASSERT_TRUE(results.WaitFor(3));
  std::vector<WarmupResult> in_order = results.results();
  EXPECT_EQ(in_order[0].id, 3u);
  EXPECT_TRUE(in_order[0].success);
  for (const WarmupResult& result : in_order) {
    if (result.id == 1) {
      EXPECT_TRUE(result.success) << result.error;
    } else if (result.id == 2) {
      EXPECT_EQ(result.error, "connection refused");
      EXPECT_EQ(result.attempts, 3);
    }
  }
}

TEST(HttpWarmerTest, ColdStartShowsInLatency) {
  constexpr absl::Duration kColdStart = absl::Seconds(1);
  auto target = FakeHttpTarget::Start();
  target->SetRoute("/warmup", Route{.cold_start = kColdStart});
  auto warmer = MakeWarmer();
  WarmupResult cold = FireAndWait(*warmer, Request(1, target->Url("/warmup")));
  WarmupResult warm = FireAndWait(*warmer, Request(2, target->Url("/warmup")));
  EXPECT_TRUE(cold.success);
  EXPECT_TRUE(warm.success);
  // curl times the transfer on the monotonic clock; the target schedules its answer with
  // absl::Now(), which may run a few milliseconds apart under load (997 ms was seen in a CI
  // sanitizer run), so a cold answer counts from 90% of the cold start.
  EXPECT_GE(cold.latency, kColdStart * 0.9);
  EXPECT_LT(warm.latency, kColdStart / 2);
}

TEST(HttpWarmerTest, ShutdownRunsEveryPendingCallbackOnce) {
  auto target = FakeHttpTarget::Start();
  target->SetRoute("/hang", Route{.delay = absl::Seconds(60)});
  HttpWarmerOptions options;
  options.max_concurrent = 4;
  options.initial_backoff = absl::Seconds(60);
  options.max_backoff = absl::Seconds(60);
  auto warmer = MakeWarmer(options);
  Results results;
  // Two requests to a dead port fail at once and wait 60 s to retry, freeing their slots for
  // four hanging transfers; six more requests queue behind those.
  std::string dead = absl::StrCat("http://127.0.0.1:", FakeHttpTarget::UnusedPort(), "/");
  warmer->Fire(Request(100, dead), results.Sink());
  warmer->Fire(Request(101, dead), results.Sink());
  for (uint64_t id = 0; id < 10; ++id) {
    warmer->Fire(Request(id, target->Url("/hang")), results.Sink());
  }
  ASSERT_TRUE(target->WaitForRequests("/hang", 4, kPatience));
  EXPECT_EQ(warmer->in_flight(), 12);

  warmer->Shutdown();
  warmer->Shutdown();  // idempotent
  ASSERT_TRUE(results.WaitFor(12));
  EXPECT_EQ(warmer->in_flight(), 0);
  std::map<uint64_t, int> calls = results.calls();
  ASSERT_EQ(calls.size(), 12u);
  for (const auto& [id, count] : calls) EXPECT_EQ(count, 1) << id;
  for (const WarmupResult& result : results.results()) {
    EXPECT_FALSE(result.success);
    EXPECT_EQ(result.error, "shut down");
  }
  EXPECT_EQ(target->requests("/hang"), 4);

  // After shutdown the callback runs at once.
  WarmupResult late;
  warmer->Fire(Request(99, target->Url("/hang")), [&](const WarmupResult& r) { late = r; });
  EXPECT_EQ(late.id, 99u);
  EXPECT_EQ(late.error, "shut down");
}

TEST(HttpWarmerTest, ShutdownCancelsPendingRetries) {
  HttpWarmerOptions options;
  options.initial_backoff = absl::Seconds(60);
  options.max_backoff = absl::Seconds(60);
  auto warmer = MakeWarmer(options);
  Results results;
  std::string dead = absl::StrCat("http://127.0.0.1:", FakeHttpTarget::UnusedPort(), "/");
  for (uint64_t id = 0; id < 5; ++id) warmer->Fire(Request(id, dead), results.Sink());
  warmer.reset();  // the destructor shuts down
  ASSERT_TRUE(results.WaitFor(5));
  for (const auto& [id, count] : results.calls()) EXPECT_EQ(count, 1) << id;
  for (const WarmupResult& result : results.results()) EXPECT_EQ(result.error, "shut down");
}

TEST(HttpWarmerTest, BackoffFollowsTheInjectedClock) {
  auto target = FakeHttpTarget::Start();
  target->SetRoute("/warmup", Route{.fail_first_n = 1});
  FakeClock clock;
  HttpWarmerOptions options;
  options.initial_backoff = absl::Hours(1);
  options.max_backoff = absl::Hours(1);
  auto warmer = MakeWarmer(options, clock);
  Results results;
  warmer->Fire(Request(1, target->Url("/warmup")), results.Sink());
  ASSERT_TRUE(target->WaitForRequests("/warmup", 1, kPatience));
  // Real time passing does not trigger the retry; only the warmer's clock does.
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(target->requests("/warmup"), 1);
  EXPECT_EQ(warmer->in_flight(), 1);
  clock.Advance(absl::Hours(2));
  ASSERT_TRUE(results.WaitFor(1));
  WarmupResult result = results.results()[0];
  EXPECT_TRUE(result.success);
  EXPECT_EQ(result.attempts, 2);
  EXPECT_GE(result.total_time, absl::Minutes(48));  // 1 h backoff, -20% jitter
}

TEST(HttpWarmerTest, FailsAtOnceWhenTheQueueIsFull) {
  auto target = FakeHttpTarget::Start();
  target->SetRoute("/warmup", Route{.delay = absl::Seconds(2)});
  HttpWarmerOptions options;
  options.max_concurrent = 1;
  options.max_queued = 1;
  auto warmer = MakeWarmer(options);
  Results results;
  warmer->Fire(Request(1, target->Url("/warmup")), results.Sink());
  ASSERT_TRUE(target->WaitForRequests("/warmup", 1, kPatience));     // 1 transfers
  warmer->Fire(Request(2, target->Url("/warmup")), results.Sink());  // 2 waits
  warmer->Fire(Request(3, target->Url("/warmup")), results.Sink());  // 3 does not fit
  ASSERT_TRUE(results.WaitFor(3));
  std::vector<WarmupResult> in_order = results.results();
  EXPECT_EQ(in_order[0].id, 3u);
  EXPECT_EQ(in_order[0].error, "queue full");
  EXPECT_EQ(in_order[0].attempts, 0);
  EXPECT_EQ(in_order[1].id, 1u);
  EXPECT_EQ(in_order[2].id, 2u);
  EXPECT_TRUE(in_order[2].success);
}

TEST(HttpWarmerTest, InvalidRequestsFailThroughTheCallback) {
  auto warmer = MakeWarmer();
  WarmupResult put = FireAndWait(*warmer, Request(1, "http://127.0.0.1:1/", "PUT"));
  EXPECT_FALSE(put.success);
  EXPECT_THAT(put.error, HasSubstr("unsupported method 'PUT'"));
  EXPECT_EQ(put.attempts, 0);
  WarmupRequest no_attempts = Request(2, "http://127.0.0.1:1/");
  no_attempts.max_attempts = 0;
  EXPECT_THAT(FireAndWait(*warmer, no_attempts).error, HasSubstr("max_attempts"));
  // libcurl refuses other protocols even if a URL slipped past the allowlist.
  WarmupResult file = FireAndWait(*warmer, Request(3, "file:///etc/passwd"));
  EXPECT_FALSE(file.success);
  EXPECT_EQ(file.attempts, 1);
  EXPECT_THAT(file.error, HasSubstr("file"));
}

TEST(HttpWarmerTest, CallbackMayFireAgain) {
  auto target = FakeHttpTarget::Start();
  target->SetRoute("/warmup", Route{});
  auto warmer = MakeWarmer();
  Results results;
  auto sink = results.Sink();
  warmer->Fire(Request(1, target->Url("/warmup")), [&](const WarmupResult& result) {
    sink(result);
    warmer->Fire(Request(2, target->Url("/warmup")), sink);
  });
  ASSERT_TRUE(results.WaitFor(2));
  EXPECT_EQ(results.results()[1].id, 2u);
  EXPECT_TRUE(results.results()[1].success);
}

TEST(HttpWarmerTest, CreateRejectsBadOptions) {
  HttpWarmerOptions no_slots;
  no_slots.max_concurrent = 0;
  EXPECT_EQ(HttpWarmer::Create(no_slots, Clock::Real()).status().code(),
            absl::StatusCode::kInvalidArgument);
  HttpWarmerOptions shrinking;
  shrinking.backoff_multiplier = 0.5;
  EXPECT_EQ(HttpWarmer::Create(shrinking, Clock::Real()).status().code(),
            absl::StatusCode::kInvalidArgument);
  HttpWarmerOptions inverted;
  inverted.initial_backoff = absl::Seconds(10);
  inverted.max_backoff = absl::Seconds(1);
  EXPECT_EQ(HttpWarmer::Create(inverted, Clock::Real()).status().code(),
            absl::StatusCode::kInvalidArgument);
  HttpWarmerOptions header_injection;
  header_injection.user_agent = "prewarm\r\nX-Evil: 1";
  EXPECT_EQ(HttpWarmer::Create(header_injection, Clock::Real()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace prewarm
