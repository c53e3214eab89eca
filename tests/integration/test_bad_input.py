"""Bad input through real gRPC: every class gets its status code and a message naming the culprit,
and nothing malformed reaches the store."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import harness

MAX_TASKS = 5
PREWARMD_ARGS = (f"--max_tasks_per_dag={MAX_TASKS}",)


def task(task_id: str, *upstream: str, service: str = "svc-unregistered") -> Any:
    return harness.pb2.Task(task_id=task_id, service=service, upstream_task_ids=list(upstream))


def prewarm(client: harness.Client, run_id: str, tasks: list[Any], **fields: Any) -> Any:
    return client.Prewarm(harness.pb2.PrewarmRequest(run_id=run_id, workflow_id="wf", tasks=tasks,
                                                     **fields))


def report(client: harness.Client, run_id: str, task_id: str, event: int) -> Any:
    return client.ReportTiming(harness.pb2.ReportTimingRequest(run_id=run_id, task_id=task_id,
                                                               event=event))


def valid_run(client: harness.Client) -> str:
    """Starts a valid two-task run (unregistered services: nothing is fired) and returns its id."""
    run_id = f"valid-{uuid.uuid4().hex[:8]}"
    prewarm(client, run_id, [task("a"), task("b", "a")])
    return run_id


@dataclass(frozen=True)
class BadCall:
    name: str
    code: str                                  # grpc.StatusCode name
    must_name: tuple[str, ...]                 # substrings of the error message
    call: Callable[[harness.Client], Any]      # makes the bad call (and any valid set-up)
    run_id: str = ""                           # the run id a bad Prewarm used, if any


def _oversize(client: harness.Client) -> Any:
    # One task id of 5 MiB: the message is past the server's 4 MiB limit.
    request = harness.pb2.PrewarmRequest(run_id="bad-oversize", workflow_id="wf",
                                         tasks=[task("a" * (5 << 20))])
    assert request.ByteSize() > 4 << 20
    return client.Prewarm(request, timeout=30)


def _finish_twice(client: harness.Client) -> Any:
    run_id = valid_run(client)
    pb = harness.pb2
    report(client, run_id, "a", pb.TASK_EVENT_TYPE_STARTED)
    report(client, run_id, "a", pb.TASK_EVENT_TYPE_FINISHED)
    return report(client, run_id, "a", pb.TASK_EVENT_TYPE_FINISHED)


CASES = [
    BadCall("empty run_id", "INVALID_ARGUMENT", ("run_id",),
            lambda c: prewarm(c, "", [task("a")])),
    BadCall("duplicate task id", "INVALID_ARGUMENT", ("duplicate", "'a'"),
            lambda c: prewarm(c, "bad-duplicate", [task("a"), task("b", "a"), task("a")]),
            "bad-duplicate"),
    BadCall("unknown upstream", "INVALID_ARGUMENT", ("'b'", "'ghost'"),
            lambda c: prewarm(c, "bad-upstream", [task("a"), task("b", "a", "ghost")]),
            "bad-upstream"),
    BadCall("cycle", "INVALID_ARGUMENT", ("cycle", "x", "y", "z", " -> "),
            lambda c: prewarm(c, "bad-cycle", [task("r"), task("x", "r", "z"), task("y", "x"),
                                               task("z", "y")]),
            "bad-cycle"),
    BadCall("unknown run", "NOT_FOUND", ("no-such-run",),
            lambda c: report(c, "no-such-run", "a", harness.pb2.TASK_EVENT_TYPE_STARTED)),
    BadCall("unknown task", "NOT_FOUND", ("'ghost'",),
            lambda c: report(c, valid_run(c), "ghost", harness.pb2.TASK_EVENT_TYPE_STARTED)),
    BadCall("event unspecified", "INVALID_ARGUMENT", ("event",),
            lambda c: report(c, valid_run(c), "a", harness.pb2.TASK_EVENT_TYPE_UNSPECIFIED)),
    BadCall("too many tasks", "RESOURCE_EXHAUSTED", (str(MAX_TASKS + 1), str(MAX_TASKS)),
            lambda c: prewarm(c, "bad-too-many", [task("t0")] + [
                task(f"t{i}", f"t{i - 1}") for i in range(1, MAX_TASKS + 1)]),
            "bad-too-many"),
    BadCall("oversize message", "RESOURCE_EXHAUSTED", (), _oversize, "bad-oversize"),
    BadCall("finishing a task twice", "FAILED_PRECONDITION", ("'a'", "already"), _finish_twice),
]


def check(case: BadCall, client: harness.Client) -> None:
    with pytest.raises(harness.grpc.RpcError) as raised:
        case.call(client)
    err = raised.value
    message = err.details() or ""
    print(f"{case.name}: {err.code().name}: {message[:200]}")
    assert err.code().name == case.code, (case.name, err.code(), message[:300])
    for part in case.must_name:
        assert part in message, (case.name, part, message[:300])


@pytest.fixture(scope="module")
def shared_prewarmd() -> Iterator[harness.Prewarmd]:
    # Module-scoped: the cases share one server. Set up before the autouse check of each test.
    harness.require_build_products()
    with harness.make_workdir() as d:
        server = harness.Prewarmd(Path(d), args=PREWARMD_ARGS)
        with server:
            yield server


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_class(case: BadCall, shared_prewarmd: harness.Prewarmd) -> None:
    check(case, shared_prewarmd.client())


def test_cycle_message_names_the_closed_path(shared_prewarmd: harness.Prewarmd) -> None:
    with pytest.raises(harness.grpc.RpcError) as raised:
        prewarm(shared_prewarmd.client(), "bad-cycle-2",
                [task("r"), task("x", "r", "z"), task("y", "x"), task("z", "y")])
    path = raised.value.details().split("cycle: ", 1)[1].split(" -> ")
    assert path[0] == path[-1] and set(path) == {"x", "y", "z"} and len(path) == 4, path


def test_allowlist_refusal_names_the_host_and_the_allowlist(
        start_prewarmd: Callable[..., harness.Prewarmd]) -> None:
    pb = harness.pb2
    client = start_prewarmd().client()
    with pytest.raises(harness.grpc.RpcError) as raised:
        client.RegisterService(pb.RegisterServiceRequest(service=pb.Service(
            name="external", warmup_url="http://example.com/warmup")))
    err = raised.value
    print(err.details())
    assert err.code() == harness.grpc.StatusCode.INVALID_ARGUMENT
    assert "example.com" in err.details()
    assert "allowlist" in err.details()
    assert "loopback" in err.details()  # the allowlist's rules are named
    assert len(client.ListServices(pb.ListServicesRequest()).services) == 0


def test_nothing_malformed_reached_the_store(
        start_prewarmd: Callable[..., harness.Prewarmd]) -> None:
    pb = harness.pb2
    prewarmd = start_prewarmd(args=PREWARMD_ARGS)
    client = prewarmd.client()
    for case in CASES:
        check(case, client)
    with pytest.raises(harness.grpc.RpcError):
        client.RegisterService(pb.RegisterServiceRequest(service=pb.Service(
            name="external", warmup_url="http://example.com/warmup")))

    # Only the valid runs the cases started are stored.
    with sqlite3.connect(prewarmd.store) as db:
        stored = {row[0] for row in db.execute("select run_id from runs")}
        services = db.execute("select count(*) from services").fetchone()[0]
    assert stored and all(run_id.startswith("valid-") for run_id in stored), stored
    assert services == 0
    for run_id in stored:
        client.CancelRun(pb.CancelRunRequest(run_id=run_id))

    assert prewarmd.stop() == 0
    with sqlite3.connect(prewarmd.store) as db:
        assert db.execute("select count(*) from runs").fetchone()[0] == 0
    prewarmd.restart()
    assert prewarmd.restored()[2] == 0, prewarmd.log()
    client = prewarmd.client()
    for run_id in [c.run_id for c in CASES if c.run_id] + sorted(stored):
        with pytest.raises(harness.grpc.RpcError) as raised:
            client.GetPlan(pb.GetPlanRequest(run_id=run_id))
        assert raised.value.code() == harness.grpc.StatusCode.NOT_FOUND, run_id
