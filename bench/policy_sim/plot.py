#!/usr/bin/python3
"""Pareto pictures of the policy comparison: share of hideable cold-start delay hidden against
idle warm container-seconds per run, one PNG per workload plus one grid of all of them.

  /usr/bin/python3 bench/policy_sim/plot.py bench/policy_sim/results/policy_sim.csv docs/img \
      [--lenient bench/policy_sim/results/policy_sim_lenient.csv]

Needs matplotlib (Debian: apt-get install python3-matplotlib).
"""
import argparse
import collections
import csv
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BASELINES = {
    # policy: (marker, colour)
    "none": ("o", "#7f7f7f"),
    "eager": ("s", "#d62728"),
    "lookahead": ("D", "#ff7f0e"),
    "pinger": ("v", "#8c564b"),
    "always_on": ("^", "#9467bd"),
    "histogram": ("P", "#e377c2"),
    "oracle95": ("*", "#2ca02c"),
}
PREWARM_COLOUR = "#1f77b4"


def load(path):
    by_workload = collections.OrderedDict()
    with open(path) as f:
        for row in csv.DictReader(f):
            by_workload.setdefault(row["workload"], []).append(row)
    return by_workload


def hidden(row):
    return 100 * float(row["hidden_share"]) if row["hidden_share"] else float("nan")


def idle(row):
    return float(row["idle_per_run_s"])


def draw(ax, workload, rows, lenient_rows=None):
    for row in rows:
        policy = row["policy"]
        if policy in BASELINES:
            marker, colour = BASELINES[policy]
            ax.scatter(idle(row), hidden(row), marker=marker, color=colour,
                       s=110 if policy == "oracle95" else 55, zorder=3, label=policy)
    def curve(rows, style, label):
        points = sorted((float(r["delay_cost_ratio"]), idle(r), hidden(r))
                        for r in rows if float(r["delay_cost_ratio"]) > 0)
        if not points:
            return
        ax.plot([p[1] for p in points], [p[2] for p in points], style, color=PREWARM_COLOUR,
                marker="o" if style == "-" else "x", markersize=5, zorder=4, label=label,
                alpha=1 if style == "-" else 0.55)
        if style == "-":
            for ratio, x, y in points:
                ax.annotate("%g" % ratio, (x, y), textcoords="offset points", xytext=(4, -11),
                            fontsize=7, color=PREWARM_COLOUR)
    curve(rows, "-", "prewarm (a/b labelled)")
    if lenient_rows:
        curve(lenient_rows, "--", "prewarm, lenient platform")
    ax.axhline(95, color="#2ca02c", linewidth=0.8, linestyle=":")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(0, 2 * max(idle(r) for r in rows + (lenient_rows or [])))
    ax.set_ylim(-5, 103)
    ax.set_title(workload, fontsize=10)
    ax.set_xlabel("idle warm container-seconds per run (log)", fontsize=8)
    ax.set_ylabel("hideable cold-start delay hidden (%)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, which="both", linewidth=0.3, alpha=0.5)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("out_dir")
    parser.add_argument("--lenient", help="CSV of the same runs on the lenient platform")
    args = parser.parse_args()
    data = load(args.csv)
    lenient = load(args.lenient) if args.lenient else {}
    os.makedirs(args.out_dir, exist_ok=True)
    for workload, rows in data.items():
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        draw(ax, workload, rows, lenient.get(workload))
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        path = os.path.join(args.out_dir, "policy_sim_%s.png" % workload)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        print(path)
    cols = 3
    nrows = math.ceil(len(data) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.8 * nrows), squeeze=False)
    for ax, (workload, rows) in zip(axes.flat, data.items()):
        draw(ax, workload, rows, lenient.get(workload))
    for ax in list(axes.flat)[len(data):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path = os.path.join(args.out_dir, "policy_sim_all.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(path)


if __name__ == "__main__":
    main()
