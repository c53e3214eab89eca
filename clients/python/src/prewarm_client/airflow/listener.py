"""The Airflow listener: announces DAG runs to prewarmd and reports task events. No DAG change.

Registered by the `prewarm` plugin (plugin.py) as a module, like every Airflow listener. Hooks
(pluggy, project "airflow"), one implementation for Airflow 2.7+ and 3.x:

| hook | process (2.x / 3.x) | sends |
|---|---|---|
| on_starting | every Airflow component | nothing: notes whether this is a task process |
| on_dag_run_running | scheduler | Prewarm: DAG structure, services, run start, duration hints from Airflow's history (history.py); and the DAG's next scheduled run |
| on_dag_run_success / _failed | scheduler, API server (mark success / failed) | SKIPPED for tasks that never ran; CancelRun after a grace period |
| on_task_instance_running | task process | ReportTiming STARTED |
| on_task_instance_success | task process; 3.x API server (mark success) | FINISHED |
| on_task_instance_failed | task process; scheduler (executor-reported failures); 3.x API server | FAILED, or nothing for an attempt that will be retried |
| on_task_instance_skipped | 3.2+ (and 3.1.x with the backport) task process | SKIPPED |
| before_stopping | every component | flushes pending reports, bounded |

The rule, per process (docs/airflow.md §5):
- A hook never touches the caller's database session and never blocks outside a task process. It
  copies what it needs from the Airflow objects in memory (ids, dates, the DAG's structure) and
  queues a job; the reporter's own thread reads the `prewarm` connection, the DAG's recent task
  durations before announcing a run (not in a task process), and, at the end of a DAG run, the
  task states (each with a session of its own thread: Airflow's sessions are scoped per thread),
  then calls prewarmd. The scheduler's session, its commit guard and its objects are
  left exactly as they were.
- In a task process (marked by on_starting(TaskCommandMarker / TaskRunnerMarker), or a 3.x
  RuntimeTaskInstance) the final hook waits, bounded by `flush_timeout`, until its reports are
  sent: Airflow ends that process with os._exit right after. Elsewhere nothing waits.
- A hook never raises: everything is caught and logged (rate-limited).

Pluggy passes an implementation only the arguments it names without defaults, so `session` and
`error` take defaults here: the same functions validate against every version's spec and can be
called directly with either signature.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from typing import Any, Callable, NamedTuple, Optional

from prewarm_client.airflow import _compat, dags
from prewarm_client.airflow._compat import hookimpl
from prewarm_client.airflow.history import DurationHints, DurationReader
from prewarm_client.airflow.reporter import Budget, RateLimitedLog, Reporter, shared_reporter
from prewarm_client.airflow.settings import PrewarmSettings, configured_conn_id
from prewarm_client.client import PrewarmClient
from prewarm_client.errors import AlreadyExistsError, NotFoundError

log = logging.getLogger("prewarm_client.airflow")

SETTINGS_TTL_SECONDS = 300.0
RETRY_SETTINGS_SECONDS = 60.0
REGISTERED_TTL_SECONDS = 30.0
MAX_FUTURE_START = dt.timedelta(days=7)  # prewarmd's default limit on a run's start time
# How long after a DAG run ends its task states are read: the scheduler commits the states of
# the run's last pass (skipped, upstream_failed) with the run's own state, after the hook.
END_OF_RUN_READ_DELAY = 5.0
# The listener never reads a report's answer (the re-planned tasks' plans): it asks for the
# summary, which the server builds and sends for less. A server without the field answers in full.
REPORT_VIEW = "summary"
# Task states at a DAG run's end that mean "did not run" (reported as SKIPPED).
NOT_RUN_STATES = frozenset({"skipped", "upstream_failed", "removed", "none", ""})
# Exceptions that fail a task without retries whatever its retries say (2.x handle_failure's
# force_fail; 3.x task_runner's AirflowFailException / AirflowSensorTimeout branches).
FORCE_FAIL_ERRORS = frozenset({"AirflowFailException", "AirflowSensorTimeout"})
TASK_PROCESS_MARKERS = frozenset({"TaskCommandMarker", "TaskRunnerMarker"})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --------------------------------------------------------------------------------------------
# Which process this is


_process_lock = threading.Lock()
_task_process_pid: Optional[int] = None
_sdk_process_pid: Optional[int] = None   # a 3.x task process: connections from the task SDK


def mark_component(component: Any) -> None:
    """Called from on_starting: TaskCommandMarker (2.x cli/commands/task_command.py) and
    TaskRunnerMarker (3.x task-sdk execution_time/task_runner.py) mark a task process. Keyed by
    pid, so a process forked from one (an executor's worker forked from the scheduler) is not
    taken for it. (A Job's on_starting comes before its job_type is set: jobs/job.py __init__.)"""
    global _task_process_pid, _sdk_process_pid
    name = type(component).__name__
    if name in TASK_PROCESS_MARKERS:
        with _process_lock:
            _task_process_pid = os.getpid()
            if name == "TaskRunnerMarker":
                _sdk_process_pid = os.getpid()


def in_task_process(ti: Any = None) -> bool:
    """True in a task process: marked by on_starting, or handed a 3.x RuntimeTaskInstance (which
    exists only there)."""
    global _sdk_process_pid
    if ti is not None and _compat.is_runtime_task_instance(ti):
        with _process_lock:
            _sdk_process_pid = os.getpid()
        return True
    with _process_lock:
        return _task_process_pid == os.getpid()


def in_sdk_process() -> bool:
    with _process_lock:
        return _sdk_process_pid == os.getpid()


def will_retry(ti: Any, error: Any = None) -> bool:
    """Whether a failed attempt will be retried, read as Airflow decides it:
    - the state, where Airflow set it before the hook (2.10+: up_for_retry or failed; 3.0.1+);
    - 3.0.0 (RuntimeTaskInstance without `state`): the server's should_retry flag
      (task_runner.py _handle_current_task_failed), else try_number <= max_tries;
    - 2.7-2.9, where the hook runs while the state is still running
      (models/taskinstance.py handle_failure): ti.is_eligible_to_retry(), Airflow's own rule.
    An AirflowFailException / AirflowSensorTimeout fails without retries."""
    if error is not None and type(error).__name__ in FORCE_FAIL_ERRORS:
        return False
    state = dags.state_name(getattr(ti, "state", None))
    if state == "up_for_retry":
        return True
    if state == "failed":
        return False
    context = getattr(ti, "_ti_context_from_server", None)
    should_retry = getattr(context, "should_retry", None)
    if isinstance(should_retry, bool):
        return should_retry
    eligible = getattr(ti, "is_eligible_to_retry", None)
    if callable(eligible):
        try:
            return bool(eligible())
        except Exception:  # a detached or partial object: fall through to the counters
            pass
    try_number, max_tries = getattr(ti, "try_number", None), getattr(ti, "max_tries", None)
    if isinstance(try_number, int) and isinstance(max_tries, int):
        return try_number <= max_tries
    return False


# --------------------------------------------------------------------------------------------
# What a hook copies from Airflow's objects (on the caller's thread, no database access)


class RunInfo(NamedTuple):
    dag_id: str
    run_id: str
    start: dt.datetime
    tasks: Optional[list[dags.TaskShape]]    # None when the DAG is not loaded here
    upcoming: Optional[dags.NextRun]


class TaskStateRow(NamedTuple):
    task_id: str
    map_index: int
    state: str
    end_date: Optional[dt.datetime]


def read_task_states(dag_id: str, run_id: str) -> list[TaskStateRow]:
    """The states of a DAG run's task instances, read with a session of the calling thread (the
    reporter's: never the scheduler's). Raises when Airflow's ORM is not importable."""
    return [TaskStateRow(str(t), -1 if m is None else int(m), dags.state_name(s), dags.aware(e))
            for t, m, s, e in _compat.task_instance_states(dag_id, run_id)]


def read_task_durations(dag_id: str, runs: int, timeout: float) -> list[tuple[str, float]]:
    """Recent successful task durations of a DAG, read with a session of the calling thread (the
    reporter's). Raises when Airflow's ORM is not importable or the database fails."""
    return _compat.recent_task_durations(dag_id, runs, timeout)


class PrewarmListener:
    """The listener's state in one process: settings, background reporter, caches. Thread-safe.

    `settings` (fixed settings), `client_factory`, `task_states` (dag_id, run_id -> rows) and
    `task_durations` (dag_id, runs, timeout -> [(task_id, seconds)]) are for tests and embedding;
    by default the settings come from the connection named by [prewarm] conn_id and the task
    states and durations from Airflow's metadata database.
    """

    def __init__(self, conn_id: Optional[str] = None, settings: Optional[PrewarmSettings] = None,
                 client_factory: Optional[Callable[[PrewarmSettings], PrewarmClient]] = None,
                 task_states: Optional[Callable[[str, str], list["TaskStateRow"]]] = None,
                 task_durations: Optional[DurationReader] = None) -> None:
        self.conn_id = conn_id or configured_conn_id()
        self._fixed_settings = settings
        self._settings: Optional[PrewarmSettings] = settings
        self._settings_at = time.monotonic()
        self._settings_failed_at: Optional[float] = None
        self._client_factory = client_factory or (
            lambda s: PrewarmClient(s.target, **s.client_kwargs()))
        self._task_states = task_states
        self.duration_hints = DurationHints(
            task_durations or (lambda d, r, t: read_task_durations(d, r, t)))
        self._lock = threading.Lock()
        self._registered: tuple[float, Optional[set[str]]] = (-1e9, None)
        self.rate_limited = RateLimitedLog()

    # Settings and reporter ----------------------------------------------------------------

    def settings(self, sdk: bool = False) -> Optional[PrewarmSettings]:
        """The current settings; None (listener inactive) while the connection cannot be read.
        Reads the connection: call it on the reporter's thread, or with `sdk` in a 3.x task
        process (where Airflow's task SDK, not a database, supplies connections)."""
        if self._fixed_settings is not None:
            return self._fixed_settings
        if not sdk and in_sdk_process():
            # The reporter's thread of a 3.x task process: the task SDK's channel to the
            # supervisor belongs to the task's thread. The hook read the settings there.
            return self.cached_settings()
        now = time.monotonic()
        with self._lock:
            if self._settings is not None and now - self._settings_at < SETTINGS_TTL_SECONDS:
                return self._settings
            if (self._settings is None and self._settings_failed_at is not None
                    and now - self._settings_failed_at < RETRY_SETTINGS_SECONDS):
                return None
        try:
            conn = _compat.read_connection(self.conn_id, sdk=sdk)
            settings = PrewarmSettings.from_connection(conn)
        except Exception as err:
            with self._lock:
                self._settings_failed_at = now
                stale = self._settings
            self.rate_limited(logging.WARNING, "no-connection",
                              "prewarm: cannot read connection %r (%s); %s", self.conn_id, err,
                              "keeping the previous settings" if stale else "listener inactive")
            return stale
        with self._lock:
            self._settings, self._settings_at = settings, now
        return settings

    def cached_settings(self) -> Optional[PrewarmSettings]:
        """The settings read last, without reading the connection (any thread)."""
        with self._lock:
            return self._settings

    def reporter(self) -> Reporter:
        return shared_reporter(self.conn_id, self._new_client)

    def _new_client(self) -> PrewarmClient:
        settings = self.settings()  # on the reporter's thread
        if settings is None:
            raise LookupError(f"connection {self.conn_id!r} cannot be read")
        return self._client_factory(settings)

    def _submit(self, job: Callable[[PrewarmClient, PrewarmSettings, Budget], None], what: str,
                delay: float = 0.0) -> None:
        """Queues `job` for the reporter's thread, which reads the settings first; an inactive
        or disabled listener drops it there."""

        def run(client: PrewarmClient) -> None:
            settings = self.settings()
            if settings is None or not settings.enabled:
                return
            job(client, settings, Budget(settings.timeout, settings.flush_timeout))

        self.reporter().submit(run, what, delay=delay)

    def flush(self, timeout: Optional[float] = None, run_delayed: bool = False) -> bool:
        """Waits (bounded) for the queued reports; True when all were sent or dropped."""
        settings = self.cached_settings()
        if timeout is None:
            timeout = settings.flush_timeout if settings else PrewarmSettings().flush_timeout
        reporter = self.reporter()
        if reporter.flush(timeout, run_delayed):
            return True
        pending = reporter.pending_names()
        if pending:
            self.rate_limited(logging.WARNING, "flush-timeout",
                              "prewarm: %d report(s) still unsent after %.1f s, lost if this "
                              "process ends now: %s", len(pending), timeout, ", ".join(pending))
        return False

    def _registered_services(self, client: PrewarmClient, budget: Budget) -> Optional[set[str]]:
        """Registered service names (cached), for naming-rule candidates; reporter thread."""
        at, names = self._registered
        if names is not None and time.monotonic() - at < REGISTERED_TTL_SECONDS:
            return names
        names = {s.name for s in client.list_services(timeout=budget.next_call())}
        self._registered = (time.monotonic(), names)
        return names

    # DAG runs -----------------------------------------------------------------------------

    def dag_run_running(self, dag_run: Any) -> None:
        """Scheduler thread, inside its guarded session: copies, queues, returns."""
        info = _copy_run(dag_run, with_next=True)
        # Decided here, where the process is known: a task process never reads history.
        with_history = not (in_task_process() or in_sdk_process())
        if info.tasks is None:
            log.info("prewarm: DAG of run %s/%s is not loaded; its tasks will announce it",
                     info.dag_id, info.run_id)
            return
        self._submit(self._announce_job(info.dag_id, info.run_id, info.tasks, info.start,
                                        with_history),
                     f"Prewarm {info.dag_id}/{info.run_id}")
        upcoming = info.upcoming
        if upcoming is not None:
            def announce_next(client: PrewarmClient, settings: PrewarmSettings,
                              budget: Budget) -> None:
                if settings.warm_next_run and _now() < upcoming.start < _now() + MAX_FUTURE_START:
                    self._announce_job(info.dag_id, upcoming.run_id, info.tasks or [],
                                       upcoming.start, with_history)(client, settings, budget)

            self._submit(announce_next, f"Prewarm next run {info.dag_id}/{upcoming.run_id}")

    def _announce_job(self, dag_id: str, run_id: str, tasks: list[dags.TaskShape],
                      start: dt.datetime, with_history: bool = False
                      ) -> Callable[[PrewarmClient, PrewarmSettings, Budget], None]:
        """The job announcing a run; `with_history`: attach duration hints read from Airflow's
        database on the reporter's thread (only where the scheduler announces: never in a task
        process)."""
        prewarm_run = dags.server_run_id(dag_id, run_id)

        def job(client: PrewarmClient, settings: PrewarmSettings, budget: Budget) -> None:
            nodes = dags.nodes_of(dag_id, tasks, settings)
            registered = None
            if settings.pattern_requires_registered and any(n.candidate for n in nodes):
                registered = self._registered_services(client, budget)
            tasks_out = dags.resolve(nodes, settings, registered)
            if with_history and settings.seed_history:
                # The reporter's thread of a process with metastore access (the scheduler):
                # Airflow's own history stands in until prewarmd has learned the tasks.
                hints = self.duration_hints.get(dag_id, settings.history_runs,
                                                settings.history_ttl,
                                                min(settings.timeout, budget.next_call()))
                for task in tasks_out:
                    if task["task_id"] in hints:
                        task["expected_duration"] = hints[task["task_id"]]
            try:
                client.prewarm(prewarm_run, dag_id, tasks_out,
                               start_time=start, delay_cost_ratio=settings.delay_cost_ratio,
                               timeout=budget.next_call())
            except AlreadyExistsError:
                # Announced already: ahead of its start as the previous run's "next run", or by
                # one of its tasks.
                log.debug("prewarm: run %s already announced", prewarm_run)

        return job

    def dag_run_finished(self, dag_run: Any) -> None:
        """Scheduler thread (or an API server request), inside the caller's session: copies the
        ids and queues the end-of-run work; the task states are read later, by the reporter's
        thread with its own session."""
        dag_id, run_id = str(dag_run.dag_id), str(dag_run.run_id)
        prewarm_run = dags.server_run_id(dag_id, run_id)

        def report_not_run(client: PrewarmClient, settings: PrewarmSettings,
                           budget: Budget) -> None:
            try:
                rows = (self._task_states or read_task_states)(dag_id, run_id)
            except Exception as err:
                log.info("prewarm: cannot read the task states of %s (%s); its tasks that did "
                         "not run are left to CancelRun", prewarm_run, err)
                return
            for row in rows:
                if row.map_index > 0 or row.state not in NOT_RUN_STATES:
                    continue
                try:
                    client.report(prewarm_run, row.task_id, "skipped",
                                  event_time=row.end_date or _now(), view=REPORT_VIEW,
                                  timeout=budget.next_call())
                except NotFoundError:
                    return  # Every task reported: prewarmd retired the run already.

        def cancel(client: PrewarmClient, settings: PrewarmSettings, budget: Budget) -> None:
            try:
                client.cancel_run(prewarm_run, timeout=budget.next_call())
            except NotFoundError:
                pass  # Every task reported: prewarmd retired the run already.

        # The scheduler's last pass commits with the run's state; the tasks' own last reports
        # (sent from their processes) may still be on the way.
        settings = self.cached_settings() or PrewarmSettings()
        self._submit(report_not_run, f"SKIPPED not-run tasks of {prewarm_run}",
                     delay=min(END_OF_RUN_READ_DELAY, settings.cancel_grace))
        self._submit(cancel, f"CancelRun {prewarm_run}", delay=settings.cancel_grace)

    # Task instances -----------------------------------------------------------------------

    def task_event(self, ti: Any, kind: str, error: Any = None) -> None:
        """kind: running, success, failed or skipped."""
        task_process = in_task_process(ti)
        if task_process and in_sdk_process():
            # 3.x task process: connections come from the task SDK (through the supervisor),
            # on this thread as the task's own code reads them; there is no database here.
            settings = self.settings(sdk=True)
            if settings is None or not settings.enabled:
                return
        map_index = getattr(ti, "map_index", -1)
        if map_index is not None and map_index > 0:
            return  # One prewarm task per Airflow task: its first mapped instance speaks for it.
        dag_id, run_id, task_id = str(ti.dag_id), str(ti.run_id), str(ti.task_id)
        prewarm_run = dags.server_run_id(dag_id, run_id)
        announce = None
        if kind == "running":
            event = "started"
            at = dags.aware(getattr(ti, "start_date", None)) or _now()
            task = getattr(ti, "task", None)
            dag = getattr(task, "dag", None) if task is not None else None
            if dag is not None:
                announce = self._announce_job(dag_id, run_id, dags.dag_shape(dag), at)
        elif kind == "success":
            event = "skipped" if dags.state_name(getattr(ti, "state", None)) == "skipped" \
                else "finished"
        elif kind == "failed":
            if will_retry(ti, error):
                # It runs again and its next try reports; this process may still end now.
                if task_process:
                    self.flush()
                return
            event = "failed"
        elif kind == "skipped":
            event = "skipped"
        else:
            raise ValueError(f"unknown task event kind {kind!r}")
        if kind != "running":
            at = dags.aware(getattr(ti, "end_date", None)) or _now()
        self._submit(_report_job(prewarm_run, task_id, event, at, announce),
                     f"{event.upper()} {prewarm_run} {task_id}")
        if kind != "running" and task_process:
            # Airflow ends a task process right after this hook (os._exit): send, bounded.
            self.flush()


def _report_job(prewarm_run: str, task_id: str, event: str, at: dt.datetime,
                announce: Optional[Callable[[PrewarmClient, PrewarmSettings, Budget], None]]
                ) -> Callable[[PrewarmClient, PrewarmSettings, Budget], None]:
    def job(client: PrewarmClient, settings: PrewarmSettings, budget: Budget) -> None:
        try:
            client.report(prewarm_run, task_id, event, event_time=at, view=REPORT_VIEW,
                          timeout=budget.next_call())
        except NotFoundError:
            if announce is None:
                raise
            # The scheduler's announcement did not arrive (no DAG there, or an event racing
            # it): announce from here and report again, within the same budget.
            announce(client, settings, budget)
            client.report(prewarm_run, task_id, event, event_time=at, view=REPORT_VIEW,
                          timeout=budget.next_call())

    return job


def _copy_run(dag_run: Any, with_next: bool) -> RunInfo:
    """What the DAG-run hooks need, copied from objects already in memory: the run's columns the
    scheduler loaded, the DAG it set on `dag_run.dag`, and the DAG's timetable. Never a lazy load,
    a relationship or a query."""
    dag_id, run_id = str(dag_run.dag_id), str(dag_run.run_id)
    start = dags.aware(_loaded(dag_run, "start_date")) or _now()
    dag = _loaded(dag_run, "dag")
    tasks = dags.dag_shape(dag) if dag is not None else None
    upcoming = None
    if with_next and dag is not None:
        try:
            upcoming = dags.next_scheduled_run(dag, dag_run)
        except Exception as err:
            log.debug("prewarm: no next run of %s: %s", dag_id, err)
    return RunInfo(dag_id, run_id, start, tasks, upcoming)


def _loaded(obj: Any, name: str) -> Any:
    """obj.name if it is already in memory (a plain attribute or a loaded column); None where
    reading it would make SQLAlchemy load it through the caller's session."""
    state = getattr(obj, "_sa_instance_state", None)
    if state is not None and name in getattr(state, "unloaded", ()):
        return None
    return getattr(obj, name, None)


# --------------------------------------------------------------------------------------------
# The process's listener and the hook implementations Airflow calls.

_listener_lock = threading.Lock()
_listener: Optional[PrewarmListener] = None


def get_listener() -> PrewarmListener:
    global _listener
    with _listener_lock:
        if _listener is None:
            _listener = PrewarmListener()
        return _listener


def set_listener(listener: Optional[PrewarmListener]) -> None:
    """Replaces the process's listener (tests, embedding); None resets to the default."""
    global _listener
    with _listener_lock:
        _listener = listener


_hook_log = RateLimitedLog()


def _safe(what: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:  # A listener must never break the scheduler or a task.
        _hook_log(logging.WARNING, what, "prewarm: %s failed", what, exc_info=True)


@hookimpl
def on_starting(component: Any) -> None:
    _safe("on_starting", lambda: mark_component(component))


@hookimpl
def on_dag_run_running(dag_run: Any, msg: str, session: Any = None) -> None:
    _safe("on_dag_run_running", lambda: get_listener().dag_run_running(dag_run))


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str, session: Any = None) -> None:
    _safe("on_dag_run_success", lambda: get_listener().dag_run_finished(dag_run))


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str, session: Any = None) -> None:
    _safe("on_dag_run_failed", lambda: get_listener().dag_run_finished(dag_run))


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any, session: Any = None) -> None:
    _safe("on_task_instance_running", lambda: get_listener().task_event(task_instance, "running"))


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any, session: Any = None) -> None:
    _safe("on_task_instance_success", lambda: get_listener().task_event(task_instance, "success"))


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any = None,
                            session: Any = None) -> None:
    _safe("on_task_instance_failed",
          lambda: get_listener().task_event(task_instance, "failed", error))


@hookimpl
def on_task_instance_skipped(previous_state: Any, task_instance: Any) -> None:
    _safe("on_task_instance_skipped", lambda: get_listener().task_event(task_instance, "skipped"))


@hookimpl
def before_stopping(component: Any) -> None:
    # Bounded in every process; in a long-lived one (scheduler, triggerer) this is its shutdown.
    _safe("before_stopping", lambda: get_listener().flush())
