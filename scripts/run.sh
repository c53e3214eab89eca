#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (packages), builds, and runs prewarmd on its defaults:
# gRPC on 127.0.0.1:50051, metrics on 127.0.0.1:9464, store ./prewarm.db. Extra arguments go to
# prewarmd (see `build/server/prewarmd --help`). Stop it with Ctrl-C (SIGINT) or SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --parallel "$(nproc)" --target prewarmd
exec build/server/prewarmd "$@"
