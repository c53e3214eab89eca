// Proves that the TSan build sees absl::Mutex (tests/sanitize/absl_tsan_shim.cc):
// scripts/sanitize.sh runs `tsan_canary guarded`, which must be clean (data handed between threads
// only under absl::Mutex, CondVar, Await/LockWhen and Notification), and `tsan_canary racy`, which
// must be reported (the same hand-off with one write made without the lock). Without the shim the
// guarded run is reported too: TSan cannot see Debian's prebuilt Mutex synchronise anything.

#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace {

struct Shared {
  absl::Mutex mu;
  absl::CondVar cv;
  long counter ABSL_GUARDED_BY(mu) = 0;
  bool ready ABSL_GUARDED_BY(mu) = false;
  int payload ABSL_GUARDED_BY(mu) = 0;
};

int Guarded() {
  Shared s;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&s] {
      for (int i = 0; i < 1000; ++i) {
        absl::MutexLock lock(&s.mu);
        ++s.counter;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  threads.clear();
  // Await / LockWhen hand-off.
  std::thread producer([&s] {
    absl::MutexLock lock(&s.mu);
    s.payload = 42;
    s.ready = true;
  });
  int seen = 0;
  {
    s.mu.LockWhen(absl::Condition(&s.ready));
    seen = s.payload;
    s.ready = false;
    s.mu.Unlock();
  }
  producer.join();
  // CondVar hand-off.
  std::thread signaller([&s] {
    absl::MutexLock lock(&s.mu);
    s.payload = 7;
    s.ready = true;
    s.cv.Signal();
  });
  {
    absl::MutexLock lock(&s.mu);
    while (!s.ready) s.cv.Wait(&s.mu);
    seen += s.payload;
  }
  signaller.join();
  // Notification hand-off of unguarded data.
  int plain = 0;
  absl::Notification done;
  std::thread notifier([&] {
    plain = 5;
    done.Notify();
  });
  done.WaitForNotification();
  seen += plain;
  notifier.join();
  absl::MutexLock lock(&s.mu);
  std::printf("guarded: counter %ld, seen %d\n", s.counter, seen);
  return s.counter == 4000 && seen == 54 ? 0 : 1;
}

// The bug TSan must catch: a writer that forgets the lock.
int Racy() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  Shared s;
  std::thread locked([&s] {
    for (int i = 0; i < 1000; ++i) {
      absl::MutexLock lock(&s.mu);
      ++s.counter;
    }
  });
  std::thread unlocked([&s] {
    for (int i = 0; i < 1000; ++i) ++s.counter;  // No lock: a data race.
  });
  locked.join();
  unlocked.join();
  std::printf("racy: counter %ld\n", s.counter);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "guarded") == 0) return Guarded();
  if (argc == 2 && std::strcmp(argv[1], "racy") == 0) return Racy();
  std::fprintf(stderr, "usage: tsan_canary guarded|racy\n");
  return 2;
}
