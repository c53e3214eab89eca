// Memory of the learned history per key, and proof that it stays flat under an endless stream of
// new names once History's key cap is reached. Prints figures; asserts nothing.
//
//   cmake --build build --target history_memory && build/bench/history_memory [keys] [window]
//
// Heap bytes are glibc's mallinfo2() in-use bytes (exact, unlike RSS, which keeps freed pages);
// RSS is printed beside them.

#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "predictor/history.h"

namespace {

size_t HeapInUse() { return mallinfo2().uordblks; }

size_t RssBytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// What one new (workflow, task, service) teaches the server's History: the task's duration
// window and run record, the service's duration and cold-start windows, the workflow's gap.
void LearnNewNames(prewarm::History& h, int i, int samples) {
  const std::string workflow = absl::StrCat("dag-", i, "-2024-06-01T00:00:00");
  const std::string task = absl::StrCat("mapped_task.", i);
  const std::string service = absl::StrCat("tenant-", i, "-svc");
  for (int s = 0; s < samples; ++s) {
    h.AddTaskDuration(workflow, task, service, absl::Seconds(1 + s % 7));
    h.AddColdStart(service, absl::Seconds(2));
    h.AddDispatchGap(workflow, absl::Milliseconds(500));
  }
  h.AddTaskRun(workflow, task, true);
  (void)h.TakeEvicted();  // As the server does after every batch.
}

}  // namespace

int main(int argc, char** argv) {
  const int keys = argc > 1 ? std::atoi(argv[1]) : 100'000;
  const int window = argc > 2 ? std::atoi(argv[2]) : 128;
  std::printf("history_memory: window %d samples, cap %d keys\n", window, keys);

  for (int samples : {1, window}) {
    const size_t heap0 = HeapInUse();
    {
      prewarm::History h({.window_size = window, .max_keys = 0});
      const int names = keys / 5;  // 5 keys per new (workflow, task, service).
      for (int i = 0; i < names; ++i) LearnNewNames(h, i, samples);
      const size_t heap = HeapInUse() - heap0;
      std::printf(
          "  %3d sample(s) per window: %zu keys, heap %.1f MB, %.0f bytes/key, "
          "%.0f bytes per new (workflow, task, service); RSS %.1f MB\n",
          samples, h.key_count(), heap / 1e6, double(heap) / h.key_count(), double(heap) / names,
          RssBytes() / 1e6);
    }
  }

  // The cap holds: feed 4x the cap of new names, full windows.
  std::printf("flat under new names (cap %d keys, full windows):\n", keys);
  const size_t heap0 = HeapInUse();
  prewarm::History h({.window_size = window, .max_keys = keys});
  const int names_per_cap = keys / 5;
  for (int round = 1; round <= 4; ++round) {
    for (int i = (round - 1) * names_per_cap; i < round * names_per_cap; ++i) {
      LearnNewNames(h, i, window);
    }
    std::printf(
        "  after %dx the cap of new names: %zu keys, %lld evicted, heap %.1f MB, RSS "
        "%.1f MB\n",
        round, h.key_count(), static_cast<long long>(h.evictions()), (HeapInUse() - heap0) / 1e6,
        RssBytes() / 1e6);
  }
  return 0;
}
