#!/usr/bin/env python3
"""Per-task summary of a policy_sim --trace: how often each task ran, was cold, and why.

  build/bench/policy_sim/policy_sim --workloads=branchy --policies=prewarm:20 \
      --trace=branchy:prewarm:20 2>/dev/null | bench/policy_sim/trace_summary.py
"""
import collections
import re
import sys

LINE = re.compile(r"^  (\S+)\s+(hideable|root|skipped)\s+start=(\S+) waited=(\S+)(.*)$")


def main():
    stats = collections.defaultdict(lambda: collections.Counter())
    delay = collections.Counter()
    # Hideable tasks by (decision/warm-up state/outcome): count and delay paid.
    causes = collections.Counter()
    cause_delay = collections.Counter()
    for line in sys.stdin:
        m = LINE.match(line)
        if not m:
            continue
        task, kind, _, waited, rest = m.groups()
        s = stats[task]
        s[kind] += 1
        if kind == "skipped":
            w = re.search(r"warmup=WARMUP_STATE_(\w+)", rest)
            if w:
                s["skipped warmup " + w.group(1).lower()] += 1
            continue
        w = float(waited)
        if w > 1e-3:
            s["cold"] += 1
            delay[task] += w
        o = re.search(r"decision=WARMUP_DECISION_(\w+) warmup=WARMUP_STATE_(\w+).*"
                      r"outcome=TASK_OUTCOME_(\w+)", rest)
        if o:
            cause = "%s/%s/%s" % tuple(g.lower() for g in o.groups())
            s[cause] += 1
            if kind == "hideable":
                causes[cause] += 1
                cause_delay[cause] += w
    for task, s in stats.items():
        ran = s["hideable"] + s["root"]
        details = ", ".join("%s %d" % (k, v) for k, v in sorted(s.items())
                            if k not in ("hideable", "root", "cold"))
        print("%-10s ran %3d  cold %3d  delay %7.1f s  | %s" % (task, ran, s["cold"], delay[task], details))
    total = sum(cause_delay.values())
    print("\nhideable tasks by decision/warm-up/outcome:")
    for cause, n in causes.most_common():
        print("  %-40s %5d tasks  %8.1f s delay (%4.1f%%)" % (
            cause, n, cause_delay[cause], 100 * cause_delay[cause] / total if total else 0))


if __name__ == "__main__":
    main()
