"""Duration hints from Airflow's own history, so that a DAG's first runs under prewarm are planned
from how long its tasks have been running rather than from prewarmd's priors.

prewarmd learns each task's duration from the runs the listener reports; before it has, it plans
with a fixed prior (10 s) and warms in the wrong place. Airflow already knows: every finished task
instance has a `duration` in its metadata database. The listener reads the recent successful
durations of a DAG's tasks (_compat.recent_task_durations: bounded, in the reporter thread's own
session) and sends each task's median as Task.expected_duration with the run's Prewarm; prewarmd
uses it until it has learned the task's own durations.

Where: only where the DAG run is announced from a process with metastore access, on the reporter's
thread (scheduler; a 3.x API server). Never on a hook's thread, never in a task process (2.x: its
budget belongs to its own reports; 3.x: it has no database at all).

Cached per dag_id for `history_ttl` seconds (a failure too, for at most a minute, so a broken
database is not asked on every run), at most MAX_CACHED_DAGS DAGs. Thread-safe.
"""

from __future__ import annotations

import collections
import logging
import statistics
import threading
import time
from typing import Callable, Iterable, Optional

from prewarm_client.airflow.reporter import RateLimitedLog

# prewarmd's bounds for Task.expected_duration: > 0 and at most 7 days. A median of 0 (a task
# that ends as it starts) is sent as 1 ms; one longer than 7 days is not sent.
MIN_HINT_SECONDS = 0.001
MAX_HINT_SECONDS = 7 * 24 * 3600.0
MAX_CACHED_DAGS = 1024
FAILURE_TTL_SECONDS = 60.0

# (dag_id, runs, timeout) -> [(task_id, duration seconds)]
DurationReader = Callable[[str, int, float], list[tuple[str, float]]]


def median_hints(rows: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Each task's median duration, seconds, within prewarmd's bounds: the median, because one
    run that waited on a cold start or a stuck worker must not move the hint. Negative durations
    (clock steps) are ignored."""
    by_task: dict[str, list[float]] = collections.defaultdict(list)
    for task_id, seconds in rows:
        if seconds is not None and seconds >= 0:
            by_task[task_id].append(float(seconds))
    hints = {}
    for task_id, values in by_task.items():
        median = statistics.median(values)
        if median <= MAX_HINT_SECONDS:
            hints[task_id] = max(median, MIN_HINT_SECONDS)
    return hints


class DurationHints:
    """Per-DAG duration hints, read through `reader` and cached."""

    def __init__(self, reader: DurationReader,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._reader = reader
        self._clock = clock
        self._lock = threading.Lock()
        # dag_id -> (expires at, hints), least recently read first.
        self._cache: collections.OrderedDict[str, tuple[float, dict[str, float]]] = \
            collections.OrderedDict()
        self.reads = 0
        self.failures = 0
        self.rate_limited = RateLimitedLog()

    def get(self, dag_id: str, runs: int, ttl: float, timeout: float) -> dict[str, float]:
        """The hints of `dag_id` (task_id -> seconds): cached, else read now (on the calling
        thread, which must be allowed to query Airflow's database). Never raises: a failed read
        gives no hints."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(dag_id)
            if cached is not None and now < cached[0]:
                self._cache.move_to_end(dag_id)
                return cached[1]
        hints: Optional[dict[str, float]] = None
        try:
            hints = median_hints(self._reader(dag_id, runs, timeout))
        except Exception as err:  # the database, or no Airflow ORM here: plan without hints
            self.rate_limited(logging.WARNING, "history",
                              "prewarm: cannot read the task durations of DAG %s from Airflow's "
                              "database (%s); announcing its runs without duration hints",
                              dag_id, err)
        with self._lock:
            self.reads += 1
            if hints is None:
                self.failures += 1
            expires = now + (ttl if hints is not None else min(ttl, FAILURE_TTL_SECONDS))
            self._cache[dag_id] = (expires, hints or {})
            self._cache.move_to_end(dag_id)
            while len(self._cache) > MAX_CACHED_DAGS:
                self._cache.popitem(last=False)
        return hints or {}
