#!/usr/bin/python3
"""The seed paper's experiment, reproduced locally at full scale: no pre-warming vs the paper's eager
pre-warmer vs prewarm's just-in-time warm-ups.

A chain of three tasks (3 s, 7 s and 5 s of work, as in the paper), each one HTTP call to its own
serverless service behind the local scale-to-zero gateway (deploy/local/gateway.py: a real process
is spawned on the first request; init 1 s, so a cold start costs about 1.1 s with the spawn). Every
run starts fully cold, as after a scale-to-zero. Policies:

  none     no pre-warming: every task pays its cold start;
  eager    the paper's Pre-Warmer: at run start, call /warmup of every downstream service at once;
  prewarm  announce the run to prewarmd (Prewarm) and report task timings (ReportTiming); prewarmd
           fires each downstream warm-up itself, just before its task starts. Its history starts
           empty: it first learns from a few training runs of the same workflow.

Prints, as a Markdown table, per policy: the cold-start penalty each task paid (the time its call
waited for a process start, from the gateway's X-Gateway-Wait-Seconds), the total run time and the
idle warm container-seconds (gateway /_gateway/stats at the end of the run; "idle before use"
leaves out each service's idle tail after its last task, which is the same for every policy).

Usage (about 2.5 minutes at full scale):
  /usr/bin/python3 bench/seed_experiment.py [--scale 1.0] [--build-dir build]
Needs `ninja -C build prewarmd prewarm_python_stubs`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import harness  # noqa: E402
from harness import GatewayService, RunResult, WorkflowRunner  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies every time: task work, init (cold start), keep-alive "
                             "[1.0 = the paper's 3 s, 7 s, 5 s]")
    parser.add_argument("--build-dir", type=Path, default=REPO / "build",
                        help="CMake build directory with server/prewarmd and python/ [build]")
    parser.add_argument("--training-runs", type=int, default=3,
                        help="prewarm runs to learn from before the measured ones [3]")
    parser.add_argument("--runs", type=int, default=1, help="measured runs per policy [1]")
    parser.add_argument("--init-seconds", type=float, default=1.0,
                        help="gateway init_seconds of each service, before --scale [1.0]")
    parser.add_argument("--keep-alive", type=float, default=15.0,
                        help="gateway keep-alive (scale-to-zero after this idle time), before "
                             "--scale; longer than the eager warm-up's longest idle wait (about "
                             "10 s) [15]")
    parser.add_argument("--delay-cost-ratio", type=float, default=0.0,
                        help="alpha/beta sent with Prewarm; 0 = the server's default [0]")
    parser.add_argument("--verbose", action="store_true", help="print every run")
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.training_runs < 0 or args.runs < 1:
        parser.error("--scale must be > 0, --training-runs >= 0, --runs >= 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    import os  # noqa: PLC0415
    os.environ["PREWARM_BUILD_DIR"] = str(args.build_dir.resolve())
    missing = harness.missing_build_products()
    if missing:
        print(f"seed_experiment: {missing}", file=sys.stderr)
        return 2

    command = "/usr/bin/python3 bench/seed_experiment.py " + " ".join(
        shlex.quote(a) for a in argv) if argv else "/usr/bin/python3 bench/seed_experiment.py"
    print(f"```\n{command.strip()}\n```\n", flush=True)

    workflow = harness.seed_chain(args.scale)
    init = args.init_seconds * args.scale
    keep_alive = args.keep_alive * args.scale
    log = (lambda text: print(text, flush=True)) if args.verbose else \
        (lambda text: print(text, file=sys.stderr, flush=True))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="prewarm-seed-") as d, \
            harness.Gateway(Path(d) / "gateway",
                            [GatewayService(s, init, keep_alive) for s in workflow.services()]
                            ) as gateway, \
            harness.Prewarmd(Path(d) / "prewarmd") as prewarmd:
        runner = WorkflowRunner(gateway, prewarmd.client(), task_timeout=600)
        runner.register_services(workflow.services())
        results: dict[str, list[RunResult]] = {"none": [], "eager": [], "prewarm": []}

        previous: list[RunResult] = []

        def run(mode: str, label: str) -> RunResult:
            if previous:  # Start fully cold: wait out the keep-alive where needed, reset.
                runner.settle(previous.pop())
            result = runner.run(workflow, mode, delay_cost_ratio=args.delay_cost_ratio)
            log(f"[{time.monotonic() - started:6.1f} s] {label}: " + result.describe())
            if not result.ok or result.report_errors:
                raise RuntimeError(f"run failed: {result.describe()} {result.report_errors}")
            previous.append(result)
            return result

        for mode in ("none", "eager"):
            for i in range(args.runs):
                results[mode].append(run(mode, f"{mode} {i + 1}/{args.runs}"))
        for i in range(args.training_runs):
            run("prewarm", f"prewarm training {i + 1}/{args.training_runs}")
        for i in range(args.runs):
            results["prewarm"].append(run("prewarm", f"prewarm {i + 1}/{args.runs}"))
        stats = {s: prewarmd.client().GetServiceStats(
            harness.pb2.GetServiceStatsRequest(service=s)) for s in workflow.services()}

    tasks = ", ".join(f"{t.task_id} {t.sleep:g} s" for t in workflow.tasks)
    print(f"Seed chain ({tasks}; init {init:g} s, keep-alive {keep_alive:g} s; "
          f"prewarm trained on {args.training_runs} run(s); {args.runs} measured run(s) per "
          f"policy, averaged):\n")
    print(harness.comparison_table(results))
    none = harness.mean(r.downstream_penalty for r in results["none"])
    for mode in ("eager", "prewarm"):
        paid = harness.mean(r.downstream_penalty for r in results[mode])
        hidden = 100 * (1 - paid / none) if none > 0 else float("nan")
        print(f"\n- {mode}: hides {hidden:.0f}% of the downstream (task2 + task3) cold-start delay "
              f"that none pays ({none:.2f} s); run time "
              f"{harness.mean(r.total_seconds for r in results[mode]):.2f} s vs "
              f"{harness.mean(r.total_seconds for r in results['none']):.2f} s; idle before use "
              f"{harness.mean(r.idle_before_use_seconds for r in results[mode]):.2f} s.", end="")
    print("\n\nWhat prewarmd learned (mean task duration / cold start):")
    for s, st in stats.items():
        print(f"- {s}: {st.duration.mean.ToNanoseconds() / 1e9:.2f} s over "
              f"{st.duration.sample_count} runs / {st.cold_start.mean.ToNanoseconds() / 1e9:.2f} s "
              f"over {st.cold_start.sample_count} observations; hits {st.hit_count}, misses "
              f"{st.miss_count}, warm-ups fired {st.warmups_fired}")
    print(f"\n(took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
