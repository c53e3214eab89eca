"""setuptools hooks: the gRPC stubs are generated before setuptools looks at the packages.

All metadata lives in pyproject.toml. The stubs (src/prewarm_client/_proto, see generate_stubs.py)
are produced by the build, never committed: `egg_info` (metadata, sdist) and `build_py` (wheel)
generate them first, so every sdist and wheel ships them.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.egg_info import egg_info

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate_stubs  # noqa: E402


def _generate() -> None:
    try:
        generate_stubs.generate()
    except generate_stubs.StubError as err:
        raise SystemExit(f"prewarm-client: cannot generate the gRPC stubs: {err}") from err


class EggInfoWithStubs(egg_info):
    def run(self) -> None:
        _generate()
        super().run()


class BuildPyWithStubs(build_py):
    def run(self) -> None:
        _generate()
        super().run()


setup(cmdclass={"egg_info": EggInfoWithStubs, "build_py": BuildPyWithStubs})
