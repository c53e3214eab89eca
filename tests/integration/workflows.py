"""Integration harness, workflow driving: a small workflow runner over the processes of
processes.py, and the seed paper's comparison.

- `Workflow`, `Task`, `seed_chain()`: a DAG of tasks, each one HTTP call to a gateway service.
- `WorkflowRunner`: runs a DAG of tasks like a scheduler (each task starts as soon as its upstream
  tasks finished, on its own thread), each task one HTTP call through the gateway, under one of three
  policies: "none", "eager" (the seed paper: warm every downstream service at run start) and
  "prewarm" (announce the run to prewarmd and report task timings; prewarmd fires the warm-ups).
  Measures per task the cold-start penalty paid (the gateway's X-Gateway-Wait-Seconds) and per run
  the total time and the idle warm container-seconds (from the gateway's /_gateway/stats).
- `comparison_table()`, `plan_summary()`: what the runs measured, as text.

The generated stubs are read from processes (`pb2 = processes.pb2`) when used, since load_stubs()
sets them there.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

import processes
from processes import Client, Gateway, duration, load_stubs, timestamp

MODES = ("none", "eager", "prewarm")


# --------------------------------------------------------------------------------------------
# Workflows


@dataclass(frozen=True)
class Task:
    task_id: str
    service: str
    sleep: float  # seconds the service sleeps for this task (its warm duration)
    upstream: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workflow:
    workflow_id: str
    tasks: tuple[Task, ...]

    def task(self, task_id: str) -> Task:
        return next(t for t in self.tasks if t.task_id == task_id)

    @property
    def downstream(self) -> list[Task]:
        """Tasks with upstream tasks: the ones pre-warming can help."""
        return [t for t in self.tasks if t.upstream]

    def services(self) -> list[str]:
        return list(dict.fromkeys(t.service for t in self.tasks))

    def proto_tasks(self) -> list[Any]:
        load_stubs()
        pb2 = processes.pb2
        return [pb2.Task(task_id=t.task_id, service=t.service, upstream_task_ids=list(t.upstream))
                for t in self.tasks]


def seed_chain(scale: float = 1.0, workflow_id: str = "seed-chain",
               services: Sequence[str] = ("svc-a", "svc-b", "svc-c")) -> Workflow:
    """The seed paper's workflow: three sequential tasks of 3 s, 7 s and 5 s (times `scale`)."""
    a, b, c = services
    return Workflow(workflow_id, (
        Task("task1", a, round(3.0 * scale, 6)),
        Task("task2", b, round(7.0 * scale, 6), ("task1",)),
        Task("task3", c, round(5.0 * scale, 6), ("task2",)),
    ))


@dataclass
class TaskResult:
    task_id: str
    service: str
    start: float = 0.0        # unix seconds: the task started (after its upstreams finished)
    call_start: float = 0.0   # the HTTP call to the service was sent
    call_end: float = 0.0
    finish: float = 0.0       # the task finished
    status: int = 0           # HTTP status of the call; 0 when it failed to connect
    cold: bool = False        # X-Gateway-Cold-Start
    wait_seconds: float = 0.0  # X-Gateway-Wait-Seconds: the cold-start penalty paid
    error: str = ""

    @property
    def penalty(self) -> float:
        return self.wait_seconds if self.cold else 0.0


@dataclass
class RunResult:
    run_id: str
    mode: str
    workflow: Workflow
    start: float               # unix seconds, before the policy's run-start action
    finish: float = 0.0        # the last task finished
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    gateway_stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # at run end
    plan: Any = None           # prewarm: the PrewarmResponse plan
    prewarm_rpc_seconds: float = 0.0  # prewarm: how long the Prewarm call took
    report_errors: list[str] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return self.finish - self.start

    def penalty(self, task_id: str) -> float:
        return self.tasks[task_id].penalty

    @property
    def downstream_penalty(self) -> float:
        return sum(self.tasks[t.task_id].penalty for t in self.workflow.downstream)

    @property
    def idle_seconds(self) -> float:
        """Idle warm container-seconds of the run's services, from the gateway, at run end."""
        return sum(self.gateway_stats[s]["idle_seconds"] for s in self.workflow.services())

    @property
    def idle_before_use_seconds(self) -> float:
        """idle_seconds minus each service's idle tail after its last task (the same for every
        policy): the idle time pre-warming is responsible for."""
        tail = 0.0
        for service in self.workflow.services():
            last = max(r.call_end for r in self.tasks.values() if r.service == service)
            tail += max(0.0, self.finish - last)
        return max(0.0, self.idle_seconds - tail)

    @property
    def ok(self) -> bool:
        return all(r.status == 200 for r in self.tasks.values())

    def describe(self) -> str:
        parts = [f"{self.mode} {self.run_id}: total {self.total_seconds:.3f} s, idle "
                 f"{self.idle_seconds:.3f} s, Prewarm call {self.prewarm_rpc_seconds:.3f} s"]
        for t in self.workflow.tasks:
            r = self.tasks.get(t.task_id)
            if r is None:
                parts.append(f"  {t.task_id}: did not run")
                continue
            parts.append(f"  {t.task_id} ({r.service}): start +{r.start - self.start:.3f} "
                         f"finish +{r.finish - self.start:.3f} cold={r.cold} "
                         f"wait={r.wait_seconds:.3f} status={r.status} {r.error}")
        return "\n".join(parts)


