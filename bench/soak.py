#!/usr/bin/python3
"""Soak: steady workflow traffic against a real prewarmd for a long time, watching whether its
resources stay flat. Not a test (nothing here is timed or asserted by CI): a benchmark-style run
whose figures go to docs/BENCHMARKS.md.

    /usr/bin/python3 bench/soak.py                  # 10 minutes, build/server/prewarmd
    /usr/bin/python3 bench/soak.py --minutes 60 --threads 8 --build build

Traffic: `--threads` workers each run workflows back to back, a fixed set of workflows (so that
history keys stop growing once learned) of 3 to 5 tasks on managed services whose warm-up URL is a
local HTTP server, with unique run ids: Prewarm (start in 0.5 s), then STARTED/FINISHED per task in
topological order with short task durations, one run in 20 cancelled midway. Every `--sample`
seconds it reads prewarmd's /metrics and prints RSS (process_resident_memory_bytes), open files
(process_open_fds), pending warm-up timers (prewarm_pending_warmups) and active runs.

Verdict: the first 20% of the run is warm-up (history windows filling, allocator arenas growing);
over the rest, the median of its last half is compared with the median of its first half. FLAT
when RSS grew by at most max(4 MiB, 3%), open files by at most 2, and pending timers by at most
max(2, 10%); NOT FLAT otherwise. Exit code 0 for FLAT, 1 for NOT FLAT.
"""

from __future__ import annotations

import argparse
import http.server
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
import harness  # noqa: E402

SERVICES = [f"soak-svc-{i}" for i in range(6)]
# (workflow id, [(task, service index, upstream tasks)]): a fixed set, so history keys stay bounded.
WORKFLOWS = [
    ("soak-chain", [("a", 0, ()), ("b", 1, ("a",)), ("c", 2, ("b",))]),
    ("soak-fan", [("root", 3, ()), ("left", 4, ("root",)), ("right", 5, ("root",)),
                  ("join", 0, ("left", "right"))]),
    ("soak-long", [("s1", 1, ()), ("s2", 2, ("s1",)), ("s3", 3, ("s2",)), ("s4", 4, ("s3",)),
                   ("s5", 5, ("s4",))]),
]


class WarmupTarget(http.server.ThreadingHTTPServer):
    """Answers every warm-up with 200 at once."""

    daemon_threads = True

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET
            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, name="warmup-target", daemon=True).start()


class Worker(threading.Thread):
    def __init__(self, index: int, address: str, stop: threading.Event, seed: int) -> None:
        super().__init__(name=f"soak-{index}", daemon=True)
        self.index = index
        self.stop = stop
        self.rng = random.Random(seed)
        self.client = harness.Client(address, timeout=10)
        self.runs = 0
        self.events = 0
        self.errors = 0

    def run(self) -> None:
        pb = harness.pb2
        n = 0
        while not self.stop.is_set():
            n += 1
            workflow, tasks = WORKFLOWS[self.rng.randrange(len(WORKFLOWS))]
            run_id = f"soak-{self.index}-{n}"
            request = pb.PrewarmRequest(
                run_id=run_id, workflow_id=workflow,
                start_time=harness.timestamp(time.time() + 0.5),
                tasks=[pb.Task(task_id=t, service=SERVICES[s], upstream_task_ids=list(up))
                       for t, s, up in tasks])
            try:
                self.client.Prewarm(request)
                self.runs += 1
                time.sleep(0.5)
                cancel_at = self.rng.randrange(len(tasks)) if self.rng.random() < 0.05 else -1
                for i, (task, _, _) in enumerate(tasks):
                    if i == cancel_at:
                        self.client.CancelRun(pb.CancelRunRequest(run_id=run_id))
                        break
                    for event in (pb.TASK_EVENT_TYPE_STARTED, pb.TASK_EVENT_TYPE_FINISHED):
                        self.client.ReportTiming(pb.ReportTimingRequest(
                            run_id=run_id, task_id=task, event=event))
                        self.events += 1
                        if event == pb.TASK_EVENT_TYPE_STARTED:
                            time.sleep(self.rng.uniform(0.05, 0.25))
            except harness.grpc.RpcError as err:
                self.errors += 1
                print(f"{self.name}: {err.code().name}: {err.details()}", file=sys.stderr)
                time.sleep(0.5)


