"""Shared by the Python client tests: paths, sys.path, and the build-product checks.

Importing this module puts the package (clients/python/src) and tests/integration (harness.py)
on sys.path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PACKAGE_DIR = REPO / "clients" / "python"
PACKAGE_SRC = PACKAGE_DIR / "src"
STUBS = PACKAGE_SRC / "prewarm_client" / "_proto" / "prewarm" / "v1" / "prewarm_pb2_grpc.py"
HERE = Path(__file__).resolve().parent

for _path in (str(HERE), str(REPO / "tests" / "integration"), str(PACKAGE_SRC)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import harness  # noqa: E402  (tests/integration/harness.py: Prewarmd, Gateway, ...)

REQUIRE_BINARIES = harness.binaries_required()


def _stubs_reason() -> str:
    if STUBS.exists():
        return ""
    return (f"the generated stubs are missing ({STUBS.parent}); build them with "
            f"`ninja -C {harness.build_dir()} prewarm_python_client` or run "
            f"`/usr/bin/python3 clients/python/generate_stubs.py`")


def missing_products() -> str:
    """Why the tests that run prewarmd cannot run (empty when they can)."""
    binary = harness.prewarmd_binary()
    if not os.access(binary, os.X_OK):
        return (f"{binary} is missing; build it with "
                f"`ninja -C {harness.build_dir()} prewarmd prewarm_python_client`")
    return _stubs_reason()


def _skip_or_fail(reason: str, module_level: bool = False) -> None:
    if REQUIRE_BINARIES:
        pytest.fail(f"PREWARM_REQUIRE_BINARIES=1: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


def need_stubs() -> None:
    """At the top of a test module, before importing prewarm_client: skips the module (fails it
    under CTest) when the generated stubs are missing."""
    reason = _stubs_reason()
    if reason:
        _skip_or_fail(reason, module_level=True)


def require_products() -> None:
    """In a test or fixture that runs prewarmd: skips it (fails it under CTest) without the
    build products."""
    reason = missing_products()
    if reason:
        _skip_or_fail(reason)
