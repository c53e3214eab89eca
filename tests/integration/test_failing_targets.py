"""Dead, slow and failing warm-up targets beside a healthy one: the healthy warm-up still arrives on
time, and the failures show in GetPlan and in the metrics."""

from __future__ import annotations

from typing import Callable

import harness
from harness import GatewayService, Task, Workflow, WorkflowRunner

INIT_SECONDS = 0.1
KEEP_ALIVE_SECONDS = 1.0
TRAINING_RUNS = 3
SLOW_TARGET_SECONDS = 5.0      # the slow target answers after this long...
SLOW_TIMEOUT_SECONDS = 0.3     # ...but the warm-up gives up after this long

# Every task calls its service through the gateway; only the warm-up URLs registered with prewarmd
# differ: the gateway for svc-root and svc-ok, misbehaving targets for the other three. The failing
# tasks run long enough for their warm-ups to fail while the run is still active.
WORKFLOW = Workflow("mixed-targets", (
    Task("root", "svc-root", 0.8),
    Task("ok", "svc-ok", 0.3, ("root",)),
    Task("dead", "svc-dead", 1.0, ("root",)),
    Task("slow", "svc-slow", 1.0, ("root",)),
    Task("err", "svc-err", 1.0, ("root",)),
))
FAILING = ("svc-dead", "svc-slow", "svc-err")


def test_dead_slow_and_5xx_targets_beside_a_healthy_one(
        start_prewarmd: Callable[..., harness.Prewarmd],
        start_gateway: Callable[..., harness.Gateway]) -> None:
    pb = harness.pb2
    gateway = start_gateway([GatewayService(s, INIT_SECONDS, KEEP_ALIVE_SECONDS)
                             for s in WORKFLOW.services()])
    prewarmd = start_prewarmd()
    client = prewarmd.client()
    runner = WorkflowRunner(gateway, client)
    runner.register_services(["svc-root", "svc-ok"])
    with harness.TargetServer(status=200, delay=SLOW_TARGET_SECONDS) as slow, \
            harness.TargetServer(status=500) as err:
        targets = {
            "svc-dead": (f"http://127.0.0.1:{harness.closed_port()}/warmup", 2.0),
            "svc-slow": (slow.url(), SLOW_TIMEOUT_SECONDS),
            "svc-err": (err.url(), 2.0),
        }
        for name, (url, timeout) in targets.items():
            client.RegisterService(pb.RegisterServiceRequest(service=pb.Service(
                name=name, warmup_url=url, warmup_timeout=harness.duration(timeout),
                keep_alive=harness.duration(KEEP_ALIVE_SECONDS))))

        results = []
        for _ in range(TRAINING_RUNS + 1):
            result = runner.run(WORKFLOW, "prewarm")
            print(result.describe())
            print("plan at start:\n" + harness.plan_summary(result.plan, result.start))
            print("final plan:\n" + harness.plan_summary(
                client.GetPlan(pb.GetPlanRequest(run_id=result.run_id)).plan, result.start))
            assert result.ok and not result.report_errors, (result.describe(),
                                                           result.report_errors)
            results.append(result)
            runner.settle(result)
        measured = results[-1]

        # The healthy service's warm-up arrived on time: its task found it warm.
        ok = measured.tasks["ok"]
        assert ok.penalty <= 0.05, measured.describe()
        assert measured.gateway_stats["svc-ok"]["warmup_requests"] == 1, measured.gateway_stats
        # The misbehaving targets got their warm-ups in every run after the first (whose plan,
        # from priors, is too late to fire anything useful), and only those: they are not in the
        # gateway.
        assert slow.requests >= TRAINING_RUNS
        assert err.requests >= TRAINING_RUNS
        for name in FAILING:
            assert measured.gateway_stats[name]["warmup_requests"] == 0

        plan = client.GetPlan(pb.GetPlanRequest(run_id=measured.run_id)).plan
        by_task = {t.task_id: t for t in plan.tasks}
        for t in plan.tasks:
            print(f"{t.task_id}: {pb.WarmupState.Name(t.warmup_state)} "
                  f"{pb.TaskOutcome.Name(t.outcome)}")
        assert by_task["ok"].warmup_state == pb.WARMUP_STATE_READY, by_task["ok"]
        assert by_task["ok"].outcome == pb.TASK_OUTCOME_HIT, by_task["ok"]
        for task_id in ("dead", "slow", "err"):
            assert by_task[task_id].warmup_state == pb.WARMUP_STATE_FAILED, by_task[task_id]
            assert by_task[task_id].outcome != pb.TASK_OUTCOME_HIT, by_task[task_id]

        metrics = prewarmd.metrics_text()
        for name in FAILING:
            failed = harness.metric_value(metrics, "prewarm_warmups_total", service=name,
                                          result="failed")
            assert failed >= TRAINING_RUNS, (name, failed)
            stats = client.GetServiceStats(pb.GetServiceStatsRequest(service=name))
            assert stats.warmups_failed >= TRAINING_RUNS, stats
            assert stats.warmups_fired == stats.warmups_failed, stats
        assert harness.metric_value(metrics, "prewarm_warmups_total", service="svc-ok",
                                    result="failed") == 0
        assert harness.metric_value(metrics, "prewarm_warmups_total", service="svc-ok",
                                    result="ready") >= TRAINING_RUNS
        # A 500 and a timeout are not retried: one request per warm-up fired.
        for name, target in (("svc-err", err), ("svc-slow", slow)):
            stats = client.GetServiceStats(pb.GetServiceStatsRequest(service=name))
            assert target.requests == stats.warmups_fired, (name, target.requests, stats)
