#!/usr/bin/env bash
# Sanitizer builds of the C++ unit suites, each in a build directory of its own, with clang 14:
#
#   scripts/sanitize.sh          # both
#   scripts/sanitize.sh asan     # ASan+UBSan over predictor_test, server_test, prewarmctl_test
#   scripts/sanitize.sh tsan     # TSan over server_test
#
# Any report fails the run (halt_on_error=1, -fno-sanitize-recover=all, non-zero exit). Only the
# unit test targets are built: no benchmarks, no Python suites.
#
# TSan and absl::Mutex: Debian's libabsl_synchronization is compiled without TSan, so TSan cannot
# see its locks synchronise anything and would report every ABSL_GUARDED_BY member two threads
# touch. tests/sanitize/absl_tsan_shim.cc wraps (ld --wrap) Mutex, CondVar and Notification with
# the __tsan_mutex_* annotations abseil itself makes when built with ABSL_HAVE_THREAD_SANITIZER;
# tests/sanitize/tsan_canary.cc proves it before the suite runs: properly locked hand-offs must
# be clean and a deliberately unlocked write must be reported.
set -euo pipefail
cd "$(dirname "$0")/.."

which=${1:-all}
cxx=${CXX_SANITIZE:-clang++-14}
jobs=$(nproc)
if ! command -v "$cxx" >/dev/null; then
  echo "sanitize: $cxx not found; scripts/install-deps.sh installs clang-14" >&2
  exit 2
fi

configure() {  # build_dir cxx_flags linker_flags [libraries linked last]
  cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
    -DPREWARM_BUILD_BENCHMARKS=OFF -DCMAKE_CXX_FLAGS="$2" -DCMAKE_EXE_LINKER_FLAGS="$3" \
    -DCMAKE_CXX_STANDARD_LIBRARIES="${4:-}" >/dev/null
}

step() { echo "sanitize: $*"; }

run_asan() {
  local flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
  configure build-asan "$flags" "-fsanitize=address,undefined"
  cmake --build build-asan --parallel "$jobs" --target predictor_test server_test prewarmctl_test
  export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  for t in tests/predictor/predictor_test tests/clients/cpp/prewarmctl_test tests/server/server_test; do
    step "ASan+UBSan: $t"
    "build-asan/$t" --gtest_brief=1
  done
}

run_tsan() {
  local shim=build-tsan/absl_tsan_shim.o
  mkdir -p build-tsan
  "$cxx" -std=c++20 -O1 -g -fsanitize=thread -c tests/sanitize/absl_tsan_shim.cc -o "$shim"
  local wraps
  wraps=$(grep -o 'WRAP(_Z[A-Za-z0-9_]*)' tests/sanitize/absl_tsan_shim.cc | sort -u |
          sed 's/WRAP(\(.*\))/-Wl,--wrap=\1/' | tr '\n' ' ')
  local link="-fsanitize=thread $wraps"
  # Last on every link line, so that the shim's __real_ calls find Debian's absl.
  local libs="$PWD/$shim -labsl_synchronization -labsl_time -labsl_base"
  # ignore_noninstrumented_modules: memcpy and friends called from inside Debian's uninstrumented
  # libraries (gRPC, protobuf, absl) are not checked; their accesses are invisible anyway.
  export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1

  step "TSan: the canary (absl::Mutex must be visible to TSan)"
  "$cxx" -std=c++20 -O1 -g -fsanitize=thread tests/sanitize/tsan_canary.cc $link $libs \
    -o build-tsan/tsan_canary
  build-tsan/tsan_canary guarded
  if build-tsan/tsan_canary racy >build-tsan/tsan_canary_racy.log 2>&1 ||
     ! grep -q "ThreadSanitizer: data race" build-tsan/tsan_canary_racy.log; then
    cat build-tsan/tsan_canary_racy.log >&2
    echo "sanitize: TSan missed the canary's deliberate race: TSan reports cannot be trusted" >&2
    exit 1
  fi
  step "TSan: the canary's deliberate race was reported, as it must be"

  configure build-tsan "-fsanitize=thread -fno-omit-frame-pointer" "$link" "$libs"
  cmake --build build-tsan --parallel "$jobs" --target server_test
  # Not PrewarmServiceTest, PrewarmServiceDrainTest nor GatedServiceTest: they run a gRPC server
  # in process (GatedServiceTest opens WatchWarmups streams, whose reactor grpcpp's inline headers
  # construct on one thread and gRPC's executor reads on another), and the hand-offs inside
  # Debian's uninstrumented gRPC (completion queues, call refcounts created in grpcpp's inline
  # headers on one thread and dropped on another) are invisible to TSan: false reports in
  # grpc::internal. The adapter delegates at once to RunRegistry, which the rest of the suite
  # drives from many threads.
  step "TSan: tests/server/server_test (all but the three suites with a gRPC server)"
  build-tsan/tests/server/server_test --gtest_brief=1 \
      --gtest_filter='-PrewarmServiceTest.*:PrewarmServiceDrainTest.*:GatedServiceTest.*'
}

case $which in
  asan) run_asan ;;
  tsan) run_tsan ;;
  all) run_asan; run_tsan ;;
  *) echo "usage: scripts/sanitize.sh [asan|tsan|all]" >&2; exit 2 ;;
esac
step "clean ($which)"
