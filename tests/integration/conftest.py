"""Fixtures of the integration tests: real prewarmd and gateway processes in a temporary directory.

Tests need build/server/prewarmd and the generated Python stubs (build/python). Without them they
are skipped with a message saying how to build them, unless PREWARM_REQUIRE_BINARIES=1 (set by
CTest), where a skip would hide a broken build: then they fail instead.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

REQUIRE_BINARIES = harness.binaries_required()


def pytest_report_header(config: pytest.Config) -> str:
    return (f"prewarm integration: build dir {harness.build_dir()}, "
            f"binaries required: {REQUIRE_BINARIES}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Belt and braces: under CTest no integration test may be skipped, for whatever reason.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if REQUIRE_BINARIES and reporter is not None and reporter.stats.get("skipped"):
        reporter.write_line("PREWARM_REQUIRE_BINARIES=1 but some integration tests were skipped",
                            red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def build_products() -> None:
    """Skips (or, under CTest, fails) the test when the build products are missing."""
    harness.require_build_products()


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "report_call", None)
    return report is not None and report.failed


@pytest.fixture
def workdir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A temporary directory for stores, configs and logs, removed afterwards. When the test
    failed, the tails of the logs in it are printed first."""
    with tempfile.TemporaryDirectory(prefix="prewarm-it-") as d:
        yield Path(d)
        if _failed(request):
            for log in sorted(Path(d).rglob("*.log")):
                text = log.read_text(errors="replace")
                print(f"\n----- {log.relative_to(d)} (last 4000 chars) -----\n{text[-4000:]}")


@pytest.fixture
def start_prewarmd(workdir: Path) -> Iterator[Callable[..., harness.Prewarmd]]:
    """start_prewarmd(args=(), name="prewarmd") -> a running Prewarmd, stopped at teardown."""
    started: list[harness.Prewarmd] = []

    def start(args: tuple[str, ...] = (), name: str = "prewarmd", **kwargs: Any) -> harness.Prewarmd:
        server = harness.Prewarmd(workdir / name, args=args, **kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_gateway(workdir: Path) -> Iterator[Callable[..., harness.Gateway]]:
    """start_gateway([GatewayService, ...], name="gateway") -> a running Gateway, stopped at
    teardown."""
    yield from harness.gateway_starter(workdir)
