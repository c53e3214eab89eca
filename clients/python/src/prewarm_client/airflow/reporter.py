"""Reporter: sends RPCs to prewarmd from one background thread, off the task's critical path.

- A bounded queue: when it is full, the new job is dropped and a warning logged (rate-limited).
- Jobs run in submission order (a task's STARTED goes before its FINISHED); a job may be delayed.
- Every job's failure is logged, never raised. A call answered UNAVAILABLE (prewarmd restarting,
  or a standby during a failover) is retried by the client with backoff and jitter within the
  job's time budget (Budget); once a job still fails with UNAVAILABLE or DEADLINE_EXCEEDED the
  reporter backs off (`backoff` seconds) and drops jobs at once instead of waiting on a dead
  server, so a task's final flush stays short.
- flush(timeout) waits, bounded, until the queue is empty: Airflow ends a task's process right
  after its last listener hook (2.x with os._exit), so the listener flushes there.
- Fork-safe: gRPC's C core does not survive a fork with a channel open (measured with Debian's
  grpcio 1.51: a child forked after the parent had used one channel hung on its own new channel
  in 15 of 15 forks; with the channel closed before the fork, 0 of 15). Airflow forks a lot: 2.x
  task runners, 3.x LocalExecutor workers forked from the scheduler, task processes forked by
  the supervisor. So before any fork (os.register_at_fork) every reporter waits for the call in
  flight (bounded) and closes its channel; the parent reopens it on its next job, and a child
  starts its own thread and client on first use.

Thread-safe.
"""

from __future__ import annotations

import atexit
import heapq
import weakref
import itertools
import logging
import os
import threading
import time
from collections import deque
from typing import Callable, Optional

from prewarm_client.client import PrewarmClient
from prewarm_client.errors import DeadlineExceededError, PrewarmError, UnavailableError

log = logging.getLogger("prewarm_client.airflow")

Job = Callable[[PrewarmClient], None]


