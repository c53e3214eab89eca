#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (packages), builds everything, and runs every test:
# C++ unit and integration tests, the proto lint, and the Python suites, all through CTest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build --parallel "$(nproc)"
ctest --test-dir build --output-on-failure --parallel "$(nproc)" --timeout 600
