"""The package is built like any other: generated stubs (never committed) inside the wheel, and
Airflow's entry points in its metadata."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

import support

PYTHON = "/usr/bin/python3"
GENERATOR = support.PACKAGE_DIR / "generate_stubs.py"


def run_generator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, str(GENERATOR), *args], capture_output=True, text=True,
                          timeout=60)


def test_generate_stubs_rewrites_imports_into_the_package(tmp_path: Path) -> None:
    out = tmp_path / "_proto"
    result = run_generator("--out", str(out), "--proto-root", str(support.REPO / "proto"))
    assert result.returncode == 0, result.stderr
    v1 = out / "prewarm" / "v1"
    grpc_stub = (v1 / "prewarm_pb2_grpc.py").read_text()
    assert "from prewarm_client._proto.prewarm.v1 import prewarm_pb2" in grpc_stub
    assert "from prewarm.v1 import" not in grpc_stub
    assert "'prewarm_client._proto.prewarm.v1.prewarm_pb2'" in (v1 / "prewarm_pb2.py").read_text()
    for package in (out, out / "prewarm", v1):
        assert (package / "__init__.py").exists()
    # Up to date: a second run leaves the files alone.
    mtime = (v1 / "prewarm_pb2.py").stat().st_mtime_ns
    assert run_generator("--out", str(out)).returncode == 0
    assert (v1 / "prewarm_pb2.py").stat().st_mtime_ns == mtime


def test_generate_stubs_explains_what_is_missing(tmp_path: Path) -> None:
    result = run_generator("--out", str(tmp_path / "x"), "--proto-root", str(tmp_path))
    assert result.returncode == 1
    assert "prewarm.proto" in result.stderr and "PREWARM_PROTO_ROOT" in result.stderr


def test_stubs_are_not_committed() -> None:
    ignore = (support.PACKAGE_DIR / ".gitignore").read_text()
    assert "/src/prewarm_client/_proto/" in ignore
    tracked = subprocess.run(["git", "-C", str(support.REPO), "ls-files", "clients/python"],
                             capture_output=True, text=True)
    if tracked.returncode == 0:
        assert "_pb2" not in tracked.stdout


def _pip_available() -> bool:
    return subprocess.run([PYTHON, "-m", "pip", "--version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _pip_available(), reason="pip is not installed for /usr/bin/python3")
def test_wheel_ships_the_stubs_and_entry_points(tmp_path: Path) -> None:
    # Build from a clean copy (no generated stubs): the build must generate them.
    source = tmp_path / "src-copy"
    shutil.copytree(support.PACKAGE_DIR, source, ignore=shutil.ignore_patterns(
        "_proto", "build", "dist", "*.egg-info", "__pycache__"))
    assert not (source / "src" / "prewarm_client" / "_proto").exists()
    env = dict(os.environ, PREWARM_PROTO_ROOT=str(support.REPO / "proto"),
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1")
    result = subprocess.run([PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             str(source), "-w", str(tmp_path / "dist")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "dist").glob("prewarm_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "prewarm_client/_proto/prewarm/v1/prewarm_pb2.py" in names
        assert "prewarm_client/_proto/prewarm/v1/prewarm_pb2_grpc.py" in names
        assert "prewarm_client/airflow/listener.py" in names
        assert "prewarm_client/py.typed" in names
        entry_points = next(archive.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
        archive.extractall(tmp_path / "installed")
    assert "[apache_airflow_provider]" in entry_points and "[airflow.plugins]" in entry_points
    # "Installed" (unpacked on sys.path, nothing else): the stubs import and Airflow's entry
    # points resolve.
    check = (
        "import importlib.metadata as m, prewarm_client\n"
        "assert prewarm_client.__file__.startswith(%r), prewarm_client.__file__\n"
        "assert prewarm_client.pb2.Task(task_id='a').task_id == 'a'\n"
        "(ep,) = [e for e in m.entry_points(group='apache_airflow_provider')"
        " if e.value.startswith('prewarm_client')]\n"
        "assert ep.load()()['connection-types'][0]['connection-type'] == 'prewarm'\n"
        "(pl,) = [e for e in m.entry_points(group='airflow.plugins') if e.name == 'prewarm']\n"
        "assert pl.load().name == 'prewarm'\n"
    ) % str(tmp_path / "installed")
    result = subprocess.run([PYTHON, "-c", check], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(tmp_path / "installed")),
                            cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr


def test_package_imports_without_grpc_stubs_explain_how_to_build(tmp_path: Path) -> None:
    # A copy of the package without its generated stubs fails with instructions.
    shutil.copytree(support.PACKAGE_SRC / "prewarm_client", tmp_path / "prewarm_client",
                    ignore=shutil.ignore_patterns("_proto", "__pycache__"))
    result = subprocess.run([PYTHON, "-c", "import prewarm_client"], capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=str(tmp_path)),
                            cwd=str(tmp_path), timeout=60)
    assert result.returncode != 0
    assert "generate_stubs.py" in result.stderr and "prewarm_python_client" in result.stderr
