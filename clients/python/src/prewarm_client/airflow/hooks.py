"""PrewarmHook: the `prewarm` connection type, a PrewarmClient from it, and measured service calls.

    hook = PrewarmHook()                       # connection prewarm_default
    client = hook.get_conn()                   # prewarm_client.PrewarmClient
    result = hook.call_service("http://svc-b.default.svc.cluster.local/train",
                               dag_id="ml", run_id=context["run_id"], task_id="train")
    result.cold, result.cold_start, result.elapsed

call_service() makes the HTTP call, measures it, tells a cold call from a warm one and reports
SERVICE_INVOKED (with `cold` and `cold_start`) for the task, in the background by default.
Cold or warm, first source that knows:
1. `X-Gateway-Cold-Start: true|false` (Knative-activator-like gateways, deploy/local/gateway.py),
   with `X-Gateway-Wait-Seconds` as the cold start;
2. `X-Process-Cold: true|false` (the example service: its first request since the process started);
3. `cold_threshold` seconds given by the caller: slower calls are cold;
4. learned (`learn_threshold=True`, default): from prewarmd's statistics of the service, a call
   slower than p90(duration) + p50(cold start)/2 is cold, its cold start the excess over
   p50(duration). Needs a few learned runs; until then `cold` stays unknown and prewarmd judges.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Mapping, Optional

from prewarm_client import convert
from prewarm_client.airflow import _compat, dags
from prewarm_client.airflow.reporter import Reporter, shared_reporter
from prewarm_client.airflow.settings import DEFAULT_CONN_ID, PrewarmSettings
from prewarm_client.client import PrewarmClient
from prewarm_client.errors import AlreadyExistsError

GATEWAY_COLD = "x-gateway-cold-start"
GATEWAY_WAIT = "x-gateway-wait-seconds"
PROCESS_COLD = "x-process-cold"


@dataclasses.dataclass
class ServiceCallResult:
    """A measured call of a service."""

    url: str
    status: int
    body: bytes
    headers: dict[str, str]      # lower-cased names
    started: float               # unix seconds when the request was sent
    elapsed: float               # seconds until the whole response was read
    cold: Optional[bool]         # None: unknown
    cold_start: Optional[float]  # seconds, when known
    cold_source: str             # which rule decided (see the module docstring)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self) -> str:
        return self.body.decode(errors="replace")


def classify(headers: Mapping[str, str], elapsed: float, cold_threshold: Optional[float] = None,
             learned: Optional[tuple[float, float]] = None
             ) -> tuple[Optional[bool], Optional[float], str]:
    """(cold, cold_start, source) of a call from its response headers (lower-cased names) and
    duration. `learned` is (threshold, warm_median) from the service's statistics."""
    gateway = headers.get(GATEWAY_COLD, "").strip().lower()
    if gateway in ("true", "false"):
        cold = gateway == "true"
        wait: Optional[float] = None
        if cold:
            try:
                wait = float(headers.get(GATEWAY_WAIT, "") or "nan")
            except ValueError:
                wait = None
            if wait is not None and not (wait >= 0):
                wait = None
        return cold, wait, "gateway header"
    process = headers.get(PROCESS_COLD, "").strip().lower()
    if process in ("true", "false"):
        return process == "true", None, "service header"
    if cold_threshold is not None:
        cold = elapsed > cold_threshold
        return cold, None, "threshold"
    if learned is not None:
        threshold, warm_median = learned
        cold = elapsed > threshold
        return cold, (max(0.0, elapsed - warm_median) if cold else None), "learned"
    return None, None, "unknown"


