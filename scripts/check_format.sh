#!/usr/bin/env bash
# Fails when a C++ file of the project differs from what .clang-format makes of it.
#   scripts/check_format.sh                 # every tracked .h/.cc (the deliberate violation excluded)
#   scripts/check_format.sh --fix           # rewrite them in place
#   scripts/check_format.sh --expect-violation FILE   # the check's own test: FILE must fail
set -euo pipefail
cd "$(dirname "$0")/.."
clang_format=$(command -v clang-format-14 || command -v clang-format || true)
if [[ -z $clang_format ]]; then
  echo "check_format: clang-format-14 is missing (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
if [[ ${1:-} == --expect-violation ]]; then
  if "$clang_format" --dry-run -Werror "$2" 2>/dev/null; then
    echo "check_format: $2 passed, but it must fail"
    exit 1
  fi
  echo "check_format: the violation in $2 was caught, as it must be"
  exit 0
fi
mapfile -t files < <(git ls-files '*.h' '*.cc' | grep -v '^tests/checks/format_violation.cc$')
if [[ ${1:-} == --fix ]]; then
  "$clang_format" -i "${files[@]}"
  exit 0
fi
failed=0
for f in "${files[@]}"; do
  if ! "$clang_format" --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "check_format: $f differs from .clang-format (scripts/check_format.sh --fix)"
    failed=$((failed + 1))
  fi
done
echo "check_format: $((${#files[@]} - failed)) passed, $failed failed"
((failed == 0))
