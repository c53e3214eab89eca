// Makes Debian's prebuilt absl::Mutex, CondVar, Notification and BlockingCounter visible to
// ThreadSanitizer. Linked only into the TSan build (scripts/sanitize.sh), with -Wl,--wrap for
// every symbol below.
//
// Why: abseil reports its locks to TSan from mutex.cc (ABSL_TSAN_MUTEX_PRE_LOCK and friends, on
// when the *library* is compiled with -fsanitize=thread, i.e. ABSL_HAVE_THREAD_SANITIZER). Debian
// 12's libabsl_synchronization.so is compiled without it, so its Lock/Unlock are an uninstrumented
// CAS and futex: TSan sees no happens-before between two critical sections, and every
// ABSL_GUARDED_BY member touched by two threads would be reported (false positives that drown
// real races). Only the header-inline parts (the Mutex constructor's ABSL_TSAN_MUTEX_CREATE) are
// instrumented in our own objects.
//
// What: each wrapper brackets the real call with the same __tsan_mutex_* annotations abseil's
// mutex.cc makes when built for TSan: pre_lock/post_lock around acquisitions, pre_unlock/
// post_unlock around releases (TSan ignores memory accesses between pre_ and post_, so the
// Condition functions that absl evaluates inside Lock/Unlock on behalf of other threads are not
// reported), an unlock before and a lock after every wait (Await, LockWhen, CondVar::Wait), and
// release/acquire edges for Notification. --wrap redirects only calls made from our own objects
// (prewarm code, tests, inline absl code compiled into them); calls made inside gRPC's prebuilt
// libraries stay invisible, as all of their memory accesses are.
//
// The symbol names are Debian's (inline namespace absl::debian3); a link error names any that
// changed. tests/sanitize/tsan_canary.cc proves the effect: it must pass with this shim and fail
// on its deliberately unlocked write.

#include <sanitizer/tsan_interface.h>

#include <atomic>
#include <cstddef>

#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

using absl::Condition;
using absl::CondVar;
using absl::Duration;
using absl::Mutex;
using absl::Notification;
using absl::Time;

constexpr unsigned kRead = __tsan_mutex_read_lock;
constexpr unsigned kTry = __tsan_mutex_try_lock;
constexpr unsigned kTryFailed = __tsan_mutex_try_lock_failed;

void PreLock(Mutex* m, unsigned flags = 0) { __tsan_mutex_pre_lock(m, flags); }
void PostLock(Mutex* m, unsigned flags = 0) { __tsan_mutex_post_lock(m, flags, 0); }
void PreUnlock(Mutex* m, unsigned flags = 0) { __tsan_mutex_pre_unlock(m, flags); }
void PostUnlock(Mutex* m, unsigned flags = 0) { __tsan_mutex_post_unlock(m, flags); }

// A wait while holding `m`: released (as TSan sees it) before the real call, which runs with
// accesses ignored, and acquired again after it.
template <typename F>
auto Wait(Mutex* m, unsigned flags, F real) {
  PreUnlock(m, flags);
  auto r = real();
  PostUnlock(m, flags);
  PreLock(m, flags);
  PostLock(m, flags);
  return r;
}

// A lock that may wait for a condition: accesses ignored throughout, acquired at the end.
template <typename F>
auto LockAnd(Mutex* m, unsigned flags, F real) {
  PreLock(m, flags);
  auto r = real();
  PostLock(m, flags);
  return r;
}

// Notification keeps its flag in an atomic right after its Mutex; HasBeenNotified() loads it
// with acquire semantics inline in our objects. Releasing on that address lets that load (and
// the wrapped waits) synchronise with Notify().
void* FlagOf(const Notification* n) {
  static_assert(sizeof(Mutex) == sizeof(void*), "absl::Notification layout changed");
  return reinterpret_cast<char*>(const_cast<Notification*>(n)) + sizeof(Mutex);
}

// absl's own deadlock detector updates a global lock graph inside Lock(), under an internal
// SpinLock TSan cannot see either (from gRPC's threads too, whose calls are not wrapped): reported
// as races on that graph. TSan detects lock-order inversions itself through the annotations below.
[[maybe_unused]] const bool kAbslDeadlockDetectionOff = [] {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return true;
}();

}  // namespace

#define REAL(sym) __real_##sym
#define WRAP(sym) __wrap_##sym

