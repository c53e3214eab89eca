"""PrewarmClient against a real prewarmd started by the test: every method, typed errors that keep
the server's message, deadlines, bearer token and TLS."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import support

support.need_stubs()

import prewarm_client  # noqa: E402
from prewarm_client import (AlreadyExistsError, DeadlineExceededError,  # noqa: E402
                            FailedPreconditionError, InvalidArgumentError, NotFoundError,
                            PrewarmClient, PrewarmError, ResourceExhaustedError, TaskSpec,
                            UnauthenticatedError, UnavailableError, pb2)
from prewarm_client import convert  # noqa: E402
from support import harness  # noqa: E402


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(shared_prewarmd: harness.Prewarmd) -> Iterator[PrewarmClient]:
    with PrewarmClient(shared_prewarmd.address, timeout=5.0) as c:
        yield c


def test_register_and_list_services(client: PrewarmClient) -> None:
    name = uid("svc")
    first = client.register_service(name, warmup_url="http://127.0.0.1:9/warmup",
                                    keep_alive=dt.timedelta(seconds=45), cold_start_prior=1.5,
                                    warmup_method="POST", warm_latency=0.02)
    assert not first.replaced
    assert first.service.name == name
    assert convert.to_seconds(first.service.keep_alive) == 45
    assert convert.to_seconds(first.service.cold_start_prior) == 1.5
    assert first.service.warmup_method == "POST"
    assert first.service.mode == pb2.WARMUP_MODE_MANAGED  # default filled in
    # A dict, then a Service message: both replace it.
    second = client.register_service({"name": name, "warmup_url": "http://127.0.0.1:9/w2",
                                      "mode": "managed"})
    assert second.replaced and second.service.warmup_url == "http://127.0.0.1:9/w2"
    third = client.register_service(pb2.Service(name=name, warmup_url="http://127.0.0.1:9/w3"))
    assert third.replaced
    names = [s.name for s in client.list_services()]
    assert name in names and names == sorted(names)


def test_register_service_outside_allowlist_keeps_the_server_message(
        client: PrewarmClient) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        client.register_service(uid("svc"), warmup_url="http://example.com/warmup")
    err = info.value
    assert err.code.name == "INVALID_ARGUMENT"
    assert "example.com" in err.message and "allowlist" in err.message
    assert err.method == "RegisterService"
    assert isinstance(err, PrewarmError)


def test_register_service_rejects_unknown_fields_client_side(client: PrewarmClient) -> None:
    with pytest.raises(ValueError, match="keep_alive_s"):
        client.register_service({"name": "x", "keep_alive_s": 3})
    with pytest.raises(ValueError, match="mode"):
        client.register_service("x", mode="sometimes")


def test_register_service_container_concurrency(client: PrewarmClient) -> None:
    name = uid("svc")
    first = client.register_service(name, mode="delegated", keep_alive=60,
                                    container_concurrency=1)
    assert first.service.container_concurrency == 1
    assert convert.to_seconds(first.service.keep_alive) == 60
    by_name = {s.name: s for s in client.list_services()}
    assert by_name[name].container_concurrency == 1
    # Not given: unset, 0, which the server reads as unlimited.
    second = client.register_service(name, mode="delegated")
    assert second.replaced and second.service.container_concurrency == 0
    # In a dict, and through a Service message; 10000 is the server's upper bound.
    third = client.register_service({"name": name, "mode": "delegated",
                                     "container_concurrency": 10000})
    assert third.service.container_concurrency == 10000
    fourth = client.register_service(pb2.Service(name=name, mode=pb2.WARMUP_MODE_DELEGATED,
                                                 container_concurrency=4))
    assert fourth.service.container_concurrency == 4
    assert {s.name: s for s in client.list_services()}[name].container_concurrency == 4
    zero = client.register_service(name, mode="delegated", container_concurrency=0)
    assert zero.service.container_concurrency == 0


def test_register_service_container_concurrency_above_the_limit_is_the_servers_error(
        client: PrewarmClient) -> None:
    name = uid("svc")
    with pytest.raises(InvalidArgumentError) as info:
        client.register_service(name, mode="delegated", container_concurrency=10001)
    assert "service.container_concurrency" in info.value.message
    assert info.value.method == "RegisterService"
    assert name not in {s.name for s in client.list_services()}


@pytest.mark.parametrize("value,error", [
    (-1, ValueError), (1.5, TypeError), (2.0, TypeError), ("2", TypeError), (True, TypeError),
])
def test_register_service_rejects_bad_container_concurrency_client_side(
        value: Any, error: type[Exception]) -> None:
    # Nothing listens at the target: the check happens before any call (which would fail with
    # UnavailableError).
    with PrewarmClient("127.0.0.1:1", timeout=1.0) as offline:
        with pytest.raises(error, match="container_concurrency"):
            offline.register_service("x", mode="delegated", container_concurrency=value)
        with pytest.raises(error, match="container_concurrency"):
            offline.register_service({"name": "x", "container_concurrency": value})


def test_prewarm_accepts_dicts_dataclasses_and_messages(client: PrewarmClient) -> None:
    run_id = uid("run")
    start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30)
    plan = client.prewarm(run_id, "wf-forms", [
        {"task_id": "a", "service": "svc-x"},
        TaskSpec("b", "svc-y", upstream=("a",)),
        pb2.Task(task_id="c", service="", upstream_task_ids=["a", "b"]),
        {"task_id": "d", "upstream_task_ids": ["c"]},
    ], start_time=start, delay_cost_ratio=10)
    assert plan.run_id == run_id and plan.workflow_id == "wf-forms"
    assert [t.task_id for t in plan.tasks] == ["a", "b", "c", "d"]  # topological order
    assert abs(convert.to_unix_seconds(plan.start_time) - start.timestamp()) < 1e-3
    by_id = {t.task_id: t for t in plan.tasks}
    assert by_id["c"].decision == pb2.WARMUP_DECISION_SKIP_NO_SERVICE
    assert abs((convert.to_datetime(plan.start_time) - start).total_seconds()) < 1e-3
    # The same run again: ALREADY_EXISTS with the server's message.
    with pytest.raises(AlreadyExistsError) as info:
        client.prewarm(run_id, "wf-forms", [{"task_id": "a"}])
    assert run_id in info.value.message
    assert client.cancel_run(run_id) == 0


def test_prewarm_sends_duration_hints(client: PrewarmClient) -> None:
    """expected_duration from a dict (seconds), a TaskSpec (timedelta) or a message; absent or
    None: no hint (the field unset, not zero). prewarmd accepts the request."""
    tasks = [
        {"task_id": "a", "service": "svc-x", "expected_duration": 42.5},
        TaskSpec("b", "svc-y", upstream=("a",), expected_duration=dt.timedelta(minutes=3)),
        {"task_id": "c", "upstream": ["b"], "expected_duration": None},
        pb2.Task(task_id="d", upstream_task_ids=["c"],
                 expected_duration=convert.duration(0.25)),
        TaskSpec("e", upstream=("d",)),
    ]
    messages = [prewarm_client.task_proto(t) for t in tasks]
    assert [m.HasField("expected_duration") for m in messages] == [True, True, False, True, False]
    assert [convert.to_seconds(m.expected_duration) for m in messages] == [42.5, 180, 0, 0.25, 0]
    plan = client.prewarm(uid("hinted"), "wf-hints", tasks, dry_run=True)
    assert [t.task_id for t in plan.tasks] == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize("value,error", [
    (0, ValueError), (-1.0, ValueError), (dt.timedelta(seconds=-3), ValueError),
    (float("nan"), ValueError), (float("inf"), ValueError), (True, TypeError), ("3", TypeError),
])
def test_bad_duration_hints_are_refused_client_side(value: Any, error: type) -> None:
    with pytest.raises(error, match="task 'a': expected_duration"):
        prewarm_client.task_proto({"task_id": "a", "expected_duration": value})
    with pytest.raises(error, match="task 'a': expected_duration"):
        prewarm_client.task_proto(TaskSpec("a", expected_duration=value))


def test_prewarm_dry_run_keeps_no_state(client: PrewarmClient) -> None:
    run_id = uid("dry")
    plan = client.prewarm(run_id, "wf", [TaskSpec("a")], dry_run=True)
    assert plan.tasks[0].task_id == "a"
    with pytest.raises(NotFoundError):
        client.get_plan(run_id)


@pytest.mark.parametrize("tasks,must_name", [
    ([{"task_id": "a", "upstream": ["b"]}, {"task_id": "b", "upstream": ["a"]}], ("cycle",)),
    ([{"task_id": "a"}, {"task_id": "a"}], ("duplicate", "'a'")),
    ([{"task_id": "a", "upstream": ["ghost"]}], ("'ghost'",)),
    ([{"task_id": ""}], ("task_id",)),
])
def test_prewarm_bad_dags_are_invalid_argument_naming_the_culprit(
        client: PrewarmClient, tasks: list[dict[str, Any]], must_name: tuple[str, ...]) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        client.prewarm(uid("bad"), "wf", tasks)
    for part in must_name:
        assert part in info.value.message, info.value.message
    assert str(info.value).startswith("Prewarm: INVALID_ARGUMENT: ")


def test_task_specs_are_checked_client_side() -> None:
    with pytest.raises(ValueError, match="upstream"):
        prewarm_client.task_proto({"task_id": "a", "upstream": "b"})
    with pytest.raises(ValueError, match="task_id"):
        prewarm_client.task_proto({"service": "s"})
    with pytest.raises(ValueError, match="servce"):
        prewarm_client.task_proto({"task_id": "a", "servce": "s"})
    with pytest.raises(TypeError):
        prewarm_client.task_proto(42)
    with pytest.raises(ValueError, match="unknown task event"):
        prewarm_client.event_type("began")
    assert prewarm_client.event_type("TASK_EVENT_TYPE_SKIPPED") == pb2.TASK_EVENT_TYPE_SKIPPED


def test_report_every_event_and_read_the_plan(client: PrewarmClient) -> None:
    run_id = uid("run")
    service = uid("svc")
    client.prewarm(run_id, "wf-events", [
        {"task_id": "a", "service": service},
        {"task_id": "b", "service": service, "upstream": ["a"]},
        {"task_id": "c", "upstream": ["a"]},
        {"task_id": "d", "upstream": ["b", "c"]},
    ])
    t0 = time.time()
    started = client.report(run_id, "a", "started", event_time=t0)
    assert started.replan_count >= 1
    assert {t.task_id for t in started.replanned_tasks} >= {"b", "c", "d"}
    invoked = client.report(run_id, "a", pb2.TASK_EVENT_TYPE_SERVICE_INVOKED,
                            event_time=t0 + 0.01, cold=True, cold_start=dt.timedelta(seconds=0.2))
    assert list(invoked.replanned_tasks) == []  # SERVICE_INVOKED moves no start time
    client.report(run_id, "a", "finished", event_time=t0 + 0.5)
    client.report(run_id, "c", "skipped", event_time=t0 + 0.5)
    client.report(run_id, "b", "started", event_time=t0 + 0.6)
    failed = client.report(run_id, "b", "failed", event_time=t0 + 0.7)
    assert not failed.run_finished
    plan = client.get_plan(run_id)
    states = {t.task_id: t.task_state for t in plan.tasks}
    assert states == {"a": pb2.TASK_STATE_SUCCEEDED, "b": pb2.TASK_STATE_FAILED,
                      "c": pb2.TASK_STATE_SKIPPED, "d": pb2.TASK_STATE_PENDING}
    by_id = {t.task_id: t for t in plan.tasks}
    assert by_id["a"].outcome == pb2.TASK_OUTCOME_MISS  # reported cold
    assert abs(convert.to_unix_seconds(by_id["a"].actual_start_time) - t0) < 1e-3
    last = client.report(run_id, "d", "skipped")
    assert last.run_finished
    # Retired runs keep their final plan for GetPlan.
    assert client.get_plan(run_id).run_id == run_id


def test_report_view_summary_answers_without_the_plans(client: PrewarmClient) -> None:
    tasks = [{"task_id": "a", "service": uid("svc")}, {"task_id": "b", "upstream": ["a"]},
             {"task_id": "c", "upstream": ["b"]}]
    full_run, summary_run = uid("run"), uid("run")
    client.prewarm(full_run, "wf-view", tasks)
    client.prewarm(summary_run, "wf-view", tasks)
    t0 = time.time()
    full = client.report(full_run, "a", "started", event_time=t0)  # the default: full
    summary = client.report(summary_run, "a", "started", event_time=t0, view="summary")
    assert [t.task_id for t in full.replanned_tasks] == ["a", "b", "c"]
    assert full.replanned_task_count == 3
    assert list(summary.replanned_tasks) == [] and summary.replanned_task_count == 3
    assert summary.replan_count == full.replan_count and not summary.run_finished
    # The event was applied alike: the plans GetPlan shows agree on what happened.
    assert [t.task_state for t in client.get_plan(summary_run).tasks] == \
        [t.task_state for t in client.get_plan(full_run).tasks]
    explicit = client.report(full_run, "a", "finished", event_time=t0 + 1,
                             view=pb2.REPORT_TIMING_VIEW_FULL)
    assert len(explicit.replanned_tasks) == explicit.replanned_task_count > 0
    with pytest.raises(InvalidArgumentError) as info:
        client.report(summary_run, "a", "finished", view=7)
    assert "view" in info.value.message
    with pytest.raises(ValueError, match="summary"):
        client.report(summary_run, "a", "finished", view="brief")
    assert prewarm_client.report_view("REPORT_TIMING_VIEW_SUMMARY") == \
        pb2.REPORT_TIMING_VIEW_SUMMARY
    client.cancel_run(full_run)
    client.cancel_run(summary_run)


def test_report_errors_keep_the_server_message(client: PrewarmClient) -> None:
    with pytest.raises(NotFoundError) as info:
        client.report("no-such-run", "a", "started")
    assert "no-such-run" in info.value.message
    run_id = uid("run")
    client.prewarm(run_id, "wf", [{"task_id": "a"}, {"task_id": "b", "upstream": ["a"]}])
    with pytest.raises(NotFoundError) as info:
        client.report(run_id, "ghost", "started")
    assert "ghost" in info.value.message
    client.report(run_id, "a", "started")
    client.report(run_id, "a", "finished")
    with pytest.raises(FailedPreconditionError) as info:
        client.report(run_id, "a", "started")
    assert "'a'" in info.value.message
    with pytest.raises(InvalidArgumentError) as info:
        client.report(run_id, "b", "started", event_time=time.time() + 3600)
    assert "event_time" in info.value.message
    client.cancel_run(run_id)


def test_cancel_run_and_unknown_runs(client: PrewarmClient) -> None:
    with pytest.raises(NotFoundError):
        client.cancel_run("never-announced")
    with pytest.raises(NotFoundError):
        client.get_plan("never-announced")
    run_id = uid("run")
    client.prewarm(run_id, "wf", [{"task_id": "a"}])
    assert client.cancel_run(run_id) == 0
    with pytest.raises(NotFoundError):
        client.report(run_id, "a", "started")


def test_service_stats_after_a_run(client: PrewarmClient) -> None:
    service = uid("svc")
    run_id = uid("run")
    client.prewarm(run_id, "wf-stats", [{"task_id": "a", "service": service}])
    t0 = time.time() - 1.0
    client.report(run_id, "a", "started", event_time=t0)
    client.report(run_id, "a", "service_invoked", event_time=t0, cold=True, cold_start=0.25)
    client.report(run_id, "a", "finished", event_time=t0 + 0.75)
    stats = client.service_stats(service)
    assert stats.service == service
    assert stats.duration.sample_count == 1
    assert stats.cold_start.sample_count == 1
    assert abs(convert.to_seconds(stats.cold_start.p50) - 0.25) < 1e-3
    assert stats.miss_count == 1


def test_watch_and_report_delegated_warmups(client: PrewarmClient) -> None:
    service = uid("lambda")
    client.register_service(service, mode="delegated", cold_start_prior=0.5, keep_alive=60)
    received: list[Any] = []
    # A deadline, so that a server that never sends the headers fails this test instead of
    # hanging it in wait_subscribed().
    stream = client.watch_warmups([service], timeout=30)

    def consume() -> None:
        for instruction in stream:
            received.append(instruction)
            return

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    stream.wait_subscribed()  # subscribed before the warm-up is due: nothing can be lost
    run_id = uid("run")
    # A run starting in 1 s: its root's warm-up is due about 0.5 s before.
    client.prewarm(run_id, "wf-delegated", [{"task_id": "root", "service": service}],
                   start_time=time.time() + 1.0)
    consumer.join(timeout=10)
    stream.cancel()
    assert received, "no delegated warm-up arrived"
    instruction = received[0]
    assert instruction.service == service and instruction.run_id == run_id
    assert instruction.task_id == "root" and instruction.warmup_id
    client.report_warmup(instruction.warmup_id, True, latency=0.3, cold=True)
    plan = client.get_plan(run_id)
    assert plan.tasks[0].warmup_state == pb2.WARMUP_STATE_READY
    with pytest.raises((InvalidArgumentError, NotFoundError)) as info:
        client.report_warmup("no-such-warmup", True, latency=0.1)
    assert "no-such-warmup" in info.value.message
    client.cancel_run(run_id)


def test_resource_exhausted_keeps_the_limit(start_prewarmd: Callable[..., harness.Prewarmd]
                                            ) -> None:
    server = start_prewarmd(("--max_tasks_per_dag=2",))
    with PrewarmClient(server.address, timeout=5) as c:
        with pytest.raises(ResourceExhaustedError) as info:
            c.prewarm("big", "wf", [{"task_id": str(i)} for i in range(3)])
    assert "limit is 2" in info.value.message


# Connection failures and deadlines ----------------------------------------------------------


class BlackHole:
    """A TCP server that accepts connections and never answers (not even the HTTP/2 handshake)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
            except OSError:
                continue

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