class PrewarmHook(_compat.BaseHook):
    """Talks to prewarmd through the `prewarm` connection (see settings.py for its fields)."""

    conn_name_attr = "prewarm_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "prewarm"
    hook_name = "Prewarm"

    def __init__(self, prewarm_conn_id: str = DEFAULT_CONN_ID, *,
                 timeout: Optional[float] = None) -> None:
        super().__init__()
        self.prewarm_conn_id = prewarm_conn_id
        self._timeout = timeout
        self._settings: Optional[PrewarmSettings] = None
        self._client: Optional[PrewarmClient] = None
        self._lock = threading.Lock()
        self._learned: dict[str, tuple[float, Optional[tuple[float, float]]]] = {}

    # Connection form ----------------------------------------------------------------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """How Airflow's connection form shows the prewarm fields."""
        return {
            "hidden_fields": ["schema", "login"],
            "relabeling": {"host": "prewarmd host", "port": "gRPC port",
                           "password": "Bearer token"},
            "placeholders": {
                "host": "prewarmd.prewarm.svc.cluster.local",
                "port": "50051",
                "password": "optional: the token of prewarmd's --bearer_token_file",
                "extra": '{"tls": false, "timeout": 2, "service_map": {"my_dag.train": "svc-b"}, '
                         '"service_pattern": "{task_id}"}',
            },
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra form fields (stored in the connection's extra) when the web UI's form libraries
        are importable; none otherwise."""
        try:
            from flask_appbuilder.fieldwidgets import BS3TextFieldWidget  # noqa: PLC0415
            from flask_babel import lazy_gettext  # noqa: PLC0415
            from wtforms import BooleanField, StringField  # noqa: PLC0415
        except Exception:
            return {}
        return {
            "tls": BooleanField(lazy_gettext("Use TLS"), default=False),
            "timeout": StringField(lazy_gettext("Call deadline (seconds)"),
                                   widget=BS3TextFieldWidget(), default="2"),
            "service_pattern": StringField(lazy_gettext("Service naming rule"),
                                           widget=BS3TextFieldWidget()),
            "service_map": StringField(lazy_gettext("Task to service map (JSON)"),
                                       widget=BS3TextFieldWidget()),
        }

    # Client -------------------------------------------------------------------------------

    def settings(self) -> PrewarmSettings:
        """The connection's settings (read once)."""
        with self._lock:
            if self._settings is None:
                conn = self.get_connection(self.prewarm_conn_id)
                settings = PrewarmSettings.from_connection(conn)
                if self._timeout is not None:
                    settings = dataclasses.replace(settings, timeout=float(self._timeout))
                self._settings = settings
            return self._settings

    def get_conn(self) -> PrewarmClient:
        """A PrewarmClient for the connection (created once per hook)."""
        settings = self.settings()
        with self._lock:
            if self._client is None:
                self._client = PrewarmClient(settings.target, **settings.client_kwargs())
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's "Test" button: lists the services."""
        try:
            services = self.get_conn().list_services()
        except Exception as err:
            return False, str(err)
        return True, f"prewarmd at {self.settings().target} has {len(services)} services"

    def reporter(self) -> Reporter:
        """The process's background reporter for this connection (shared with the listener)."""
        settings = self.settings()
        return shared_reporter(self.prewarm_conn_id,
                               lambda: PrewarmClient(settings.target, **settings.client_kwargs()),
                               settings.queue_size)

    # Helpers ------------------------------------------------------------------------------

    def prewarm_dag_run(self, dag: Any, run_id: str, start_time: Optional[Any] = None,
                        dag_id: Optional[str] = None,
                        expected_durations: Optional[Mapping[str, convert.Span]] = None) -> Any:
        """Announces an Airflow DAG run to prewarmd now (for example a run you will trigger at
        `start_time`, so that its first tasks are warmed too). Returns the plan, or None when
        the run was already announced. `expected_durations` (task_id -> seconds or timedelta)
        are duration hints (Task.expected_duration); a task id the DAG does not have raises
        ValueError. (The listener reads such hints from Airflow's history itself; this helper
        reads no database, so it can run anywhere.)"""
        settings = self.settings()
        dag_id = dag_id or str(dag.dag_id)
        client = self.get_conn()
        nodes = dags.dag_structure(dag_id, dag, settings)
        hints = dict(expected_durations or {})
        unknown = sorted(set(hints) - {n.task_id for n in nodes})
        if unknown:
            raise ValueError(f"expected_durations: DAG {dag_id!r} has no task {unknown}")
        registered = None
        if any(n.candidate for n in nodes) and settings.pattern_requires_registered:
            registered = {s.name for s in client.list_services()}
        tasks = dags.resolve(nodes, settings, registered)
        for task in tasks:
            if task["task_id"] in hints:
                task["expected_duration"] = hints[task["task_id"]]
        try:
            return client.prewarm(dags.server_run_id(dag_id, run_id), dag_id, tasks,
                                  start_time=start_time,
                                  delay_cost_ratio=settings.delay_cost_ratio)
        except AlreadyExistsError:
            return None

    def _learned_threshold(self, service: str) -> Optional[tuple[float, float]]:
        """(threshold, warm median) for `service` from prewarmd's statistics, cached 60 s."""
        now = time.monotonic()
        cached = self._learned.get(service)
        if cached is not None and now - cached[0] < 60.0:
            return cached[1]
        value: Optional[tuple[float, float]] = None
        try:
            # Short: this runs inside the task, before its result is returned.
            stats = self.get_conn().service_stats(
                service, timeout=min(self.settings().timeout, 0.5))
            if stats.duration.sample_count >= 3 and stats.cold_start.sample_count >= 1:
                p50 = convert.to_seconds(stats.duration.p50)
                p90 = convert.to_seconds(stats.duration.p90)
                cold = convert.to_seconds(stats.cold_start.p50)
                value = (p90 + cold / 2, p50)
        except Exception as err:  # PrewarmError, or no connection: never fail the task
            self.log.info("prewarm: no statistics for service %s: %s", service, err)
        self._learned[service] = (now, value)
        return value

    def call_service(self, url: str, *, dag_id: Optional[str] = None,
                     run_id: Optional[str] = None, task_id: Optional[str] = None,
                     service: Optional[str] = None, method: str = "GET",
                     data: Optional[bytes] = None, headers: Optional[Mapping[str, str]] = None,
                     timeout: float = 300.0, cold_threshold: Optional[float] = None,
                     learn_threshold: bool = True, report: str = "background",
                     raise_for_status: bool = True) -> ServiceCallResult:
        """Calls `url`, measures the call and reports SERVICE_INVOKED for the task (when dag_id,
        run_id and task_id are given). `report`: "background" (default; flushed with the task's
        listener reports), "sync" (bounded by the connection's deadline; errors logged), or
        "none". Raises urllib.error.HTTPError for a non-2xx answer when raise_for_status."""
        if report not in ("background", "sync", "none"):
            raise ValueError(f"report must be 'background', 'sync' or 'none', not {report!r}")
        request = urllib.request.Request(url, data=data, method=method.upper(),
                                         headers=dict(headers or {}))
        started = time.time()
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read()
                status = response.status
                response_headers = {k.lower(): v for k, v in response.getheaders()}
            http_error: Optional[urllib.error.HTTPError] = None
        except urllib.error.HTTPError as err:
            body = err.read() if hasattr(err, "read") else b""
            status = err.code
            response_headers = {k.lower(): v for k, v in (err.headers or {}).items()}
            http_error = err
        # Connection errors (URLError, timeouts) are the task's own failure: they propagate.
        elapsed = time.monotonic() - t0
        learned = None
        if (cold_threshold is None and learn_threshold and service
                and GATEWAY_COLD not in response_headers and PROCESS_COLD not in response_headers):
            learned = self._learned_threshold(service)
        cold, cold_start, source = classify(response_headers, elapsed, cold_threshold, learned)
        result = ServiceCallResult(url, status, body, response_headers, started, elapsed, cold,
                                   cold_start, source)
        self.log.info("prewarm: %s %s -> %d in %.3f s, cold=%s (%s)", method, url, status,
                      elapsed, cold, source)
        if report != "none" and dag_id and run_id and task_id:
            self.report_invocation(dag_id, run_id, task_id, result, mode=report)
        if http_error is not None and raise_for_status:
            raise http_error
        return result

    def report_invocation(self, dag_id: str, run_id: str, task_id: str,
                          result: ServiceCallResult, mode: str = "background") -> None:
        """Reports SERVICE_INVOKED for the task, with cold / cold_start when known. Never
        raises."""
        prewarm_run = dags.server_run_id(dag_id, run_id)

        def job(client: PrewarmClient) -> None:
            # The answer is not read: the summary is enough (see listener.REPORT_VIEW).
            client.report(prewarm_run, task_id, "service_invoked", event_time=result.started,
                          cold=result.cold, cold_start=result.cold_start, view="summary")

        try:
            if mode == "sync":
                job(self.get_conn())
            else:
                self.reporter().submit(job, f"SERVICE_INVOKED {prewarm_run} {task_id}")
        except Exception as err:
            self.log.warning("prewarm: cannot report the call of %s: %s", task_id, err)
