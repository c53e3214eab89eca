#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (packages), builds, and runs the main job.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --parallel "$(nproc)" --target plan_example
exec build/bench/plan_example "$@"
