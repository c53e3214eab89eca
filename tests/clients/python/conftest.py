"""Fixtures of the Python client tests: the package on sys.path, real prewarmd / gateway processes.

The client tests need build/server/prewarmd and the package's generated stubs
(clients/python/src/prewarm_client/_proto, from `ninja -C build prewarm_python_client` or
clients/python/generate_stubs.py). Without them the tests that need them are skipped with a message
saying how to build them, unless PREWARM_REQUIRE_BINARIES=1 (set by CTest), where they fail.
Processes come from tests/integration/harness.py (PR_SET_PDEATHSIG, no orphans).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import support
from support import harness, require_products

REQUIRE_BINARIES = support.REQUIRE_BINARIES


def pytest_report_header(config: pytest.Config) -> str:
    return (f"prewarm python client: build dir {harness.build_dir()}, "
            f"binaries required: {REQUIRE_BINARIES}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if REQUIRE_BINARIES and reporter is not None and reporter.stats.get("skipped"):
        reporter.write_line("PREWARM_REQUIRE_BINARIES=1 but some client tests were skipped",
                            red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="prewarm-py-") as d:
        yield Path(d)


@pytest.fixture
def start_prewarmd(workdir: Path) -> Iterator[Callable[..., harness.Prewarmd]]:
    """start_prewarmd(args=(), name="prewarmd") -> a running prewarmd (port 0, store in a temp
    dir), stopped at teardown."""
    require_products()
    started: list[harness.Prewarmd] = []

    def start(args: tuple[str, ...] = (), name: str = "prewarmd") -> harness.Prewarmd:
        server = harness.Prewarmd(workdir / name, args=args)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def shared_prewarmd() -> Iterator[harness.Prewarmd]:
    """One prewarmd for a module's tests that do not need a fresh one."""
    require_products()
    with tempfile.TemporaryDirectory(prefix="prewarm-py-") as d:
        server = harness.Prewarmd(Path(d) / "prewarmd")
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def start_gateway(workdir: Path) -> Iterator[Callable[..., harness.Gateway]]:
    require_products()
    yield from harness.gateway_starter(workdir)


@pytest.fixture
def flaky() -> Iterator[Any]:
    """(FlakyService, target): a PrewarmService in this process that answers UNAVAILABLE as often
    as told, then answers (flaky_server.py)."""
    support.need_stubs()
    import flaky_server  # noqa: PLC0415 - needs the generated stubs
    yield from flaky_server.serve()


@pytest.fixture
def fake_airflow(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Installs a fake Airflow (version from the test's `airflow_version` parameter, default
    2.10) into sys.modules and re-imports prewarm_client.airflow against it; removes both
    afterwards."""
    import airflow_fakes  # noqa: PLC0415
    version = getattr(request, "param", "2.10")
    fake = airflow_fakes.install(version)
    try:
        yield fake
    finally:
        airflow_fakes.uninstall()
