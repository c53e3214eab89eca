#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace prewarm::testing {

// How the target answers requests for one path.
struct Route {
  int status = 200;
  // Waited before every answer (after any cold start).
  absl::Duration delay = absl::ZeroDuration();
  // Read the request, then close the connection without answering.
  bool close_without_response = false;
  // Answer 503 at once to the first n requests, as a gateway does while nothing is ready.
  int fail_first_n = 0;
  // The first request after Start(), Reset() or an idle period waits this long; requests arriving
  // meanwhile wait for the same start to finish; later ones are fast.
  absl::Duration cold_start = absl::ZeroDuration();
  // Without a request for this long, the route is cold again.
  absl::Duration idle_timeout = absl::InfiniteDuration();
  // Sent as the Location header when not empty (for 3xx).
  std::string location = {};
  // Body length; the body is that many 'x'. HEAD requests get none.
  size_t body_bytes = 0;
};

// A real HTTP/1.1 server on 127.0.0.1 with an ephemeral port, whose answers tests script per path:
// status, delay, cold start, failures, dropped connections. Every connection gets its own thread,
// so a delayed answer never holds up another; each answer closes its connection. Paths without a
// route answer 404. Requests are counted by path (the query string removed) once their head has
// been read. Thread-safe.
//
// Example:
//   auto target = FakeHttpTarget::Start();
//   target->SetRoute("/warmup", {.status = 200, .cold_start = absl::Seconds(1)});
//   Fire(target->Url("/warmup"));
//   ... EXPECT_EQ(target->requests("/warmup"), 1);
class FakeHttpTarget {
 public:
  // Binds 127.0.0.1:0 and starts serving. Aborts when no socket can be bound (a broken test host).
  static std::unique_ptr<FakeHttpTarget> Start();

  // Stops accepting, interrupts delayed answers and joins every thread.
  ~FakeHttpTarget();

  FakeHttpTarget(const FakeHttpTarget&) = delete;
  FakeHttpTarget& operator=(const FakeHttpTarget&) = delete;

  int port() const { return port_; }
  // "http://127.0.0.1:<port><path>"; `path` starts with '/'.
  std::string Url(absl::string_view path) const;

  void SetRoute(absl::string_view path, Route route) ABSL_LOCKS_EXCLUDED(mu_);
  // Forgets counts, served failures and warm state; keeps the routes.
  void Reset() ABSL_LOCKS_EXCLUDED(mu_);

  int requests(absl::string_view path) const ABSL_LOCKS_EXCLUDED(mu_);
  // Methods of the requests for `path`, in arrival order.
  std::vector<std::string> methods(absl::string_view path) const ABSL_LOCKS_EXCLUDED(mu_);
  int total_requests() const ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until `path` has seen at least `n` requests; false when `timeout` passes first.
  bool WaitForRequests(absl::string_view path, int n, absl::Duration timeout) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // A loopback port that nothing listens on (bound, then released): connecting is refused unless
  // another process grabs it in between, which the kernel makes unlikely.
  static int UnusedPort();

 private:
  struct RouteState {
    Route route;
    int failures_served = 0;
    bool started = false;  // a cold start has begun since the last Reset()
    absl::Time ready_at = absl::InfinitePast();
    absl::Time last_request = absl::InfinitePast();
  };
  struct PathStats {
    int count = 0;
    std::vector<std::string> methods;
  };

  FakeHttpTarget(int listen_fd, int port, int wake_read_fd, int wake_write_fd);

  void AcceptLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void Serve(int fd, uint64_t id) ABSL_LOCKS_EXCLUDED(mu_);
  void JoinFinished() ABSL_LOCKS_EXCLUDED(mu_);

  const int listen_fd_;
  const int port_;
  // A pipe that wakes the accept loop on shutdown.
  const int wake_read_fd_;
  const int wake_write_fd_;
  std::thread accept_thread_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, RouteState> routes_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, PathStats> stats_ ABSL_GUARDED_BY(mu_);
  int total_requests_ ABSL_GUARDED_BY(mu_) = 0;
  // Connection threads by id, and the ids of those that have finished and can be joined.
  std::map<uint64_t, std::thread> connections_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> finished_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  // Open connection sockets, shut down on destruction to interrupt blocked reads.
  std::vector<int> open_fds_ ABSL_GUARDED_BY(mu_);
};

}  // namespace prewarm::testing