class RateLimitedLog:
    """Logs a message of a given key at most once per `interval` seconds."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self.suppressed = 0

    def __call__(self, level: int, key: str, msg: str, *args: object,
                 exc_info: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self.suppressed += 1
                return
            self._last[key] = now
        log.log(level, msg, *args, exc_info=exc_info)


class Budget:
    """The time one job may take: all of its calls together at most `total` seconds, so a chain
    of calls (report, NotFound, announce, report again) ends within a task's flush instead of
    outliving it. Each call may use what is left of it to retry UNAVAILABLE; each attempt gets
    at most `per_call` seconds (the client's attempt_timeout)."""

    def __init__(self, per_call: float, total: float) -> None:
        self.per_call = per_call
        self.deadline = time.monotonic() + total

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def next_call(self) -> float:
        """The deadline of the next call with its retries, seconds: what is left of the budget;
        DeadlineExceededError when nothing is."""
        remaining = self.remaining()
        if remaining <= 0.01:
            raise DeadlineExceededError("prewarm: the job's time budget is spent")
        return remaining


class Reporter:
    def __init__(self, client_factory: Callable[[], PrewarmClient], *, queue_size: int = 1000,
                 backoff: float = 10.0, name: str = "prewarm-reporter") -> None:
        self._client_factory = client_factory
        self.queue_size = max(1, int(queue_size))
        self.backoff = backoff
        self.name = name
        self._cond = threading.Condition()
        # Held while a job uses the client, and across a fork (see the module docstring).
        self._client_lock = threading.Lock()
        self._fork_locked = False
        self._seq = itertools.count()
        self._pid = -1
        self._inherited: Optional[PrewarmClient] = None
        self._reset()
        self.rate_limited = RateLimitedLog()
        # Counters, for tests and logs.
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        _all_reporters.add(self)

    def _reset(self) -> None:  # REQUIRES: self._cond held (or not yet shared)
        self._ready: deque[tuple[Job, str]] = deque()
        self._delayed: list[tuple[float, int, Job, str]] = []
        self._in_flight = 0
        self._running_names: list[str] = []
        self._thread: Optional[threading.Thread] = None
        self._client: Optional[PrewarmClient] = None
        self._closed = False
        self._backoff_until = 0.0
        self._pid = os.getpid()

    # Submitting ---------------------------------------------------------------------------

    def submit(self, job: Job, what: str, delay: float = 0.0) -> bool:
        """Queues `job(client)`; False (and a warning) when the queue is full or closed."""
        with self._cond:
            if self._pid != os.getpid():
                # Forked: the parent's thread does not exist here, and its channel must not be
                # used. Leak the inherited client rather than closing it under the parent.
                self._inherited = self._client
                self._reset()
            if self._closed:
                return False
            if len(self._ready) + len(self._delayed) + self._in_flight >= self.queue_size:
                self.dropped += 1
                self.rate_limited(logging.WARNING, "queue-full",
                                  "prewarm: report queue full (%d); dropping %s",
                                  self.queue_size, what)
                return False
            if delay > 0:
                heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._seq), job,
                                               what))
            else:
                self._ready.append((job, what))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return True

    def flush(self, timeout: float, run_delayed: bool = False) -> bool:
        """Waits up to `timeout` seconds for the queued jobs (with `run_delayed`, the delayed
        ones too, run now) to finish; True when none is left."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            if self._pid != os.getpid():
                return True
            if run_delayed:
                while self._delayed:
                    _, _, job, what = heapq.heappop(self._delayed)
                    self._ready.append((job, what))
                self._cond.notify_all()
            while self._ready or self._in_flight or (run_delayed and self._delayed):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def before_fork(self, wait: float) -> None:
        """Waits up to `wait` seconds for the call in flight, then closes the channel; the lock
        stays held until after_fork."""
        self._fork_locked = self._client_lock.acquire(timeout=wait)
        client, self._client = self._client, None
        if client is not None and self._fork_locked:
            try:
                client.close()
            except Exception:  # closing must not stop the fork
                pass

    def after_fork(self) -> None:
        if self._fork_locked:
            self._fork_locked = False
            self._client_lock.release()

    def pending(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed) + self._in_flight

    def pending_names(self) -> list[str]:
        """What is running or ready to run, by name (for the warning when a flush runs out)."""
        with self._cond:
            return list(self._running_names) + [what for _, what in self._ready]

    def close(self, timeout: float = 0.0) -> None:
        """Flushes for up to `timeout`, then stops the thread and closes the client."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._ready.clear()
            self._delayed.clear()
            self._cond.notify_all()
            thread, client = self._thread, self._client
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        if client is not None:
            client.close()

    # The thread ---------------------------------------------------------------------------

    def _next(self) -> Optional[tuple[Job, str]]:
        with self._cond:
            while True:
                if self._closed:
                    return None
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, job, what = heapq.heappop(self._delayed)
                    self._ready.append((job, what))
                if self._ready:
                    self._in_flight += 1
                    job, what = self._ready.popleft()
                    self._running_names.append(what)
                    return job, what
                wait = self._delayed[0][0] - now if self._delayed else None
                self._cond.wait(wait)

    def _loop(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            job, what = item
            try:
                self._run(job, what)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    self._running_names.remove(what)
                    self._cond.notify_all()

    def _count(self, counter: str) -> None:
        with self._cond:
            setattr(self, counter, getattr(self, counter) + 1)

    def _run(self, job: Job, what: str) -> None:
        if time.monotonic() < self._backoff_until:
            self._count("dropped")
            self.rate_limited(logging.INFO, "backoff",
                              "prewarm: server unreachable recently; dropping %s", what)
            return
        try:
            with self._client_lock:
                if self._client is None:
                    self._client = self._client_factory()
                job(self._client)
            self._count("sent")
        except (UnavailableError, DeadlineExceededError) as err:
            self._count("failed")
            self._backoff_until = time.monotonic() + self.backoff
            self.rate_limited(logging.WARNING, "unreachable",
                              "prewarm: %s failed (%s); not reporting for %.0f s", what, err,
                              self.backoff)
        except PrewarmError as err:
            self._count("failed")
            self.rate_limited(logging.WARNING, f"error-{err.code.name}",
                              "prewarm: %s failed: %s", what, err)
        except Exception as err:  # Never let a report break anything.
            self._count("failed")
            self.rate_limited(logging.WARNING, f"exception-{type(err).__name__}",
                              "prewarm: %s failed: %r", what, err)


# --------------------------------------------------------------------------------------------
# Shared reporters: the listener and the hook's service calls of one process share one per
# connection, so the listener's flush at the end of a task covers the hook's reports too.

_shared_lock = threading.Lock()
_shared: dict[str, Reporter] = {}


_all_reporters: "weakref.WeakSet[Reporter]" = weakref.WeakSet()
FORK_WAIT_SECONDS = 5.0


def _before_fork() -> None:
    for reporter in list(_all_reporters):
        reporter.before_fork(FORK_WAIT_SECONDS)


def _after_fork() -> None:
    for reporter in list(_all_reporters):
        reporter.after_fork()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)


def shared_reporter(key: str, client_factory: Callable[[], PrewarmClient],
                    queue_size: int = 1000) -> Reporter:
    """The process's reporter for `key` (a connection id), created on first use."""
    with _shared_lock:
        reporter = _shared.get(key)
        if reporter is None:
            reporter = Reporter(client_factory, queue_size=queue_size, name=f"prewarm-{key}")
            _shared[key] = reporter
        return reporter


def flush_all(timeout: float, run_delayed: bool = False) -> bool:
    """Flushes every shared reporter within `timeout` seconds in total."""
    deadline = time.monotonic() + timeout
    with _shared_lock:
        reporters = list(_shared.values())
    ok = True
    for reporter in reporters:
        ok = reporter.flush(max(0.0, deadline - time.monotonic()), run_delayed) and ok
    return ok


def close_all() -> None:
    """Closes and forgets every shared reporter (tests; interpreter exit)."""
    with _shared_lock:
        reporters = list(_shared.values())
        _shared.clear()
    for reporter in reporters:
        reporter.close()


@atexit.register
def _flush_at_exit() -> None:
    # Bounded: a dead server must not hold the interpreter's exit.
    flush_all(3.0)