def median_change(values: list[float]) -> tuple[float, float]:
    """(median of the first half, median of the last half) of the values after the warm-up."""
    half = len(values) // 2
    return statistics.median(values[:half]), statistics.median(values[half:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="duration (default 10)")
    parser.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--build", type=Path, default=None,
                        help="build directory with server/prewarmd and python/ (default: "
                             "$PREWARM_BUILD_DIR or build)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.build is not None:
        args.build = args.build.resolve()

    reason = harness.missing_build_products(args.build)
    if reason:
        print(reason, file=sys.stderr)
        return 2
    harness.load_stubs(args.build)
    pb = harness.pb2
    target = WarmupTarget()
    with tempfile.TemporaryDirectory(prefix="prewarm-soak-") as work:
        prewarmd = harness.Prewarmd(Path(work), build=args.build)
        with prewarmd:
            client = prewarmd.client()
            for name in SERVICES:
                client.RegisterService(pb.RegisterServiceRequest(service=pb.Service(
                    name=name, warmup_url=f"http://127.0.0.1:{target.server_port}/{name}",
                    keep_alive=harness.duration(5))))
            stop = threading.Event()
            workers = [Worker(i, prewarmd.address, stop, args.seed * 1000 + i)
                       for i in range(args.threads)]
            for w in workers:
                w.start()
            print(f"soak: {args.threads} threads for {args.minutes:g} min against "
                  f"{prewarmd.binary} (pid {prewarmd.process.pid})")
            print(f"{'t (s)':>6} {'RSS MiB':>8} {'open fds':>8} {'pending':>8} {'active':>7} "
                  f"{'runs':>7} {'events':>8}")
            samples: list[tuple[float, float, float, float]] = []
            began = time.monotonic()
            end = began + args.minutes * 60
            while True:
                now = time.monotonic()
                text = prewarmd.metrics_text()
                rss = harness.metric_value(text, "process_resident_memory_bytes") / (1 << 20)
                fds = harness.metric_value(text, "process_open_fds")
                pending = harness.metric_value(text, "prewarm_pending_warmups")
                active = harness.metric_value(text, "prewarm_active_runs")
                samples.append((now - began, rss, fds, pending))
                print(f"{now - began:6.0f} {rss:8.1f} {fds:8.0f} {pending:8.0f} {active:7.0f} "
                      f"{sum(w.runs for w in workers):7d} {sum(w.events for w in workers):8d}",
                      flush=True)
                if now >= end:
                    break
                time.sleep(min(args.sample, max(0.0, end - time.monotonic())))
            stop.set()
            for w in workers:
                w.join(timeout=30)
            errors = sum(w.errors for w in workers)
            runs = sum(w.runs for w in workers)
            events = sum(w.events for w in workers)
    target.shutdown()

    steady = samples[len(samples) // 5:]
    rss0, rss1 = median_change([s[1] for s in steady])
    fd0, fd1 = median_change([s[2] for s in steady])
    p0, p1 = median_change([s[3] for s in steady])
    flat = (rss1 - rss0 <= max(4.0, 0.03 * rss0) and fd1 - fd0 <= 2
            and p1 - p0 <= max(2.0, 0.1 * p0))
    minutes = samples[-1][0] / 60
    print(f"soak: {runs} runs, {events} task events in {minutes:.1f} min "
          f"({events / max(1.0, samples[-1][0]):.0f} events/s), {errors} RPC errors")
    print(f"soak: after the warm-up, medians of first vs last half: RSS {rss0:.1f} -> {rss1:.1f} "
          f"MiB, open fds {fd0:.0f} -> {fd1:.0f}, pending warm-up timers {p0:.0f} -> {p1:.0f}")
    print(f"soak: verdict: {'FLAT' if flat else 'NOT FLAT'}")
    return 0 if flat and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
