"""PrewarmClient: the prewarm.v1 API over gRPC, with Python values in and typed errors out.

    from prewarm_client import PrewarmClient

    with PrewarmClient("127.0.0.1:50051", timeout=2.0) as client:
        client.register_service("svc-b", warmup_url="http://svc-b.default.svc.cluster.local/warmup",
                                keep_alive=90)
        plan = client.prewarm("run-1", "my_dag", [
            {"task_id": "extract", "service": "svc-a"},
            {"task_id": "train", "service": "svc-b", "upstream": ["extract"]},
        ])
        client.report("run-1", "extract", "started")

Every call has a deadline (the client's `timeout`, or the call's), and a failed call raises a
PrewarmError subclass (errors.py) that keeps the server's message. Calls answered UNAVAILABLE
(prewarmd unreachable, or a standby during a failover) are retried with exponential backoff and
jitter within that deadline (retry.py; `retry=NO_RETRY` turns it off). Responses are the generated
protobuf messages (documented in proto/prewarm/v1/prewarm.proto); convert.py turns their times
into datetimes and seconds. Thread-safe: one client (one channel) can serve many threads.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import random
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Union

import grpc

from prewarm_client import convert
from prewarm_client._stubs import pb2, pb2_grpc
from prewarm_client.errors import from_rpc_error
from prewarm_client.retry import DEFAULT_RETRY, NO_RETRY, RetryPolicy

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT_SECONDS = 5.0
# A retry is not started with less of the deadline left than this.
MIN_ATTEMPT_SECONDS = 0.01

EVENT_TYPES: dict[str, int] = {
    "started": pb2.TASK_EVENT_TYPE_STARTED,
    "service_invoked": pb2.TASK_EVENT_TYPE_SERVICE_INVOKED,
    "finished": pb2.TASK_EVENT_TYPE_FINISHED,
    "failed": pb2.TASK_EVENT_TYPE_FAILED,
    "skipped": pb2.TASK_EVENT_TYPE_SKIPPED,
}
# What a report's answer carries (ReportTimingRequest.view): "full", the default, the re-planned
# tasks' plans; "summary" only their count, replan_count and run_finished, for callers that do not
# read the plans (cheaper for the server and the caller).
REPORT_VIEWS: dict[str, int] = {
    "full": pb2.REPORT_TIMING_VIEW_FULL,
    "summary": pb2.REPORT_TIMING_VIEW_SUMMARY,
}
WARMUP_MODES: dict[str, int] = {
    "managed": pb2.WARMUP_MODE_MANAGED,
    "delegated": pb2.WARMUP_MODE_DELEGATED,
}

Pem = Union[bytes, str, Path]
EventType = Union[str, int]
ReportView = Union[str, int]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One task of a DAG: its id, the service it calls ("" for none), its upstream task ids and,
    optionally, how long it usually runs (seconds or a timedelta; see Task.expected_duration)."""

    task_id: str
    service: str = ""
    upstream: Sequence[str] = ()
    expected_duration: Optional[convert.Span] = None


TaskLike = Union[TaskSpec, Mapping[str, Any], Any]  # Any: a prewarm.v1.Task message
TASK_KEYS = frozenset({"task_id", "service", "upstream", "upstream_task_ids", "expected_duration"})


def expected_duration(task_id: str, value: convert.Span) -> Any:
    """Task.expected_duration from seconds or a timedelta: TypeError for anything else (bools
    too), ValueError unless > 0 and finite. The server's upper bound (7 days) is its own
    INVALID_ARGUMENT."""
    try:
        seconds = convert.span_seconds(value)
    except TypeError:
        raise TypeError(f"task {task_id!r}: expected_duration must be seconds or a timedelta, "
                        f"got {type(value).__name__} {value!r}") from None
    except ValueError:
        raise ValueError(f"task {task_id!r}: expected_duration must be finite, "
                         f"got {value!r}") from None
    if seconds <= 0:
        raise ValueError(f"task {task_id!r}: expected_duration must be > 0 seconds, got {value!r}")
    return convert.duration(seconds)


