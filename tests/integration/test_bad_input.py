"""Bad input through real gRPC: every class gets its status code and a message naming the culprit,
and nothing malformed reaches the store."""

from __future__ import annotations

import sqlite3
import threading
import time
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


def _skip_finished(client: harness.Client) -> Any:
    run_id = valid_run(client)
    pb = harness.pb2
    report(client, run_id, "a", pb.TASK_EVENT_TYPE_STARTED)
    report(client, run_id, "a", pb.TASK_EVENT_TYPE_FINISHED)
    return report(client, run_id, "a", pb.TASK_EVENT_TYPE_SKIPPED)


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
    BadCall("skipping a finished task", "FAILED_PRECONDITION", ("'a'", "already"),
            _skip_finished),
    # The classes the fuzzers explore (tests/fuzz/registry_fuzz.cc): oversized and deeply repeated
    # fields, unknown enum values, values out of range.
    BadCall("run_id one byte too long", "INVALID_ARGUMENT", ("run_id", "251", "250"),
            lambda c: prewarm(c, "r" * 251, [task("a")])),
    BadCall("task_id one byte too long", "INVALID_ARGUMENT", ("tasks[0].task_id", "251", "250"),
            lambda c: prewarm(c, "bad-long-task", [task("t" * 251)]), "bad-long-task"),
    BadCall("workflow_id too long", "INVALID_ARGUMENT", ("workflow_id", "300"),
            lambda c: c.Prewarm(harness.pb2.PrewarmRequest(
                run_id="bad-long-workflow", workflow_id="w" * 300, tasks=[task("a")])),
            "bad-long-workflow"),
    BadCall("service name too long", "INVALID_ARGUMENT", ("'a'", "service", "128"),
            lambda c: prewarm(c, "bad-long-service", [task("a", service="s" * 300)]),
            "bad-long-service"),
    BadCall("upstream id repeated 10000 times", "INVALID_ARGUMENT", ("'b'", "'a'", "twice"),
            lambda c: prewarm(c, "bad-repeated", [task("a"), task("b", *["a"] * 10_000)]),
            "bad-repeated"),
    BadCall("unknown event enum value", "INVALID_ARGUMENT", ("event", "99"),
            lambda c: report(c, valid_run(c), "a", 99)),
    BadCall("unknown service mode enum value", "INVALID_ARGUMENT", ("mode", "77"),
            lambda c: c.RegisterService(harness.pb2.RegisterServiceRequest(
                service=harness.pb2.Service(name="bad-mode", mode=77)))),
    BadCall("event time an hour ahead", "INVALID_ARGUMENT", ("event_time", "ahead"),
            lambda c: c.ReportTiming(harness.pb2.ReportTimingRequest(
                run_id=valid_run(c), task_id="a", event=harness.pb2.TASK_EVENT_TYPE_STARTED,
                event_time=harness.timestamp(time.time() + 3600)))),
    BadCall("event time with negative nanos", "INVALID_ARGUMENT", ("event_time", "nanos"),
            lambda c: c.ReportTiming(harness.pb2.ReportTimingRequest(
                run_id=valid_run(c), task_id="a", event=harness.pb2.TASK_EVENT_TYPE_STARTED,
                event_time=_bad_nanos()))),
    BadCall("negative cold start", "INVALID_ARGUMENT", ("cold_start", "-1s"),
            lambda c: c.ReportTiming(harness.pb2.ReportTimingRequest(
                run_id=valid_run(c), task_id="a", event=harness.pb2.TASK_EVENT_TYPE_STARTED,
                cold_start=harness.duration(-1)))),
    BadCall("start time past the limit", "INVALID_ARGUMENT", ("start_time", "future"),
            lambda c: prewarm(c, "bad-far-start", [task("a")],
                              start_time=harness.timestamp(time.time() + 8 * 86400)),
            "bad-far-start"),
    BadCall("NaN delay cost ratio", "INVALID_ARGUMENT", ("delay_cost_ratio", "nan"),
            lambda c: prewarm(c, "bad-nan-ratio", [task("a")], delay_cost_ratio=float("nan")),
            "bad-nan-ratio"),
    BadCall("warm-up id that is not a number", "INVALID_ARGUMENT", ("warmup_id", "'nope'"),
            lambda c: c.ReportWarmup(harness.pb2.ReportWarmupRequest(warmup_id="nope",
                                                                     success=False))),
    BadCall("unknown warm-up id", "NOT_FOUND", ("123456",),
            lambda c: c.ReportWarmup(harness.pb2.ReportWarmupRequest(
                warmup_id="123456", success=True, latency=harness.duration(0.1)))),
]


def _bad_nanos() -> Any:
    stamp = harness.timestamp(time.time())
    stamp.nanos = -5
    return stamp


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


