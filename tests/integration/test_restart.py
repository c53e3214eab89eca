"""prewarmd dies (kill -9) or is stopped (SIGTERM): what is durable survives and pending warm-ups
still fire."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path
from typing import Callable

import harness
from harness import GatewayService, RunResult, Task, Workflow, WorkflowRunner

INIT_SECONDS = 0.1
KEEP_ALIVE_SECONDS = 1.0
TRAINING_RUNS = 3
KILL_AFTER_SECONDS = 0.3

# A long first task leaves time to kill and restart prewarmd before the downstream warm-ups fire
# (about 1.5 s into the run).
LONG_FIRST = Workflow("long-first", (
    Task("task1", "svc-a", 1.5),
    Task("task2", "svc-b", 0.3, ("task1",)),
    Task("task3", "svc-c", 0.3, ("task2",)),
))


def sample_counts(client: harness.Client, services: list[str]) -> dict[str, tuple[int, int]]:
    """Per service: (task duration samples, cold-start samples)."""
    out = {}
    for s in services:
        stats = client.GetServiceStats(harness.pb2.GetServiceStatsRequest(service=s))
        out[s] = (stats.duration.sample_count, stats.cold_start.sample_count)
    return out


def store_rows(store: Path, table: str) -> int:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        return db.execute(f"select count(*) from {table}").fetchone()[0]


def test_kill_9_mid_run_pending_warmups_still_fire(
        start_prewarmd: Callable[..., harness.Prewarmd],
        start_gateway: Callable[..., harness.Gateway]) -> None:
    pb = harness.pb2
    services = LONG_FIRST.services()
    gateway = start_gateway([GatewayService(s, INIT_SECONDS, KEEP_ALIVE_SECONDS) for s in services])
    prewarmd = start_prewarmd()
    client = prewarmd.client()
    runner = WorkflowRunner(gateway, client)
    runner.register_services(services)
    for _ in range(TRAINING_RUNS):
        result = runner.run(LONG_FIRST, "prewarm")
        assert result.ok and not result.report_errors, result.describe()
        runner.settle(result)

    port = prewarmd.grpc_port
    events: dict[str, object] = {}

    def kill_and_restart(result: RunResult) -> None:
        try:
            time.sleep(KILL_AFTER_SECONDS)
            # Separate clients: the runner's channel must ride out the restart on its own.
            with harness.Client(f"127.0.0.1:{port}") as probe:
                events["plan_before"] = probe.GetPlan(pb.GetPlanRequest(run_id=result.run_id)).plan
                events["counts_before"] = sample_counts(probe, services)
            events["killed_at"] = time.time()
            events["kill_code"] = prewarmd.kill()
            prewarmd.restart()  # Same store, same gRPC port.
            events["restarted_at"] = time.time()
            # gRPC may hand this new channel the old, broken connection once: retry.
            with harness.Client(f"127.0.0.1:{port}", wait_for_ready=True,
                                retry_unavailable=True) as probe:
                events["counts_after"] = sample_counts(probe, services)
        except Exception as err:  # Reported by the test below.
            events["error"] = err

    result = runner.run(LONG_FIRST, "prewarm", on_started=kill_and_restart)
    print(result.describe())
    assert "error" not in events, events["error"]
    print(f"killed at +{events['killed_at'] - result.start:.3f} s, serving again at "
          f"+{events['restarted_at'] - result.start:.3f} s")
    assert events["kill_code"] == -signal.SIGKILL
    assert prewarmd.grpc_port == port
    assert result.ok and not result.report_errors, (result.describe(), result.report_errors)

    # The warm-ups were pending when prewarmd died, due after it was back.
    before = {t.task_id: t for t in events["plan_before"].tasks}
    for task_id in ("task2", "task3"):
        assert before[task_id].decision == pb.WARMUP_DECISION_WARM, before[task_id]
        assert before[task_id].warmup_state == pb.WARMUP_STATE_PENDING, before[task_id]
        assert before[task_id].warmup_time.ToNanoseconds() / 1e9 > events["restarted_at"], (
            "the warm-up was due before prewarmd was back: make task1 longer", before[task_id])
    # The restarted prewarmd restored the run and the history from the store.
    _, observations, active_runs = prewarmd.restored()
    assert active_runs == 1
    assert observations > 0
    counts_before, counts_after = events["counts_before"], events["counts_after"]
    print(f"sample counts (durations, cold starts) before the kill {counts_before}, after the "
          f"restart {counts_after}")
    for s in services:
        assert counts_after[s][0] == counts_before[s][0] == TRAINING_RUNS, counts_after
        assert counts_after[s][1] >= counts_before[s][1] >= 1, counts_after
    # It fired the pending warm-ups itself, before task1 finished (not merely when task1's
    # FINISHED report re-planned the run): the downstream tasks found their services warm.
    client = prewarmd.client()
    plan = {t.task_id: t for t in client.GetPlan(pb.GetPlanRequest(run_id=result.run_id)).plan.tasks}
    assert plan["task2"].warmup_state == pb.WARMUP_STATE_READY, plan["task2"]
    assert plan["task2"].warmup_time.ToNanoseconds() / 1e9 < result.tasks["task1"].call_end, (
        plan["task2"], result.describe())
    assert plan["task3"].warmup_state == pb.WARMUP_STATE_READY, plan["task3"]
    for service in ("svc-b", "svc-c"):
        assert result.gateway_stats[service]["warmup_requests"] >= 1, result.gateway_stats
    assert result.downstream_penalty <= 0.05, result.describe()
    # The history keeps growing after the restart: this run's durations were learned too.
    final = sample_counts(client, services)
    assert all(final[s][0] == TRAINING_RUNS + 1 for s in services), final


def test_sigterm_exits_zero_and_flushes_the_store(
        start_prewarmd: Callable[..., harness.Prewarmd]) -> None:
    pb = harness.pb2
    prewarmd = start_prewarmd()
    client = prewarmd.client()
    with harness.TargetServer(status=200, delay=30.0) as slow:
        client.RegisterService(pb.RegisterServiceRequest(service=pb.Service(
            name="slow", warmup_url=slow.url(), warmup_timeout=harness.duration(20))))
        client.RegisterService(pb.RegisterServiceRequest(service=pb.Service(
            name="later", warmup_url=slow.url(), cold_start_prior=harness.duration(1))))
        now = time.time()
        # A finished run has taught some history.
        client.Prewarm(pb.PrewarmRequest(run_id="done", workflow_id="wf",
                                         tasks=[pb.Task(task_id="a", service="svc-x")],
                                         start_time=harness.timestamp(now)))
        for event in (pb.TASK_EVENT_TYPE_STARTED, pb.TASK_EVENT_TYPE_FINISHED):
            client.ReportTiming(pb.ReportTimingRequest(run_id="done", task_id="a", event=event))
        # Run 1 starts in a second, sooner than the slow service's cold start: its warm-up fires
        # at once and is in flight at SIGTERM.
        client.Prewarm(pb.PrewarmRequest(run_id="in-flight", workflow_id="wf",
                                         tasks=[pb.Task(task_id="b", service="slow")],
                                         start_time=harness.timestamp(now + 1)))
        harness.wait_for(lambda: slow.requests >= 1, timeout=5, what="the slow warm-up")
        # Run 2 starts in 55 s: its first warm-up is pending (decided now: within the default
        # planning horizon of 60 s, where lazy planning would leave a later start undecided).
        tasks = [pb.Task(task_id="x", service="later"),
                 pb.Task(task_id="y", service="later", upstream_task_ids=["x"])]
        client.Prewarm(pb.PrewarmRequest(run_id="scheduled", workflow_id="wf2", tasks=tasks,
                                         start_time=harness.timestamp(now + 55)))

        started = time.monotonic()
        code = prewarmd.stop(timeout=15)
        took = time.monotonic() - started
    log = prewarmd.log()
    print(log)
    assert code == 0, log
    assert took < 10, f"SIGTERM took {took:.1f} s with a warm-up in flight"
    assert "received SIGTERM" in log and "prewarmd stopped" in log
    assert "prewarmd stopped:" not in log, "the store reported an error on close"

    # Flushed: everything acknowledged is in the file, readable without prewarmd.
    assert store_rows(prewarmd.store, "services") == 2
    assert store_rows(prewarmd.store, "runs") == 2
    assert store_rows(prewarmd.store, "observations") >= 2  # a's duration, ...

    prewarmd.restart()
    services, observations, runs = prewarmd.restored()
    assert (services, runs) == (2, 2)
    assert observations == store_rows(prewarmd.store, "observations")
    client = prewarmd.client()
    plan = client.GetPlan(pb.GetPlanRequest(run_id="scheduled")).plan
    assert [t.task_id for t in plan.tasks] == ["x", "y"]
    assert plan.tasks[0].warmup_state == pb.WARMUP_STATE_PENDING, plan
    stats = client.GetServiceStats(pb.GetServiceStatsRequest(service="svc-x"))
    assert stats.duration.sample_count == 1
