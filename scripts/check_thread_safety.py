#!/usr/bin/env python3
"""Compiles server/ and predictor/ with clang's -Wthread-safety -Werror, syntax only.

GCC ignores the ABSL_GUARDED_BY / ABSL_EXCLUSIVE_LOCKS_REQUIRED annotations the code carries;
clang checks them. This reads the build's compile_commands.json (CMAKE_EXPORT_COMPILE_COMMANDS is
on), takes every production source under server/ and predictor/, and runs clang on it with the
same include paths and definitions. Exit 1 (and clang's diagnostics) on any violation.

    scripts/check_thread_safety.py [BUILD_DIR] [--clang clang++-14]
    scripts/check_thread_safety.py BUILD_DIR --expect-violation FILE   # the check's own test
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECKED = ("server", "predictor")
# GCC-only flags clang would warn about or reject.
DROP_PREFIXES = ("-fno-fat-lto", "-fdiagnostics-color", "-Wno-maybe-uninitialized")


def sources(build: Path) -> list[dict]:
    commands = json.loads((build / "compile_commands.json").read_text())
    chosen = []
    for entry in commands:
        path = Path(entry["file"]).resolve()
        try:
            top = path.relative_to(REPO).parts[0]
        except ValueError:
            continue
        if top in CHECKED and path.suffix == ".cc" and not path.name.endswith("_benchmark.cc"):
            chosen.append(entry)
    return chosen


def clang_command(entry: dict, clang: str) -> list[str]:
    args = entry.get("arguments") or shlex.split(entry["command"])
    out = [clang, "-fsyntax-only", "-Wthread-safety", "-Wthread-safety-beta",
           "-Werror=thread-safety", "-Werror=thread-safety-beta", "-Wno-unknown-warning-option"]
    skip = False
    for arg in args[1:]:
        if skip:
            skip = False
            continue
        if arg in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if arg in ("-c", "-MD", "-MMD") or arg.startswith(DROP_PREFIXES):
            continue
        out.append(arg)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", nargs="?", default=str(REPO / "build"))
    parser.add_argument("--clang", default=shutil.which("clang++-14") or "clang++")
    parser.add_argument("--expect-violation", metavar="FILE",
                        help="check FILE with a server source's flags; succeed only if it fails")
    args = parser.parse_args()
    build = Path(args.build)
    entries = sources(build)
    if args.expect_violation and entries:
        entry = dict(entries[0])
        command = clang_command(entry, args.clang)
        command[command.index(next(a for a in command if a.endswith(Path(entry["file"]).name)))] \
            = str(Path(args.expect_violation).resolve())
        run = subprocess.run(command, cwd=entry["directory"], capture_output=True, text=True)
        print(run.stderr)
        if run.returncode != 0 and "thread-safety" in run.stderr:
            print("check_thread_safety: the violation was caught, as it must be")
            return 0
        print("check_thread_safety: the violation was NOT caught")
        return 1
    if not entries:
        print(f"check_thread_safety: no server/ or predictor/ sources in {build}/"
              "compile_commands.json", file=sys.stderr)
        return 1

    def check(entry: dict) -> tuple[str, int, str]:
        run = subprocess.run(clang_command(entry, args.clang), cwd=entry["directory"],
                             capture_output=True, text=True)
        return entry["file"], run.returncode, run.stderr

    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for path, code, stderr in pool.map(check, entries):
            if code != 0:
                failed += 1
                print(f"check_thread_safety: {Path(path).relative_to(REPO)}\n{stderr}")
    print(f"check_thread_safety: {len(entries) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
