#!/usr/bin/env bash
# Builds the libFuzzer fuzzers (tests/fuzz/*_fuzz.cc) with clang, ASan and UBSan in build-fuzz/
# and runs each for a bounded time, starting from its committed seed corpus.
#
#   scripts/fuzz.sh              # 25 s per fuzzer (what CI runs)
#   scripts/fuzz.sh 600          # 10 minutes per fuzzer: the long run
#   scripts/fuzz.sh 60 registry  # only the named fuzzers
#
# Inputs that find new coverage are kept in build-fuzz/corpus/<fuzzer>/ (never in the committed
# seeds, which stay small; copy a few by hand when they are worth keeping). A crash leaves its input
# in build-fuzz/artifacts/ and makes the script exit 1 after the remaining fuzzers ran. Prints the
# executions each fuzzer reached.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-25}
shift || true
all=(registry url_allowlist dag config dag_file)
fuzzers=("${@:-${all[@]}}")
build=build-fuzz
cxx=${CXX_FUZZ:-clang++-14}

if ! command -v "$cxx" >/dev/null; then
  echo "fuzz: $cxx not found; scripts/install-deps.sh installs clang-14" >&2
  exit 2
fi
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
  -DPREWARM_FUZZ=ON -DPREWARM_BUILD_BENCHMARKS=OFF >/dev/null
targets=()
for f in "${fuzzers[@]}"; do targets+=("${f}_fuzz"); done
cmake --build "$build" --parallel "$(nproc)" --target "${targets[@]}"

mkdir -p "$build/artifacts"
# Leaks are findings too; a crash stops the fuzzer at once.
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
failed=()
summary=()
for f in "${fuzzers[@]}"; do
  seeds=tests/fuzz/corpus/$f
  work=$build/corpus/$f
  mkdir -p "$work"
  log=$build/artifacts/$f.log
  echo "fuzz: $f for ${seconds}s"
  rc=0
  "$build/tests/fuzz/${f}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=4096 -print_final_stats=1 -artifact_prefix="$build/artifacts/$f-" \
    "$work" "$seeds" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  if ((rc != 0)); then
    failed+=("$f")
    tail -40 "$log" >&2
    summary+=("$(printf '%-14s FAILED (exit %d) after %s executions; see %s' "$f" "$rc" "${execs:-?}" "$log")")
  else
    summary+=("$(printf '%-14s %10s executions in %ss, coverage %s edges, corpus %s inputs' \
      "$f" "${execs:-?}" "$seconds" "${cov:-?}" "$(ls "$work" | wc -l)")")
  fi
done
printf 'fuzz: %s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
  echo "fuzz: FAILED: ${failed[*]} (inputs in $build/artifacts/)" >&2
  exit 1
fi
