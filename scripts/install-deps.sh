#!/usr/bin/env bash
# Installs every build, test and runtime dependency of prewarm from Debian 12 packages.
# Idempotent: packages already present are skipped, and apt is not touched when nothing is missing.
set -euo pipefail

packages=(
  # Toolchain.
  g++ cmake ninja-build pkg-config git
  # Fuzzers and sanitizer builds (scripts/fuzz.sh, scripts/sanitize.sh): clang 14 with its
  # runtimes. -fsanitize=fuzzer links libFuzzer from libclang-rt-14-dev (libclang_rt.fuzzer), so
  # the separate libfuzzer-14-dev (a libFuzzer.a for other compilers) is not needed.
  clang-14 libclang-rt-14-dev
  # The style checks in the test command: clang-format, and clang's -Wthread-safety (clang-14).
  clang-format-14
  # C++ libraries (DESIGN §1).
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev libsqlite3-dev libcurl4-openssl-dev
  # prewarmd's allocator (CMake option PREWARM_TCMALLOC).
  libtcmalloc-minimal4
  # The PostgreSQL store (libpq), and a real PostgreSQL 15 server that its tests start (as the
  # unprivileged user nobody when run as root).
  libpq-dev postgresql
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  # prewarmctl reads YAML files with yaml-cpp (clients/cpp/yaml_value.cc).
  libyaml-cpp-dev
  # Python client, its tests and the proto lint (run with /usr/bin/python3); jsonschema for the
  # deployment manifests' conformance test (tests/deploy/test_deploy_conformance.py).
  python3 python3-grpcio python3-protobuf python3-pytest python3-yaml python3-jsonschema
  # Airflow conformance tests: Airflow's own session, listener and secrets code runs on these.
  python3-sqlalchemy python3-pluggy
  # Real peers used by the tests: a SQLite shell for inspection, Prometheus and promtool.
  sqlite3 prometheus curl
  # Plots of the policy comparison (bench/policy_sim/plot.py).
  python3-matplotlib
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
