#!/bin/sh
# Reproduces the policy comparison of docs/BENCHMARKS.md: builds the simulator, runs every
# workload x policy on the strict and the lenient platform model, and draws the plots.
# About 10 s of CPU in all. Run from the repository root; plots need python3-matplotlib.
set -eu
ninja -C build policy_sim
mkdir -p bench/policy_sim/results docs/img
build/bench/policy_sim/policy_sim --out_dir=bench/policy_sim/results >/dev/null
build/bench/policy_sim/policy_sim --warmup_holds_slot=false --out_dir=bench/policy_sim/results \
    --output_name=policy_sim_lenient >/dev/null
/usr/bin/python3 bench/policy_sim/plot.py bench/policy_sim/results/policy_sim.csv docs/img \
    --lenient bench/policy_sim/results/policy_sim_lenient.csv
