#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/http_warmer.h"

namespace prewarm::testing {

// An HttpWarmer that sends nothing: Fire() records the request and the test ends each warm-up by
// hand, when and how it chooses, as Envoy's tests advance simulated time instead of waiting for a
// real one. Keeps the real warmer's contract where a caller can see it: `done` runs exactly once
// and never inside Fire() (except after Shutdown(), which fails later requests at once on the
// calling thread), in_flight() counts warm-ups whose `done` has not run, and Shutdown() fails
// every pending one with "shut down". Requests are not validated, queues never fill and results
// are exactly what the test gives (FakeHttpTarget with the real warmer covers HTTP itself).
//
// `done` runs on the thread that ends the warm-up (Complete*, Shutdown), with no lock held, so it
// may call Fire() again. Thread-safe.
//
// Example:
//   FakeHttpWarmer warmer;
//   ... the code under test calls warmer.Fire({.id = 7, .url = "http://fn/warm"}, done) ...
//   ASSERT_EQ(warmer.pending_ids(), std::vector<uint64_t>{7});
//   ASSERT_TRUE(warmer.Complete(7, FakeHttpWarmer::Success(absl::Seconds(2))).ok());  // runs done
class FakeHttpWarmer final : public HttpWarmer {
 public:
  // HTTP 200 after one attempt of `latency`; total_time is the latency too.
  static WarmupResult Success(absl::Duration latency = absl::Milliseconds(5));
  // A failure after `attempts`, worded as the real warmer words it: "connection refused",
  // "timeout after 2s", "HTTP 503" (with `http_status` 503).
  static WarmupResult Failure(std::string error, int http_status = 0, int attempts = 1);

  FakeHttpWarmer() = default;
  // Shutdown(): pending warm-ups get their "shut down" callbacks, so whatever those touch must
  // outlive the warmer (declare it first), as with the real warmer.
  ~FakeHttpWarmer() override;

  FakeHttpWarmer(const FakeHttpWarmer&) = delete;
  FakeHttpWarmer& operator=(const FakeHttpWarmer&) = delete;

  void Fire(WarmupRequest request, std::function<void(const WarmupResult&)> done) override
      ABSL_LOCKS_EXCLUDED(mu_);
  int in_flight() const override ABSL_LOCKS_EXCLUDED(mu_);
  // Fails every pending warm-up with "shut down", oldest first. Idempotent.
  void Shutdown() override ABSL_LOCKS_EXCLUDED(mu_);

  // Ends the oldest pending warm-up with `id`: runs its `done` with `result`, whose id is set to
  // `id`. NOT_FOUND when no warm-up with `id` is pending (never fired, already ended, or ended by
  // Shutdown()).
  absl::Status Complete(uint64_t id, WarmupResult result) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the oldest pending warm-up as Complete() does and returns its id; NOT_FOUND when none is
  // pending.
  absl::StatusOr<uint64_t> CompleteNext(WarmupResult result) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends every warm-up pending at the call, oldest first, each with `result` (its id set). Those
  // that the callbacks fire stay pending, so a chain of refreshes advances one step per call.
  // Returns how many ended.
  int CompleteAll(const WarmupResult& result) ABSL_LOCKS_EXCLUDED(mu_);

  // Requests fired and not yet ended, oldest first.
  std::vector<WarmupRequest> pending() const ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<uint64_t> pending_ids() const ABSL_LOCKS_EXCLUDED(mu_);
  // Every request given to Fire(), in order, including those fired after Shutdown().
  std::vector<WarmupRequest> fired() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Pending {
    WarmupRequest request;
    std::function<void(const WarmupResult&)> done;
  };

  // Removes and returns the oldest pending warm-up `matches` accepts.
  std::optional<Pending> Take(const std::function<bool(const Pending&)>& matches)
      ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  std::deque<Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<WarmupRequest> fired_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace prewarm::testing