def test_deadline_on_every_call(black_hole: BlackHole) -> None:
    with PrewarmClient(f"127.0.0.1:{black_hole.port}", timeout=0.3) as c:
        calls: list[Callable[[], Any]] = [
            lambda: c.list_services(),
            lambda: c.register_service("s", warmup_url="http://127.0.0.1/w"),
            lambda: c.prewarm("r", "wf", [{"task_id": "a"}]),
            lambda: c.report("r", "a", "started"),
            lambda: c.get_plan("r"),
            lambda: c.cancel_run("r"),
            lambda: c.service_stats("s"),
            lambda: c.report_warmup("w", True),
        ]
        for call in calls:
            t0 = time.monotonic()
            with pytest.raises((DeadlineExceededError, UnavailableError)) as info:
                call()
            elapsed = time.monotonic() - t0
            assert elapsed < 2.0, (info.value, elapsed)
        # A per-call deadline overrides the client's.
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceededError) as info:
            c.get_plan("r", timeout=0.1)
        assert time.monotonic() - t0 < 1.0
        assert info.value.code.name == "DEADLINE_EXCEEDED"
    with pytest.raises(ValueError):
        PrewarmClient("127.0.0.1:1", timeout=0)


def test_unavailable_when_nothing_listens() -> None:
    """Without retries the call fails at once; with them (the default) it retries until its
    deadline and not past it (test_client_retry.py tests the retries in detail)."""
    port = harness.closed_port()
    with PrewarmClient(f"127.0.0.1:{port}", timeout=2, retry=prewarm_client.NO_RETRY) as c:
        t0 = time.monotonic()
        with pytest.raises(UnavailableError) as info:
            c.list_services()
    assert time.monotonic() - t0 < 1.0
    assert info.value.message and info.value.attempts == 1
    with PrewarmClient(f"127.0.0.1:{port}", timeout=1) as c:
        t0 = time.monotonic()
        with pytest.raises(UnavailableError) as info:
            c.list_services()
    assert time.monotonic() - t0 < 1.5
    assert info.value.attempts > 1 and f"after {info.value.attempts} attempts" in str(info.value)