extern "C" {

// ---- absl::Mutex
void REAL(_ZN4absl7debian35Mutex4LockEv)(Mutex*);
void WRAP(_ZN4absl7debian35Mutex4LockEv)(Mutex* m) {
  PreLock(m);
  REAL(_ZN4absl7debian35Mutex4LockEv)(m);
  PostLock(m);
}
void REAL(_ZN4absl7debian35Mutex6UnlockEv)(Mutex*);
void WRAP(_ZN4absl7debian35Mutex6UnlockEv)(Mutex* m) {
  PreUnlock(m);
  REAL(_ZN4absl7debian35Mutex6UnlockEv)(m);
  PostUnlock(m);
}
bool REAL(_ZN4absl7debian35Mutex7TryLockEv)(Mutex*);
bool WRAP(_ZN4absl7debian35Mutex7TryLockEv)(Mutex* m) {
  PreLock(m, kTry);
  const bool locked = REAL(_ZN4absl7debian35Mutex7TryLockEv)(m);
  PostLock(m, locked ? kTry : kTry | kTryFailed);
  return locked;
}
void REAL(_ZN4absl7debian35Mutex10ReaderLockEv)(Mutex*);
void WRAP(_ZN4absl7debian35Mutex10ReaderLockEv)(Mutex* m) {
  PreLock(m, kRead);
  REAL(_ZN4absl7debian35Mutex10ReaderLockEv)(m);
  PostLock(m, kRead);
}
void REAL(_ZN4absl7debian35Mutex12ReaderUnlockEv)(Mutex*);
void WRAP(_ZN4absl7debian35Mutex12ReaderUnlockEv)(Mutex* m) {
  PreUnlock(m, kRead);
  REAL(_ZN4absl7debian35Mutex12ReaderUnlockEv)(m);
  PostUnlock(m, kRead);
}
bool REAL(_ZN4absl7debian35Mutex13ReaderTryLockEv)(Mutex*);
bool WRAP(_ZN4absl7debian35Mutex13ReaderTryLockEv)(Mutex* m) {
  PreLock(m, kRead | kTry);
  const bool locked = REAL(_ZN4absl7debian35Mutex13ReaderTryLockEv)(m);
  PostLock(m, locked ? kRead | kTry : kRead | kTry | kTryFailed);
  return locked;
}
void REAL(_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE)(Mutex*, const Condition&);
void WRAP(_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE)(Mutex* m, const Condition& c) {
  LockAnd(m, 0, [&] {
    REAL(_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE)(m, c);
    return true;
  });
}
bool REAL(_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE)(
    Mutex*, const Condition&, Duration);
bool WRAP(_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE)(
    Mutex* m, const Condition& c, Duration d) {
  return LockAnd(m, 0, [&] {
    return REAL(_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE)(m, c,
                                                                                             d);
  });
}
bool REAL(_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE)(
    Mutex*, const Condition&, Time);
bool WRAP(_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE)(
    Mutex* m, const Condition& c, Time t) {
  return LockAnd(m, 0, [&] {
    return REAL(_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE)(m, c, t);
  });
}
void REAL(_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE)(Mutex*, const Condition&);
void WRAP(_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE)(Mutex* m, const Condition& c) {
  LockAnd(m, kRead, [&] {
    REAL(_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE)(m, c);
    return true;
  });
}
void REAL(_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE)(Mutex*, const Condition&);
void WRAP(_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE)(Mutex* m, const Condition& c) {
  Wait(m, 0, [&] {
    REAL(_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE)(m, c);
    return true;
  });
}
bool REAL(_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE)(
    Mutex*, const Condition&, Duration);
bool WRAP(_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE)(
    Mutex* m, const Condition& c, Duration d) {
  return Wait(m, 0, [&] {
    return REAL(_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE)(m, c, d);
  });
}
bool REAL(_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE)(Mutex*,
                                                                                 const Condition&,
                                                                                 Time);
bool WRAP(_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE)(Mutex* m,
                                                                                 const Condition& c,
                                                                                 Time t) {
  return Wait(m, 0, [&] {
    return REAL(_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE)(m, c, t);
  });
}
void REAL(_ZN4absl7debian35MutexD1Ev)(Mutex*);
void WRAP(_ZN4absl7debian35MutexD1Ev)(Mutex* m) {
  __tsan_mutex_destroy(m, 0);
  REAL(_ZN4absl7debian35MutexD1Ev)(m);
}
void REAL(_ZN4absl7debian35MutexD2Ev)(Mutex*);
void WRAP(_ZN4absl7debian35MutexD2Ev)(Mutex* m) {
  __tsan_mutex_destroy(m, 0);
  REAL(_ZN4absl7debian35MutexD2Ev)(m);
}

// ReleasableMutexLock::Release() is out of line too, and unlocks inside the library.
void REAL(_ZN4absl7debian319ReleasableMutexLock7ReleaseEv)(absl::ReleasableMutexLock*);
void WRAP(_ZN4absl7debian319ReleasableMutexLock7ReleaseEv)(absl::ReleasableMutexLock* lock) {
  // Its only member is the Mutex* it holds.
  static_assert(sizeof(absl::ReleasableMutexLock) == sizeof(Mutex*), "layout changed");
  Mutex* m = *reinterpret_cast<Mutex**>(lock);
  PreUnlock(m);
  REAL(_ZN4absl7debian319ReleasableMutexLock7ReleaseEv)(lock);
  PostUnlock(m);
}

// ---- absl::CondVar: a wait releases and reacquires the mutex.
void REAL(_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE)(CondVar*, Mutex*);
void WRAP(_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE)(CondVar* cv, Mutex* m) {
  Wait(m, 0, [&] {
    REAL(_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE)(cv, m);
    return true;
  });
}
bool REAL(_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE)(CondVar*, Mutex*,
                                                                                Duration);
bool WRAP(_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE)(CondVar* cv,
                                                                                Mutex* m,
                                                                                Duration d) {
  return Wait(m, 0, [&] {
    return REAL(_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE)(cv, m, d);
  });
}
bool REAL(_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE)(CondVar*, Mutex*,
                                                                             Time);
bool WRAP(_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE)(CondVar* cv, Mutex* m,
                                                                             Time t) {
  return Wait(m, 0, [&] {
    return REAL(_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE)(cv, m, t);
  });
}

// ---- absl::Notification: Notify() releases, every way of seeing it acquires.
void REAL(_ZN4absl7debian312Notification6NotifyEv)(Notification*);
void WRAP(_ZN4absl7debian312Notification6NotifyEv)(Notification* n) {
  __tsan_release(FlagOf(n));
  REAL(_ZN4absl7debian312Notification6NotifyEv)(n);
}
bool REAL(_ZN4absl7debian312Notification23HasBeenNotifiedInternalEPKSt6atomicIbE)(
    const std::atomic<bool>*);
bool WRAP(_ZN4absl7debian312Notification23HasBeenNotifiedInternalEPKSt6atomicIbE)(
    const std::atomic<bool>* flag) {
  const bool notified =
      REAL(_ZN4absl7debian312Notification23HasBeenNotifiedInternalEPKSt6atomicIbE)(flag);
  if (notified) __tsan_acquire(const_cast<std::atomic<bool>*>(flag));
  return notified;
}
void REAL(_ZNK4absl7debian312Notification19WaitForNotificationEv)(const Notification*);
void WRAP(_ZNK4absl7debian312Notification19WaitForNotificationEv)(const Notification* n) {
  REAL(_ZNK4absl7debian312Notification19WaitForNotificationEv)(n);
  __tsan_acquire(FlagOf(n));
}
bool REAL(_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE)(
    const Notification*, Duration);
bool WRAP(_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE)(
    const Notification* n, Duration d) {
  const bool notified =
      REAL(_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE)(n, d);
  if (notified) __tsan_acquire(FlagOf(n));
  return notified;
}
bool REAL(_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE)(
    const Notification*, Time);
bool WRAP(_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE)(
    const Notification* n, Time t) {
  const bool notified =
      REAL(_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE)(n, t);
  if (notified) __tsan_acquire(FlagOf(n));
  return notified;
}

// ---- absl::BlockingCounter: each DecrementCount() releases, Wait() acquires them all.
bool REAL(_ZN4absl7debian315BlockingCounter14DecrementCountEv)(absl::BlockingCounter*);
bool WRAP(_ZN4absl7debian315BlockingCounter14DecrementCountEv)(absl::BlockingCounter* c) {
  __tsan_release(c);
  return REAL(_ZN4absl7debian315BlockingCounter14DecrementCountEv)(c);
}
void REAL(_ZN4absl7debian315BlockingCounter4WaitEv)(absl::BlockingCounter*);
void WRAP(_ZN4absl7debian315BlockingCounter4WaitEv)(absl::BlockingCounter* c) {
  REAL(_ZN4absl7debian315BlockingCounter4WaitEv)(c);
  __tsan_acquire(c);
}

}  // extern "C"