def task_proto(task: TaskLike) -> Any:
    """A prewarm.v1.Task from a TaskSpec, a dict {"task_id", "service", "upstream" (or
    "upstream_task_ids"), "expected_duration"}, or a Task message. An expected_duration of None
    means no hint."""
    if isinstance(task, pb2.Task):
        return task
    if isinstance(task, TaskSpec):
        message = pb2.Task(task_id=task.task_id, service=task.service or "",
                           upstream_task_ids=list(task.upstream))
        hint = task.expected_duration
    elif isinstance(task, Mapping):
        unknown = set(task) - TASK_KEYS
        if unknown:
            raise ValueError(f"task {task.get('task_id')!r}: unknown keys {sorted(unknown)}")
        if "task_id" not in task:
            raise ValueError(f"task {dict(task)!r} has no 'task_id'")
        upstream = task.get("upstream", task.get("upstream_task_ids")) or ()
        if isinstance(upstream, str):
            raise ValueError(f"task {task['task_id']!r}: 'upstream' must be a list of task ids, "
                             f"not the string {upstream!r}")
        message = pb2.Task(task_id=str(task["task_id"]), service=str(task.get("service") or ""),
                           upstream_task_ids=[str(u) for u in upstream])
        hint = task.get("expected_duration")
    else:
        raise TypeError(
            f"expected a TaskSpec, a dict or a prewarm.v1.Task, got {type(task).__name__}")
    if hint is not None:
        message.expected_duration.CopyFrom(expected_duration(message.task_id, hint))
    return message


def _enum_value(value: Union[str, int], names: Mapping[str, int], prefix: str, what: str) -> int:
    """An enum value given as itself or by name (any case, with or without `prefix`);
    ValueError naming `what` and the known names otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    key = str(value).lower().removeprefix(prefix)
    try:
        return names[key]
    except KeyError:
        raise ValueError(f"unknown {what} {value!r}; one of {sorted(names)}") from None


def event_type(event: EventType) -> int:
    """TASK_EVENT_TYPE_* from a name ("started", "SERVICE_INVOKED", ...) or the enum value."""
    return _enum_value(event, EVENT_TYPES, "task_event_type_", "task event")


def report_view(view: ReportView) -> int:
    """REPORT_TIMING_VIEW_* from a name ("full", "summary", "REPORT_TIMING_VIEW_SUMMARY") or the
    enum value."""
    return _enum_value(view, REPORT_VIEWS, "report_timing_view_", "report view")


def _container_concurrency(value: Any) -> int:
    """Service.container_concurrency from an int >= 0 (0: unlimited; 1 for Lambda or Knative
    containerConcurrency 1). TypeError for a non-integer (bools too), ValueError for a negative
    one; the server's upper bound (10000) is its own INVALID_ARGUMENT."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"container_concurrency must be an int >= 0 (0: unlimited), "
                        f"got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"container_concurrency must be >= 0 (0: unlimited), got {value!r}")
    return int(value)


def _pem(value: Optional[Pem]) -> Optional[bytes]:
    """PEM bytes from bytes, PEM text or a file path."""
    if value is None or isinstance(value, bytes):
        return value
    text = str(value)
    if text.lstrip().startswith("-----BEGIN"):
        return text.encode()
    return Path(os.path.expanduser(text)).read_bytes()


