"""The Airflow listener: announces DAG runs to prewarmd and reports task events. No DAG change.

Registered by the `prewarm` plugin (plugin.py) as a module, like every Airflow listener. Hooks
(pluggy, project "airflow"), one implementation for Airflow 2.7+ and 3.x:

| hook | 2.x call | 3.x call | sends |
|---|---|---|---|
| on_dag_run_running | (dag_run, msg[, session]) | (dag_run, msg) | Prewarm: DAG structure, services, run start; and the DAG's next scheduled run |
| on_dag_run_success / _failed | same | same | SKIPPED for tasks that never ran; CancelRun after a grace period |
| on_task_instance_running | (previous_state, task_instance, session) | (previous_state, task_instance: RuntimeTaskInstance) | ReportTiming STARTED |
| on_task_instance_success | same | same | FINISHED (SKIPPED when the task skipped itself) |
| on_task_instance_failed | (..., [error,] session) | (previous_state, task_instance, error) | FAILED (not for up_for_retry) |
| on_task_instance_skipped | - | (previous_state, task_instance) | SKIPPED |
| before_stopping | (component) | (component) | flushes pending reports |

Pluggy passes an implementation only the arguments it names without defaults, so `session` and
`error` take defaults here: the same functions validate against both specs and can be called
directly with either signature.

Never fails or slows a task: every hook catches everything and logs; RPCs run on a background
thread with a bounded queue (reporter.py), each with the connection's short deadline; a task's
last hook waits for its reports at most `flush_timeout` seconds (Airflow ends the task process
right after it). With prewarmd down, hooks return at once (connection refused) or after one
deadline, then the reporter backs off.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any, Callable, Optional

from prewarm_client.airflow import dags
from prewarm_client.airflow._compat import hookimpl
from prewarm_client.airflow.reporter import RateLimitedLog, Reporter, shared_reporter
from prewarm_client.airflow.settings import PrewarmSettings, configured_conn_id
from prewarm_client.client import PrewarmClient
from prewarm_client.errors import AlreadyExistsError, NotFoundError

log = logging.getLogger("prewarm_client.airflow")

SETTINGS_TTL_SECONDS = 300.0
RETRY_SETTINGS_SECONDS = 60.0
REGISTERED_TTL_SECONDS = 30.0
MAX_FUTURE_START = dt.timedelta(days=7)  # prewarmd's default limit on a run's start time
# Task states at a DAG run's end that mean "did not run" (reported as SKIPPED).
NOT_RUN_STATES = frozenset({"skipped", "upstream_failed", "removed", "none", ""})
TERMINAL_STATES = frozenset({"success", "failed"})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class PrewarmListener:
    """The listener's state in one process: settings, background reporter, caches. Thread-safe.

    `settings` (fixed settings) and `client_factory` are for tests and embedding; by default the
    settings come from the connection named by [prewarm] conn_id.
    """

    def __init__(self, conn_id: Optional[str] = None, settings: Optional[PrewarmSettings] = None,
                 client_factory: Optional[Callable[[PrewarmSettings], PrewarmClient]] = None
                 ) -> None:
        self.conn_id = conn_id or configured_conn_id()
        self._fixed_settings = settings
        self._settings: Optional[PrewarmSettings] = settings
        self._settings_at = time.monotonic()
        self._settings_failed_at: Optional[float] = None
        self._client_factory = client_factory or (
            lambda s: PrewarmClient(s.target, **s.client_kwargs()))
        self._lock = threading.Lock()
        self._registered: tuple[float, Optional[set[str]]] = (-1e9, None)
        self.rate_limited = RateLimitedLog()

    # Settings and reporter ----------------------------------------------------------------

    def settings(self) -> Optional[PrewarmSettings]:
        """The current settings; None (listener inactive) while the connection cannot be read."""
        if self._fixed_settings is not None:
            return self._fixed_settings
        now = time.monotonic()
        with self._lock:
            if self._settings is not None and now - self._settings_at < SETTINGS_TTL_SECONDS:
                return self._settings
            if (self._settings is None and self._settings_failed_at is not None
                    and now - self._settings_failed_at < RETRY_SETTINGS_SECONDS):
                return None
        try:
            from prewarm_client.airflow.hooks import PrewarmHook  # noqa: PLC0415 - cycle
            conn = PrewarmHook.get_connection(self.conn_id)
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

    def reporter(self, settings: PrewarmSettings) -> Reporter:
        return shared_reporter(self.conn_id, lambda: self._client_factory(settings),
                               settings.queue_size)

    def _active(self) -> Optional[PrewarmSettings]:
        settings = self.settings()
        if settings is None or not settings.enabled:
            return None
        return settings

    def flush(self, timeout: Optional[float] = None, run_delayed: bool = False) -> bool:
        """Waits (bounded) for the queued reports; True when all were sent or dropped."""
        settings = self.settings()
        if settings is None:
            return True
        return self.reporter(settings).flush(
            settings.flush_timeout if timeout is None else timeout, run_delayed)

    def _registered_services(self, client: PrewarmClient) -> Optional[set[str]]:
        """Registered service names (cached), for naming-rule candidates; runs on the reporter
        thread."""
        at, names = self._registered
        if names is not None and time.monotonic() - at < REGISTERED_TTL_SECONDS:
            return names
        names = {s.name for s in client.list_services()}
        self._registered = (time.monotonic(), names)
        return names

    # DAG runs -----------------------------------------------------------------------------

    def dag_run_running(self, dag_run: Any) -> None:
        settings = self._active()
        if settings is None:
            return
        dag_id, run_id = str(dag_run.dag_id), str(dag_run.run_id)
        dag = dags.dag_of(dag_run)
        if dag is None:
            log.info("prewarm: DAG of run %s/%s is not loaded; its tasks will announce it",
                     dag_id, run_id)
            return
        nodes = dags.dag_structure(dag_id, dag, settings)
        start = dags.aware(getattr(dag_run, "start_date", None)) or _now()
        reporter = self.reporter(settings)
        reporter.submit(self._announce_job(settings, dag_id, run_id, nodes, start),
                        f"Prewarm {dag_id}/{run_id}")
        if settings.warm_next_run:
            try:
                upcoming = dags.next_scheduled_run(dag_run)
            except Exception as err:
                upcoming = None
                log.debug("prewarm: no next run of %s: %s", dag_id, err)
            if upcoming is not None and _now() < upcoming.start < _now() + MAX_FUTURE_START:
                reporter.submit(
                    self._announce_job(settings, dag_id, upcoming.run_id, nodes, upcoming.start),
                    f"Prewarm next run {dag_id}/{upcoming.run_id}")

    def _announce_job(self, settings: PrewarmSettings, dag_id: str, run_id: str,
                      nodes: list[dags.TaskNode], start: dt.datetime
                      ) -> Callable[[PrewarmClient], None]:
        prewarm_run = dags.server_run_id(dag_id, run_id)

        def job(client: PrewarmClient) -> None:
            registered = None
            if settings.pattern_requires_registered and any(n.candidate for n in nodes):
                registered = self._registered_services(client)
            try:
                client.prewarm(prewarm_run, dag_id, dags.resolve(nodes, settings, registered),
                               start_time=start, delay_cost_ratio=settings.delay_cost_ratio)
            except AlreadyExistsError:
                # Announced already: ahead of its start as the previous run's "next run", or by
                # one of its tasks.
                log.debug("prewarm: run %s already announced", prewarm_run)

        return job

    def dag_run_finished(self, dag_run: Any) -> None:
        settings = self._active()
        if settings is None:
            return
        dag_id, run_id = str(dag_run.dag_id), str(dag_run.run_id)
        prewarm_run = dags.server_run_id(dag_id, run_id)
        reporter = self.reporter(settings)
        get_tis = getattr(dag_run, "get_task_instances", None)
        tis = []
        if callable(get_tis):
            try:
                tis = list(get_tis())
            except Exception as err:
                log.debug("prewarm: cannot list the task instances of %s: %s", prewarm_run, err)
        for ti in tis:
            map_index = getattr(ti, "map_index", -1)
            if map_index is not None and map_index > 0:
                continue
            if dags.state_name(getattr(ti, "state", None)) in NOT_RUN_STATES:
                at = dags.aware(getattr(ti, "end_date", None)) or _now()
                reporter.submit(self._report_job(prewarm_run, str(ti.task_id), "skipped", at,
                                                 quiet_not_found=True),
                                f"SKIPPED {prewarm_run} {ti.task_id}")

        def cancel(client: PrewarmClient) -> None:
            try:
                client.cancel_run(prewarm_run)
            except NotFoundError:
                pass  # Every task reported: prewarmd retired the run already.

        # Later: the tasks' own last reports (sent from their processes) may still be on the way.
        reporter.submit(cancel, f"CancelRun {prewarm_run}", delay=settings.cancel_grace)

    # Task instances -----------------------------------------------------------------------

    def _report_job(self, prewarm_run: str, task_id: str, event: str, at: dt.datetime,
                    quiet_not_found: bool = False,
                    announce: Optional[Callable[[PrewarmClient], None]] = None
                    ) -> Callable[[PrewarmClient], None]:
        def job(client: PrewarmClient) -> None:
            try:
                client.report(prewarm_run, task_id, event, event_time=at)
            except NotFoundError:
                if announce is not None:
                    # The scheduler's announcement did not arrive (no DAG there, or an event
                    # racing it): announce from here and report again.
                    announce(client)
                    client.report(prewarm_run, task_id, event, event_time=at)
                elif not quiet_not_found:
                    raise

        return job

    def task_event(self, ti: Any, kind: str) -> None:
        """kind: running, success, failed or skipped."""
        settings = self._active()
        if settings is None:
            return
        map_index = getattr(ti, "map_index", -1)
        if map_index is not None and map_index > 0:
            return  # One prewarm task per Airflow task: its first mapped instance speaks for it.
        state = dags.state_name(getattr(ti, "state", None))
        dag_id, run_id, task_id = str(ti.dag_id), str(ti.run_id), str(ti.task_id)
        prewarm_run = dags.server_run_id(dag_id, run_id)
        announce = None
        if kind == "running":
            event = "started"
            at = dags.aware(getattr(ti, "start_date", None)) or _now()
            task = getattr(ti, "task", None)
            dag = getattr(task, "dag", None) if task is not None else None
            if dag is not None:
                announce = self._lazy_announce(settings, dag_id, run_id, dag, at)
        elif kind == "success":
            event = "skipped" if state == "skipped" else "finished"
        elif kind == "failed":
            if state == "up_for_retry":
                # It runs again and its next try reports; this process still ends now.
                self.reporter(settings).flush(settings.flush_timeout)
                return
            event = "failed"
        elif kind == "skipped":
            event = "skipped"
        else:
            raise ValueError(f"unknown task event kind {kind!r}")
        if kind != "running":
            at = dags.aware(getattr(ti, "end_date", None)) or _now()
        reporter = self.reporter(settings)
        reporter.submit(self._report_job(prewarm_run, task_id, event, at, announce=announce),
                        f"{event.upper()} {prewarm_run} {task_id}")
        if kind != "running":
            # The task process ends right after this hook: send what is queued, bounded.
            reporter.flush(settings.flush_timeout)

    def _lazy_announce(self, settings: PrewarmSettings, dag_id: str, run_id: str, dag: Any,
                       start: dt.datetime) -> Callable[[PrewarmClient], None]:
        def announce(client: PrewarmClient) -> None:
            nodes = dags.dag_structure(dag_id, dag, settings)  # only when needed: O(tasks)
            self._announce_job(settings, dag_id, run_id, nodes, start)(client)

        return announce


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


def _safe(what: str, fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # A listener must never break the scheduler or a task.
        log.warning("prewarm: %s failed", what, exc_info=True)


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
    _safe("on_task_instance_failed", lambda: get_listener().task_event(task_instance, "failed"))


@hookimpl
def on_task_instance_skipped(previous_state: Any, task_instance: Any) -> None:
    _safe("on_task_instance_skipped", lambda: get_listener().task_event(task_instance, "skipped"))


@hookimpl
def before_stopping(component: Any) -> None:
    _safe("before_stopping", lambda: get_listener().flush())