# Bearer token and TLS -----------------------------------------------------------------------


def test_bearer_token(start_prewarmd: Callable[..., harness.Prewarmd], workdir: Path) -> None:
    token_file = workdir / "token"
    token_file.write_text("s3cret-token\n")
    server = start_prewarmd((f"--bearer_token_file={token_file}",))
    with PrewarmClient(server.address, timeout=5) as anonymous:
        with pytest.raises(UnauthenticatedError) as info:
            anonymous.list_services()
        assert "authorization: Bearer" in info.value.message
    with PrewarmClient(server.address, timeout=5, token="wrong") as wrong:
        with pytest.raises(UnauthenticatedError) as info:
            wrong.prewarm("r", "wf", [{"task_id": "a"}])
        assert "invalid bearer token" in info.value.message
    with PrewarmClient(server.address, timeout=5, token="s3cret-token") as good:
        assert good.list_services() == []
        good.prewarm("r", "wf", [{"task_id": "a"}])
        stream = good.watch_warmups()
        stream.cancel()
        assert list(stream) == []


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=prewarm-test", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:prewarm.test",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_tls(start_prewarmd: Callable[..., harness.Prewarmd], workdir: Path) -> None:
    cert, key = make_certificate(workdir)
    server = start_prewarmd((f"--tls_cert={cert}", f"--tls_key={key}"))
    with PrewarmClient(server.address, tls=True, root_certificates=str(cert), timeout=5) as c:
        assert c.list_services() == []
    # PEM bytes, and a server-name override checked against the certificate's names.
    with PrewarmClient(f"localhost:{server.grpc_port}", root_certificates=cert.read_bytes(),
                       tls_server_name="prewarm.test", timeout=5) as c:
        assert c.list_services() == []
    # The system roots do not trust a self-signed certificate; plaintext gets nowhere either.
    with PrewarmClient(server.address, tls=True, timeout=2) as untrusted:
        with pytest.raises(UnavailableError):
            untrusted.list_services()
    with PrewarmClient(server.address, timeout=2) as plaintext:
        with pytest.raises(UnavailableError):
            plaintext.list_services()