class WarmupStream:
    """Iterator over WatchWarmupsResponse messages; cancel() ends it (iteration then stops)."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._cancelled = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._call)
        except grpc.RpcError as err:
            if self._cancelled and err.code() == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise from_rpc_error(err, "WatchWarmups") from None

    def wait_subscribed(self) -> None:
        """Blocks until the server has registered this stream (its response headers arrived):
        every instruction published from then on reaches it. Returns at once if the stream has
        ended; iterating then raises its error. Bound the wait with watch_warmups(timeout=...)."""
        self._call.initial_metadata()

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()

    def __enter__(self) -> "WarmupStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class PrewarmClient:
    """A client of one prewarmd.

    target: "host:port" (or any gRPC target, e.g. "dns:///prewarm.svc:50051").
    tls: use TLS; root_certificates (PEM bytes, PEM text or a file path) verifies the server
        (system roots when None); private_key + certificate_chain for mTLS; tls_server_name
        overrides the name checked against the certificate.
    token: sent as `authorization: Bearer <token>` on every call.
    timeout: default deadline of every unary call, in seconds, retries included.
    wait_for_ready: queue calls while the channel connects instead of failing fast with
        UNAVAILABLE (still bounded by the deadline).
    retry: how calls answered UNAVAILABLE are retried within their deadline (RetryPolicy;
        NO_RETRY or None: never).
    attempt_timeout: at most this many seconds per attempt (default: all of the call's deadline
        that is left), so that one attempt on a server that does not answer cannot use up the
        time of the retries.
    retry_random: the jitter's random source (seed it for reproducible backoffs).
    """

    def __init__(self, target: str = DEFAULT_TARGET, *, tls: bool = False,
                 root_certificates: Optional[Pem] = None, private_key: Optional[Pem] = None,
                 certificate_chain: Optional[Pem] = None, tls_server_name: Optional[str] = None,
                 token: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 wait_for_ready: bool = False,
                 options: Sequence[tuple[str, Any]] = (),
                 retry: Optional[RetryPolicy] = DEFAULT_RETRY,
                 attempt_timeout: Optional[float] = None,
                 retry_random: Optional[random.Random] = None) -> None:
        if not target:
            raise ValueError("target is empty")
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if attempt_timeout is not None and not attempt_timeout > 0:
            raise ValueError(f"attempt_timeout must be > 0 seconds, got {attempt_timeout!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, got {type(retry).__name__}")
        self.target = target
        self.timeout = float(timeout)
        self.wait_for_ready = wait_for_ready
        self.retry = retry or NO_RETRY
        self.attempt_timeout = None if attempt_timeout is None else float(attempt_timeout)
        self._random = retry_random or random.Random()
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ())
        channel_options = list(options)
        if tls_server_name:
            channel_options.append(("grpc.ssl_target_name_override", tls_server_name))
        if tls or root_certificates is not None or certificate_chain is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_pem(root_certificates), private_key=_pem(private_key),
                certificate_chain=_pem(certificate_chain))
            self._channel = grpc.secure_channel(target, credentials, options=channel_options)
        else:
            self._channel = grpc.insecure_channel(target, options=channel_options)
        self._stub = pb2_grpc.PrewarmServiceStub(self._channel)

    # Lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "PrewarmClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PrewarmClient({self.target!r}, timeout={self.timeout:g})"

    # Calls --------------------------------------------------------------------------------

    def _deadline(self, timeout: Optional[float]) -> float:
        value = self.timeout if timeout is None else float(timeout)
        if value <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        return value

    def _call(self, method: str, request: Any, timeout: Optional[float]) -> Any:
        """One unary call, retried while it is answered UNAVAILABLE (self.retry), every attempt
        within the call's deadline."""
        rpc = getattr(self._stub, method)
        total = self._deadline(timeout)
        deadline = time.monotonic() + total
        attempt = 1
        while True:
            remaining = deadline - time.monotonic()
            if self.attempt_timeout is not None:
                remaining = min(remaining, self.attempt_timeout)
            try:
                return rpc(request, timeout=max(remaining, MIN_ATTEMPT_SECONDS),
                           metadata=self._metadata, wait_for_ready=self.wait_for_ready)
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or \
                        attempt >= self.retry.max_attempts:
                    raise from_rpc_error(err, method, attempts=attempt) from None
                pause = self.retry.backoff(attempt, self._random)
                if deadline - time.monotonic() - pause < MIN_ATTEMPT_SECONDS:
                    raise from_rpc_error(err, method, attempts=attempt) from None
            time.sleep(pause)
            attempt += 1

    def register_service(self, service: Union[str, Mapping[str, Any], Any], *,
                         warmup_url: str = "", warmup_method: str = "",
                         warmup_timeout: Optional[convert.Span] = None,
                         keep_alive: Optional[convert.Span] = None,
                         cold_start_prior: Optional[convert.Span] = None,
                         mode: Union[str, int, None] = None,
                         warm_latency: Optional[convert.Span] = None,
                         container_concurrency: Optional[int] = None,
                         timeout: Optional[float] = None) -> Any:
        """Creates or replaces a warm-up target; returns RegisterServiceResponse (the stored
        service with defaults filled in, and `replaced`).

        `service` is a name (with the fields as keywords), a dict of the same fields, or a
        prewarm.v1.Service. Spans are seconds or timedeltas; mode is "managed" or "delegated".
        container_concurrency is how many requests one container serves at once: 0 (the
        server's default when None) is unlimited, 1 for Lambda or Knative containerConcurrency 1;
        a non-integer raises TypeError, a negative one ValueError, more than 10000 the server's
        InvalidArgumentError.
        """
        if isinstance(service, pb2.Service):
            message = service
        else:
            fields: dict[str, Any] = {"warmup_url": warmup_url, "warmup_method": warmup_method,
                                      "warmup_timeout": warmup_timeout, "keep_alive": keep_alive,
                                      "cold_start_prior": cold_start_prior, "mode": mode,
                                      "warm_latency": warm_latency,
                                      "container_concurrency": container_concurrency}
            if isinstance(service, Mapping):
                unknown = set(service) - set(fields) - {"name"}
                if unknown:
                    raise ValueError(f"service: unknown keys {sorted(unknown)}")
                fields.update({k: v for k, v in service.items() if k != "name"})
                name = service.get("name", "")
            else:
                name = service
            message = pb2.Service(name=str(name), warmup_url=fields["warmup_url"] or "",
                                  warmup_method=fields["warmup_method"] or "")
            for key in ("warmup_timeout", "keep_alive", "cold_start_prior", "warm_latency"):
                if fields[key] is not None:
                    getattr(message, key).CopyFrom(convert.duration(fields[key]))
            if fields["mode"] is not None:
                m = fields["mode"]
                if isinstance(m, str):
                    key = m.lower().removeprefix("warmup_mode_")
                    if key not in WARMUP_MODES:
                        raise ValueError(f"unknown mode {m!r}; one of {sorted(WARMUP_MODES)}")
                    m = WARMUP_MODES[key]
                message.mode = m
            if fields["container_concurrency"] is not None:
                message.container_concurrency = _container_concurrency(
                    fields["container_concurrency"])
        return self._call("RegisterService", pb2.RegisterServiceRequest(service=message), timeout)

    def list_services(self, *, timeout: Optional[float] = None) -> list[Any]:
        """Every registered service (prewarm.v1.Service), ordered by name."""
        return list(self._call("ListServices", pb2.ListServicesRequest(), timeout).services)

    def prewarm(self, run_id: str, workflow_id: str, tasks: Iterable[TaskLike], *,
                start_time: Optional[convert.Instant] = None,
                delay_cost_ratio: Optional[float] = None, dry_run: bool = False,
                timeout: Optional[float] = None) -> Any:
        """Announces a run (its DAG and when its roots start: now when None, or a future time
        for a scheduled run) and returns its plan (prewarm.v1.RunPlan). ALREADY_EXISTS when the
        run id is active (also when a retried attempt finds the run that an earlier attempt,
        whose answer was lost, created).

        A task may carry "expected_duration" (seconds or a timedelta, > 0): how long it usually
        runs, which the server plans with until it has learned the task's own durations
        (Task.expected_duration). Example:

            client.prewarm("run-1", "etl", [
                {"task_id": "extract", "service": "svc-a", "expected_duration": 42.0},
                TaskSpec("load", "svc-b", upstream=["extract"],
                         expected_duration=dt.timedelta(minutes=3)),
            ])
        """
        request = pb2.PrewarmRequest(run_id=run_id, workflow_id=workflow_id,
                                     tasks=[task_proto(t) for t in tasks], dry_run=dry_run)
        if start_time is not None:
            request.start_time.CopyFrom(convert.timestamp(start_time))
        if delay_cost_ratio is not None:
            request.delay_cost_ratio = float(delay_cost_ratio)
        return self._call("Prewarm", request, timeout).plan

    def report(self, run_id: str, task_id: str, event: EventType, *,
               event_time: Optional[convert.Instant] = None, cold: Optional[bool] = None,
               cold_start: Optional[convert.Span] = None,
               view: Optional[ReportView] = None,
               timeout: Optional[float] = None) -> Any:
        """Reports a task event ("started", "service_invoked", "finished", "failed", "skipped");
        returns ReportTimingResponse (only the re-planned tasks; get_plan has the whole plan).
        `cold` / `cold_start` say whether the task's call to its service was cold and what the
        cold start cost, when the caller knows.

        `view` says what the answer carries: "full" (the server's default when None: the
        re-planned tasks' plans in replanned_tasks) or "summary" (no plans; replanned_task_count,
        replan_count and run_finished only), which costs the server and this process less: use it
        when the plans are not read. Either way the event is stored and re-planned the same."""
        request = pb2.ReportTimingRequest(run_id=run_id, task_id=task_id,
                                          event=event_type(event))
        if view is not None:
            request.view = report_view(view)
        if event_time is not None:
            request.event_time.CopyFrom(convert.timestamp(event_time))
        if cold is not None:
            request.cold = bool(cold)
        if cold_start is not None:
            request.cold_start.CopyFrom(convert.duration(cold_start))
        return self._call("ReportTiming", request, timeout)

    def get_plan(self, run_id: str, *, timeout: Optional[float] = None) -> Any:
        """The run's current plan (prewarm.v1.RunPlan) with what already happened."""
        return self._call("GetPlan", pb2.GetPlanRequest(run_id=run_id), timeout).plan

    def cancel_run(self, run_id: str, *, timeout: Optional[float] = None) -> int:
        """Cancels the run's pending warm-ups and retires it; returns how many were cancelled."""
        return self._call("CancelRun", pb2.CancelRunRequest(run_id=run_id),
                          timeout).cancelled_warmups

    def service_stats(self, service: str, *, timeout: Optional[float] = None) -> Any:
        """What the server learned about a service (GetServiceStatsResponse)."""
        return self._call("GetServiceStats", pb2.GetServiceStatsRequest(service=service),
                          timeout)

    def watch_warmups(self, services: Sequence[str] = (), *,
                      timeout: Optional[float] = None) -> WarmupStream:
        """Streams warm-up instructions of delegated services (WatchWarmupsResponse). A stream
        is long-lived: it has no deadline unless `timeout` is given; cancel() ends it."""
        request = pb2.WatchWarmupsRequest(services=list(services))
        try:
            call = self._stub.WatchWarmups(request, timeout=timeout, metadata=self._metadata,
                                           wait_for_ready=self.wait_for_ready)
        except grpc.RpcError as err:  # pragma: no cover - errors surface on iteration
            raise from_rpc_error(err, "WatchWarmups") from None
        return WarmupStream(call)

    def report_warmup(self, warmup_id: str, success: bool, *,
                      latency: Optional[convert.Span] = None, cold: Optional[bool] = None,
                      error_message: str = "", timeout: Optional[float] = None) -> None:
        """Reports the result of a delegated warm-up received from watch_warmups()."""
        request = pb2.ReportWarmupRequest(warmup_id=warmup_id, success=success,
                                          error_message=error_message)
        if latency is not None:
            request.latency.CopyFrom(convert.duration(latency))
        if cold is not None:
            request.cold = bool(cold)
        self._call("ReportWarmup", request, timeout)


__all__ = ["PrewarmClient", "TaskSpec", "WarmupStream", "task_proto", "event_type",
           "expected_duration", "EVENT_TYPES", "WARMUP_MODES", "DEFAULT_TARGET",
           "DEFAULT_TIMEOUT_SECONDS", "RetryPolicy", "DEFAULT_RETRY", "NO_RETRY"]
