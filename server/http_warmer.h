#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "predictor/clock.h"

namespace prewarm {

struct HttpWarmerOptions {
  // Transfers running at once; more requests wait in a FIFO queue.
  int max_concurrent = 1024;
  // Requests waiting for a transfer slot; beyond this, Fire() fails the request with "queue full"
  // so that a burst cannot grow memory without bound.
  int max_queued = 100000;
  // Wait before the second attempt; each later wait is `backoff_multiplier` times longer, capped
  // at `max_backoff`, and every wait is jittered by +-20% so that retries to one service spread.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  double backoff_multiplier = 2;
  absl::Duration max_backoff = absl::Seconds(5);
  std::string user_agent = "prewarm/0.1";
  // Seeds the jitter, for reproducible schedules.
  uint64_t jitter_seed = 0x5eed;
};

struct WarmupRequest {
  // The caller's handle, echoed in the result.
  uint64_t id = 0;
  // REQUIRES: accepted by the outbound allowlist (UrlAllowlist::Check).
  std::string url;
  // GET, HEAD or POST (with an empty body), in any case; empty means GET.
  std::string method = "GET";
  // Per attempt, for the whole transfer.
  absl::Duration timeout = absl::Seconds(30);
  // Attempts in total, >= 1.
  int max_attempts = 3;
};

struct WarmupResult {
  uint64_t id = 0;
  // Some attempt got an HTTP response with status < 400: the service answered (a 3xx counts,
  // since redirects are never followed).
  bool success = false;
  // Of the last attempt; 0 when it got no response.
  int http_status = 0;
  int attempts = 0;
  // Of the last attempt, from its start to the complete response (or the failure): the
  // cold-start observation when it exceeds the service's warm latency.
  absl::Duration latency = absl::ZeroDuration();
  // From Fire() to the result, including queueing and backoff.
  absl::Duration total_time = absl::ZeroDuration();
  // Empty on success; else what went wrong in the last attempt, e.g. "connection refused",
  // "timeout after 2s", "HTTP 503", "queue full", "shut down".
  std::string error;
};

// Sends warm-up requests: many concurrent transfers on one thread (libcurl's multi interface),
// a timeout per attempt, limited retries with backoff. A slow or dead target never delays
// others. Redirects are never followed, proxies from the environment are ignored, only http and
// https are spoken, and response bodies are discarded (a transfer stops after 64 KiB of body).
//
// Retried: connection failures (refused, reset, closed without a response, DNS failure) and HTTP
// 502, 503 and 504. Not retried: other statuses, and a timeout, since a cold start may just be
// slow and a second request would only queue behind the first.
//
// Thread-safe: any thread may call Fire(); results are delivered on the warmer's own thread.
class HttpWarmer {
 public:
  virtual ~HttpWarmer() = default;

  // Starts the warmer's thread. INVALID_ARGUMENT for bad options; INTERNAL when libcurl cannot
  // be initialised. `clock` times backoff and `total_time`; it must outlive the warmer.
  static absl::StatusOr<std::unique_ptr<HttpWarmer>> Create(HttpWarmerOptions options,
                                                            Clock& clock);

  // Queues the request and returns at once; never blocks on I/O. `done` runs exactly once, on
  // the warmer's thread: keep it short, since it holds up every other transfer. It may call
  // Fire() but not Shutdown(). An invalid request (bad method, max_attempts < 1) or a full queue
  // fails through `done` like any other failure. After Shutdown(), `done` runs at once on the
  // calling thread with error "shut down".
  virtual void Fire(WarmupRequest request, std::function<void(const WarmupResult&)> done) = 0;

  // Requests fired whose `done` has not run yet: queued, transferring or waiting to retry.
  virtual int in_flight() const = 0;

  // Cancels everything pending, runs its callbacks with error "shut down", and joins the thread.
  // Idempotent; the destructor calls it. REQUIRES: not called from a `done` callback.
  virtual void Shutdown() = 0;
};

}  // namespace prewarm