def plan_summary(plan: Any, start: Optional[float] = None) -> str:
    """One line per task of a RunPlan: decision, warm-up time (relative to `start`), states."""
    load_stubs()
    pb2 = processes.pb2
    t0 = start if start is not None else plan.start_time.ToNanoseconds() / 1e9
    lines = []
    for t in plan.tasks:
        warm = (f"{t.warmup_time.ToNanoseconds() / 1e9 - t0:+.3f}"
                if t.HasField("warmup_time") else "-")
        lines.append(f"  {t.task_id}: {pb2.WarmupDecision.Name(t.decision)} at {warm} "
                     f"expected start {t.expected_start_time.ToNanoseconds() / 1e9 - t0:+.3f} "
                     f"{pb2.WarmupState.Name(t.warmup_state)} {pb2.TaskOutcome.Name(t.outcome)}"
                     f" ({t.reason})")
    return "\n".join(lines)


class WorkflowRunner:
    """Runs workflows through the gateway, like a scheduler, under a pre-warming policy.

    For "prewarm", `client` talks to prewarmd: the run is announced with Prewarm at its start and
    every task reports STARTED, SERVICE_INVOKED (cold, cold_start from the gateway's headers) and
    FINISHED (or FAILED) with ReportTiming. Reporting never breaks a task: errors are collected in
    RunResult.report_errors.
    """

    def __init__(self, gateway: Gateway, client: Optional[Client] = None,
                 report_timeout: float = 10.0, task_timeout: float = 120.0) -> None:
        self.gateway = gateway
        self.client = client
        self.report_timeout = report_timeout
        self.task_timeout = task_timeout

    # Services -------------------------------------------------------------------------------

    def register_services(self, names: Iterable[str], **overrides: Any) -> None:
        """Registers the gateway's services with prewarmd: warm-up URL through the gateway, keep-alive
        equal to the gateway's. `overrides` are extra Service fields."""
        pb2 = processes.pb2
        assert self.client is not None
        for name in names:
            svc = self.gateway.services[name]
            self.client.RegisterService(pb2.RegisterServiceRequest(service=pb2.Service(
                name=name, warmup_url=self.gateway.url(name, "/warmup"),
                keep_alive=duration(svc.keep_alive_seconds), **overrides)))

    # Runs -----------------------------------------------------------------------------------

    def run(self, workflow: Workflow, mode: str, run_id: Optional[str] = None,
            delay_cost_ratio: float = 0.0,
            on_started: Optional[Callable[[RunResult], None]] = None) -> RunResult:
        """Runs `workflow` once under `mode` and returns what it measured. `on_started` (if given)
        is called on a separate thread right after the run-start action (for fault injection)."""
        pb2 = processes.pb2
        assert mode in MODES, mode
        if mode == "prewarm":
            assert self.client is not None, "mode 'prewarm' needs a prewarmd client"
        run_id = run_id or f"{workflow.workflow_id}-{mode}-{uuid.uuid4().hex[:12]}"
        result = RunResult(run_id=run_id, mode=mode, workflow=workflow, start=time.time())

        if mode == "eager":
            # The seed paper's Pre-Warmer: every downstream service at once, without waiting.
            for service in dict.fromkeys(t.service for t in workflow.downstream):
                threading.Thread(target=self._warm, args=(service,), daemon=True).start()
        elif mode == "prewarm":
            response = self.client.Prewarm(pb2.PrewarmRequest(
                run_id=run_id, workflow_id=workflow.workflow_id, tasks=workflow.proto_tasks(),
                start_time=timestamp(result.start), delay_cost_ratio=delay_cost_ratio),
                timeout=self.report_timeout)
            result.plan = response.plan
            result.prewarm_rpc_seconds = time.time() - result.start
        hook_thread = None
        if on_started is not None:
            hook_thread = threading.Thread(target=on_started, args=(result,), daemon=True)
            hook_thread.start()

        self._schedule(workflow, result)
        result.finish = max(r.finish for r in result.tasks.values())
        result.gateway_stats = self.gateway.stats()
        if hook_thread is not None:
            hook_thread.join(timeout=self.task_timeout)
        return result

    def settle(self, result: RunResult) -> None:
        """Makes the next run start fully cold, as after a scale-to-zero: for "prewarm" runs waits
        until every service's keep-alive has passed since the run last used it (prewarmd tracks
        when services are warm, and must not think they still are), then resets the gateway."""
        if result.mode == "prewarm":
            keep_alive = max(self.gateway.services[s].keep_alive_seconds
                             for s in result.workflow.services())
            remaining = result.finish + keep_alive + 0.15 - time.time()
            if remaining > 0:
                time.sleep(remaining)
        self.gateway.reset()

    def _warm(self, service: str) -> None:
        try:
            self.gateway.request(f"/{service}/warmup", timeout=self.task_timeout)
        except OSError:
            pass

    def _schedule(self, workflow: Workflow, result: RunResult) -> None:
        cond = threading.Condition()
        finished: set[str] = set()
        started: set[str] = set()
        threads: list[threading.Thread] = []

        def ready() -> list[Task]:
            return [t for t in workflow.tasks if t.task_id not in started
                    and all(u in finished for u in t.upstream)]

        def launch_ready() -> None:  # with cond held
            for t in ready():
                started.add(t.task_id)
                th = threading.Thread(target=body, args=(t,), daemon=True,
                                      name=f"task-{t.task_id}")
                threads.append(th)
                th.start()

        def body(task: Task) -> None:
            try:
                self._run_task(task, result)
            finally:
                with cond:
                    finished.add(task.task_id)
                    launch_ready()
                    cond.notify_all()

        deadline = time.monotonic() + self.task_timeout
        with cond:
            launch_ready()
            while len(finished) < len(workflow.tasks):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"run {result.run_id} did not finish within "
                                       f"{self.task_timeout:g} s:\n{result.describe()}")
                cond.wait(remaining)
        for th in threads:
            th.join()

    def _run_task(self, task: Task, result: RunResult) -> None:
        pb2 = processes.pb2
        r = TaskResult(task.task_id, task.service)
        result.tasks[task.task_id] = r
        r.start = time.time()
        self._report(result, task, pb2.TASK_EVENT_TYPE_STARTED, r.start)
        r.call_start = time.time()
        try:
            resp = self.gateway.request(f"/{task.service}/work?sleep={task.sleep}",
                                        timeout=self.task_timeout)
            r.status, r.cold, r.wait_seconds = resp.status, resp.cold, resp.wait_seconds
            if resp.status != 200:
                r.error = resp.body.decode(errors="replace")[:200]
        except OSError as err:
            r.error = str(err)
        r.call_end = time.time()
        if r.status:
            self._report(result, task, pb2.TASK_EVENT_TYPE_SERVICE_INVOKED, r.call_start,
                         cold=r.cold, cold_start=r.wait_seconds if r.cold else None)
        r.finish = time.time()
        self._report(result, task, pb2.TASK_EVENT_TYPE_FINISHED if r.status == 200
                     else pb2.TASK_EVENT_TYPE_FAILED, r.finish)

    def _report(self, result: RunResult, task: Task, event: int, at: float,
                cold: Optional[bool] = None, cold_start: Optional[float] = None) -> None:
        if result.mode != "prewarm":
            return
        pb2, grpc = processes.pb2, processes.grpc
        request = pb2.ReportTimingRequest(run_id=result.run_id, task_id=task.task_id, event=event,
                                          event_time=timestamp(at))
        if cold is not None:
            request.cold = cold
        if cold_start is not None:
            request.cold_start.CopyFrom(duration(cold_start))
        # Like a scheduler's listener riding out a prewarmd restart: wait for the channel to be
        # ready, and retry a call that died with its connection (UNAVAILABLE) within the budget.
        deadline = time.monotonic() + self.report_timeout
        while True:
            try:
                self.client.ReportTiming(request, timeout=max(0.01, deadline - time.monotonic()),
                                         wait_for_ready=True)
                return
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                result.report_errors.append(
                    f"{task.task_id} {pb2.TaskEventType.Name(event)}: {err.code().name} "
                    f"{err.details()}")
                return


# --------------------------------------------------------------------------------------------
# Reporting


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def comparison_table(results: dict[str, list[RunResult]],
                     idle_column: str = "idle_seconds") -> str:
    """The seed paper's comparison as a Markdown table: per policy (averaged over its runs) the
    cold-start penalty of every task, the total run time and the idle warm container-seconds."""
    modes = [m for m in MODES if results.get(m)] + [m for m in results if m not in MODES]
    workflow = next(iter(results[modes[0]])).workflow
    task_ids = [t.task_id for t in workflow.tasks]
    header = (["policy", "runs"] + [f"{t} cold-start penalty (s)" for t in task_ids]
              + ["downstream penalty (s)", "total run time (s)", "idle warm container-s",
                 "idle before use (s)"])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for mode in modes:
        runs = results[mode]
        row = [mode, str(len(runs))]
        row += [f"{mean(r.penalty(t) for r in runs):.3f}" for t in task_ids]
        row += [f"{mean(r.downstream_penalty for r in runs):.3f}",
                f"{mean(r.total_seconds for r in runs):.3f}",
                f"{mean(r.idle_seconds for r in runs):.3f}",
                f"{mean(r.idle_before_use_seconds for r in runs):.3f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