def test_event_storm_for_one_task_gets_one_acceptance_and_named_refusals(
        shared_prewarmd: harness.Prewarmd) -> None:
    """Eight threads send the same events for one task at once, as a scheduler that delivers at
    least once might. Every repeat is acknowledged (OK) without being applied again; the run ends
    in the state of one of each; a contradicting event is still FAILED_PRECONDITION naming the
    task."""
    pb = harness.pb2
    client = shared_prewarmd.client()
    run_id = valid_run(client)
    for event in (pb.TASK_EVENT_TYPE_STARTED, pb.TASK_EVENT_TYPE_FINISHED):
        results: list[str] = []
        lock = threading.Lock()

        def storm() -> None:
            for _ in range(25):
                try:
                    report(client, run_id, "a", event)
                    outcome = "OK"
                except harness.grpc.RpcError as err:
                    outcome = err.code().name
                    assert "'a'" in (err.details() or ""), err.details()
                with lock:
                    results.append(outcome)

        threads = [threading.Thread(target=storm) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == ["OK"] * len(results), (pb.TaskEventType.Name(event),
                                                   sorted(set(results)))
    plan = client.GetPlan(pb.GetPlanRequest(run_id=run_id)).plan
    states = {t.task_id: t.task_state for t in plan.tasks}
    assert states == {"a": pb.TASK_STATE_SUCCEEDED, "b": pb.TASK_STATE_PENDING}, states
    assert plan.replan_count == 2, plan.replan_count  # one STARTED and one FINISHED applied
    with pytest.raises(harness.grpc.RpcError) as raised:
        report(client, run_id, "a", pb.TASK_EVENT_TYPE_FAILED)
    assert raised.value.code() == harness.grpc.StatusCode.FAILED_PRECONDITION
    assert "'a'" in (raised.value.details() or "")



def test_event_storm_does_not_grow_the_stored_run_log(
        start_prewarmd: Callable[..., harness.Prewarmd]) -> None:
    pb = harness.pb2
    prewarmd = start_prewarmd()
    client = prewarmd.client()
    run_id = valid_run(client)
    for _ in range(200):
        report(client, run_id, "a", pb.TASK_EVENT_TYPE_STARTED)
    assert prewarmd.stop() == 0
    with sqlite3.connect(prewarmd.store) as db:
        events = db.execute("select count(*) from run_events").fetchone()[0]
    assert events <= 2, f"{events} stored events for one STARTED repeated 200 times"


def test_events_past_max_events_per_run_are_refused_naming_the_run_and_limit(
        workdir: Path, start_prewarmd: Callable[..., harness.Prewarmd]) -> None:
    """A run alternating FAILED and STARTED (retries are real events) is stopped at the cap; its
    stored log stays at the cap; repeats are still acknowledged and other runs are unaffected."""
    pb = harness.pb2
    config = workdir / "limits.json"
    config.write_text('{"limits": {"maxEventsPerRun": 6}}')
    prewarmd = start_prewarmd(args=(*PREWARMD_ARGS, f"--config={config}"))
    client = prewarmd.client()
    run_id = valid_run(client)
    for i in range(6):
        report(client, run_id, "a", pb.TASK_EVENT_TYPE_FAILED if i % 2 else
               pb.TASK_EVENT_TYPE_STARTED)
    with pytest.raises(harness.grpc.RpcError) as raised:
        report(client, run_id, "a", pb.TASK_EVENT_TYPE_STARTED)
    assert raised.value.code() == harness.grpc.StatusCode.RESOURCE_EXHAUSTED
    assert run_id in raised.value.details() and "6" in raised.value.details(), \
        raised.value.details()
    report(client, run_id, "a", pb.TASK_EVENT_TYPE_FAILED)  # a repeat: acknowledged
    report(client, valid_run(client), "a", pb.TASK_EVENT_TYPE_STARTED)
    assert prewarmd.stop() == 0
    with sqlite3.connect(prewarmd.store) as db:
        events = db.execute("select count(*) from run_events where run_id = ?",
                            (run_id,)).fetchone()[0]
    assert events == 6, events


def test_runs_at_every_limit(start_prewarmd: Callable[..., harness.Prewarmd]) -> None:
    """At each limit exactly: accepted. One past it: refused, naming the limit. A freed slot is
    usable again."""
    pb = harness.pb2
    max_runs = 3
    client = start_prewarmd(args=(*PREWARMD_ARGS, f"--max_active_runs={max_runs}")).client()
    full_dag = [task("t0")] + [task(f"t{i}", f"t{i - 1}") for i in range(1, MAX_TASKS)]
    ids = [f"{i}".ljust(250, "r") for i in range(max_runs)]  # run ids of exactly 250 bytes
    for run_id in ids:
        plan = prewarm(client, run_id, full_dag).plan
        assert len(plan.tasks) == MAX_TASKS
    check(BadCall("one run past max_active_runs", "RESOURCE_EXHAUSTED", (str(max_runs), "active"),
                  lambda c: prewarm(c, "one-too-many", [task("a")])), client)
    check(BadCall("an active run id again", "ALREADY_EXISTS", ("already",),
                  lambda c: prewarm(c, ids[0], [task("a")])), client)
    client.CancelRun(pb.CancelRunRequest(run_id=ids[0]))
    prewarm(client, "slot-freed", [task("a")])
    client.CancelRun(pb.CancelRunRequest(run_id="slot-freed"))
    check(BadCall("one task past max_tasks_per_dag", "RESOURCE_EXHAUSTED",
                  (str(MAX_TASKS + 1), str(MAX_TASKS)),
                  lambda c: prewarm(c, "dag-too-big", full_dag + [task("extra", "t0")])), client)
    # A run at the limit of every field at once is still accepted.
    edge = [task("t" * 250, service="s" * 128)] + [
        task(f"{i}".ljust(250, "t"), "t" * 250, service="s" * 128) for i in range(1, MAX_TASKS)]
    request = pb.PrewarmRequest(run_id="w".ljust(250, "w"), workflow_id="f" * 250, tasks=edge,
                                start_time=harness.timestamp(time.time() + 7 * 86400 - 60))
    assert len(client.Prewarm(request).plan.tasks) == MAX_TASKS
