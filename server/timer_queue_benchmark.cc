// Firing lateness of the warm-up scheduler on the real clock and its real thread: 10,000 pending
// timers with deadlines spread uniformly over 2 s (scheduled in random order, all before the
// first one is due), each callback recording (its own wall-clock time - its deadline). Lateness
// is what a warm-up loses to the scheduler; DESIGN.md asks for "a few ms even with thousands
// pending". Target: p99 < 2 ms. Prints p50 / p99 / max per round and over all rounds.
//
//   ninja -C build timer_queue_benchmark
//   build/server/timer_queue_benchmark [rounds=5] [timers=10000]
//
// Measured 2026-11-26 on the 2-core development VM (Debian 12, RelWithDebInfo), shared with other
// builds: load average 0.6-0.9 (nearly idle), 5 rounds of 10,000 timers each, over four runs:
//
//   all 50,000 timers: lateness p50 0.08-0.10 ms, p99 0.92-1.35 ms (once 2.4 ms), max 4-9 ms
//   baseline (one thread doing sleep_until per deadline): p50 0.08-0.09 ms, p99 0.5-2.9 ms
//
// The queue adds nothing measurable to what the kernel gives a sleeping thread: its tail follows
// the baseline's, run to run. With two compilers busy on both cores (load 4-8) both grow to p99
// 3-6 ms, max ~10 ms: that is CPU contention, not the queue (p50 stays at 0.09 ms).

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "predictor/clock.h"
#include "server/timer_queue.h"

namespace prewarm {
namespace {

struct Figures {
  double p50_ms, p99_ms, max_ms;
};

Figures Summarize(std::vector<absl::Duration> lateness) {
  std::sort(lateness.begin(), lateness.end());
  auto at = [&](double q) {
    const size_t i = std::min(lateness.size() - 1, static_cast<size_t>(q * lateness.size()));
    return absl::ToDoubleMilliseconds(lateness[i]);
  };
  return {at(0.50), at(0.99), absl::ToDoubleMilliseconds(lateness.back())};
}

// One round: returns the lateness of every timer, measured by the callback itself.
std::vector<absl::Duration> Round(int timers, std::mt19937_64& rng) {
  Clock& clock = Clock::Real();
  TimerQueue queue(clock);
  queue.Start();

  // Deadlines spread uniformly over [lead, lead + 2 s), scheduled in random order. The lead
  // leaves time to schedule them all before the first is due.
  const absl::Duration lead = absl::Milliseconds(300);
  const absl::Duration spread = absl::Seconds(2);
  std::vector<absl::Duration> offsets(timers);
  std::uniform_int_distribution<int64_t> uniform(0, absl::ToInt64Nanoseconds(spread) - 1);
  for (absl::Duration& d : offsets) d = lead + absl::Nanoseconds(uniform(rng));

  absl::Mutex mu;
  std::vector<absl::Duration> lateness(timers);
  int fired = 0;
  const absl::Time base = clock.Now();
  for (int i = 0; i < timers; ++i) {
    const absl::Time deadline = base + offsets[i];
    queue.Schedule(deadline, [&, i, deadline](absl::Duration) {
      const absl::Duration late = clock.Now() - deadline;
      absl::MutexLock lock(&mu);
      lateness[i] = late;
      ++fired;
    });
  }
  const absl::Duration scheduling = clock.Now() - base;
  if (scheduling >= lead) {
    std::fprintf(stderr, "warning: scheduling took %.1f ms, longer than the %.0f ms lead\n",
                 absl::ToDoubleMilliseconds(scheduling), absl::ToDoubleMilliseconds(lead));
  }
  {
    absl::MutexLock lock(&mu);
    auto all_fired = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return fired == timers; };
    if (!mu.AwaitWithTimeout(absl::Condition(&all_fired), lead + spread + absl::Seconds(30))) {
      std::fprintf(stderr, "error: only %d of %d timers fired\n", fired, timers);
      std::exit(1);
    }
  }
  queue.Stop();
  return lateness;
}

// The floor any timer thread can reach on this machine: one thread sleeping until each of the
// same kind of deadlines in turn (std::this_thread::sleep_until on the system clock). When the
// machine is busy its tail grows as much as the queue's.
std::vector<absl::Duration> Baseline(int timers, std::mt19937_64& rng) {
  const absl::Duration lead = absl::Milliseconds(300);
  const absl::Duration spread = absl::Seconds(2);
  std::vector<absl::Duration> offsets(timers);
  std::uniform_int_distribution<int64_t> uniform(0, absl::ToInt64Nanoseconds(spread) - 1);
  for (absl::Duration& d : offsets) d = lead + absl::Nanoseconds(uniform(rng));
  std::sort(offsets.begin(), offsets.end());
  std::vector<absl::Duration> lateness;
  lateness.reserve(timers);
  const absl::Time base = absl::Now();
  for (const absl::Duration& offset : offsets) {
    const absl::Time deadline = base + offset;
    std::this_thread::sleep_until(absl::ToChronoTime(deadline));
    lateness.push_back(absl::Now() - deadline);
  }
  return lateness;
}

int Main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  const int timers = argc > 2 ? std::atoi(argv[2]) : 10'000;
  if (rounds < 1 || timers < 1) {
    std::fprintf(stderr, "usage: %s [rounds>=1] [timers>=1]\n", argv[0]);
    return 2;
  }
  // As prewarmd does (main.cc): Debian's Abseil checks every lock for deadlock cycles.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::mt19937_64 rng(0x7173);
  std::vector<absl::Duration> all;
  std::printf("%d rounds of %d timers over 2 s on the real clock\n", rounds, timers);
  for (int r = 0; r < rounds; ++r) {
    std::vector<absl::Duration> lateness = Round(timers, rng);
    const Figures f = Summarize(lateness);
    std::printf("round %d: lateness p50 %.3f ms  p99 %.3f ms  max %.3f ms\n", r + 1, f.p50_ms,
                f.p99_ms, f.max_ms);
    all.insert(all.end(), lateness.begin(), lateness.end());
  }
  const Figures f = Summarize(all);
  const Figures floor = Summarize(Baseline(timers, rng));
  std::printf(
      "all %zu timers: lateness p50 %.3f ms  p99 %.3f ms  max %.3f ms  (target p99 < 2 ms: %s)\n",
      all.size(), f.p50_ms, f.p99_ms, f.max_ms, f.p99_ms < 2.0 ? "met" : "MISSED");
  std::printf(
      "baseline, one thread sleep_until each deadline: p50 %.3f ms  p99 %.3f ms  max %.3f ms\n",
      floor.p50_ms, floor.p99_ms, floor.max_ms);
  return f.p99_ms < 2.0 ? 0 : 1;
}

}  // namespace
}  // namespace prewarm

int main(int argc, char** argv) { return prewarm::Main(argc, argv); }
