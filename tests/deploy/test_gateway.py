"""Tests for deploy/local/gateway.py: a real gateway process spawning real example services.

Times are small (init 0.2 s, keep-alive 0.5-1 s). Assertions on durations are lower bounds that the
mechanism guarantees (a cold request waits at least the init time) or generous upper bounds.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Optional

import pytest

# --- harness: a real gateway subprocess on port 0 ----------------------------------------

REPO = Path(__file__).resolve().parents[2]
GATEWAY = REPO / "deploy" / "local" / "gateway.py"
PYTHON = "/usr/bin/python3"
START_TIMEOUT_SECONDS = 10.0


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # Lower-cased names.
    body: bytes
    elapsed: float

    @property
    def cold(self) -> bool:
        return self.headers["x-gateway-cold-start"] == "true"

    @property
    def wait_seconds(self) -> float:
        return float(self.headers["x-gateway-wait-seconds"])

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    child_pids: set[int] = field(default_factory=set)

    def request(self, path: str, method: str = "GET", body: Optional[bytes] = None,
                headers: Optional[dict[str, str]] = None, timeout: float = 30.0) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        start = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        result = Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data,
                          time.monotonic() - start)
        if "x-process-pid" in result.headers:
            self.child_pids.add(int(result.headers["x-process-pid"]))
        return result

    def stats(self, service: Optional[str] = None) -> dict[str, Any]:
        data = self.request("/_gateway/stats").json()
        return data["services"][service] if service else data

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s; log:\n{self.log()}")
            time.sleep(0.02)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def pid_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def write_config(path: Path, services: list[dict[str, Any]], **top: Any) -> Path:
    path.write_text(json.dumps({"services": services, **top}))
    return path


def start_gateway(tmp_path: Path, services: list[dict[str, Any]]) -> Gateway:
    config = write_config(tmp_path / "gateway.json", services)
    port_file = tmp_path / "gateway.port"
    log_path = tmp_path / "gateway.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [PYTHON, str(GATEWAY), "--config", str(config), "--port", "0",
             "--port-file", str(port_file)],
            stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"gateway did not start:\n{log_path.read_text()}")
        time.sleep(0.01)
    return Gateway(process, int(port_file.read_text()), log_path)


def stop_gateway(gw: Gateway) -> None:
    if gw.process.poll() is None:
        gw.process.send_signal(signal.SIGTERM)
        try:
            gw.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            gw.process.kill()
            gw.process.wait()
    # Belt and braces: never leave a service process behind, whatever the test did.
    for pid in gw.child_pids:
        if pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def factory(*services: dict[str, Any]) -> Gateway:
        sub = tmp_path / f"gw{len(started)}"
        sub.mkdir()
        gw = start_gateway(sub, list(services))
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        stop_gateway(gw)


# --- tests ---------------------------------------------------------------------------------

INIT = 0.2


def svc(name: str = "svc-a", **overrides: object) -> dict[str, object]:
    config: dict[str, object] = {"name": name, "init_seconds": INIT, "work_seconds": 0.0,
                                 "keep_alive_seconds": 30}
    config.update(overrides)
    return config


def load_gateway_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("local_gateway", GATEWAY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_gateway"] = module  # dataclasses look the module up by name.
    spec.loader.exec_module(module)
    return module


# --- cold and warm --------------------------------------------------------------------------


def test_first_request_is_cold_and_next_is_warm(gateway_factory) -> None:
    gw: Gateway = gateway_factory(svc())

    first = gw.request("/svc-a/hello")
    assert first.status == 200
    assert first.json() == {"service": "svc-a", "slept": 0.0}
    assert first.cold
    assert first.headers["x-process-cold"] == "true"
    assert first.wait_seconds >= INIT
    assert first.elapsed >= INIT

    second = gw.request("/svc-a/hello")
    assert second.status == 200
    assert not second.cold
    assert second.wait_seconds == 0.0
    assert second.headers["x-process-cold"] == "false"
    assert second.headers["x-process-pid"] == first.headers["x-process-pid"]
    assert second.elapsed < first.elapsed

    stats = gw.stats("svc-a")
    assert stats["state"] == "ready"
    assert stats["cold_starts"] == 1
    assert stats["requests"] == 2
    assert stats["cold_requests"] == 1
    assert stats["warmup_requests"] == 0
    # The one start, which the first request waited for from its spawn to ready.
    assert stats["start_seconds"] >= INIT
    assert stats["start_seconds"] == pytest.approx(first.wait_seconds, abs=1e-5)


def test_concurrent_first_requests_spawn_exactly_one_process(gateway_factory) -> None:
    gw: Gateway = gateway_factory(svc())

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda _: gw.request("/svc-a/x"), range(6)))

    assert all(r.status == 200 and r.cold for r in responses)
    assert len({r.headers["x-process-pid"] for r in responses}) == 1
    # The process itself saw exactly one first call.
    assert sorted(r.headers["x-process-cold"] for r in responses) == ["false"] * 5 + ["true"]
    stats = gw.stats("svc-a")
    assert stats["cold_starts"] == 1
    assert stats["cold_requests"] == 6
    assert stats["requests"] == 6


def test_requests_to_one_process_run_concurrently(gateway_factory) -> None:
    gw: Gateway = gateway_factory(svc())
    gw.request("/svc-a/warmup")

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda _: gw.request("/svc-a/x?sleep=0.5"), range(4)))
    elapsed = time.monotonic() - start

    assert all(r.status == 200 and not r.cold for r in responses)
    assert elapsed < 1.5, "serialised requests would take at least 2 s"
    assert gw.stats("svc-a")["busy_seconds"] >= 0.5


def test_warmup_then_call_within_keep_alive_is_warm(gateway_factory) -> None:
    gw: Gateway = gateway_factory(svc(keep_alive_seconds=1.0))

    warmup = gw.request("/svc-a/warmup")
    assert warmup.status == 200
    assert warmup.body == b"warm\n"
    assert warmup.cold

    time.sleep(0.3)
    call = gw.request("/svc-a/task?sleep=0.05")
    assert call.status == 200
    assert not call.cold
    assert call.headers["x-process-cold"] == "false"
    assert call.json()["slept"] == 0.05

    stats = gw.stats("svc-a")
    assert stats["warmup_requests"] == 1
    assert stats["cold_starts"] == 1
    assert stats["cold_requests"] == 1


# --- scale to zero and accounting ------------------------------------------------------------


def test_idle_process_is_scaled_to_zero_and_next_call_is_cold(gateway_factory) -> None:
    gw: Gateway = gateway_factory(svc(keep_alive_seconds=0.5))
    first = gw.request("/svc-a/x")
    pid = int(first.headers["x-process-pid"])
    assert gw.stats("svc-a")["state"] == "ready"

    gw.wait_for(lambda: gw.stats("svc-a")["state"] == "idle", timeout=5)
    stats = gw.stats("svc-a")
    assert stats["scale_downs"] == 1
    assert stats["pid"] is None
    assert stats["ready_seconds"] >= 0.5
    gw.wait_for(lambda: not pid_alive(pid), timeout=5)

    again = gw.request("/svc-a/x")
    assert again.cold
    assert again.wait_seconds >= INIT
    assert int(again.headers["x-process-pid"]) != pid
    assert gw.stats("svc-a")["cold_starts"] == 2


def test_in_flight_request_is_not_scaled_down(gateway_factory) -> None:
    gw: Gateway = gateway_factory(svc(keep_alive_seconds=0.3))
    warmup = gw.request("/svc-a/warmup")

    slow = gw.request("/svc-a/x?sleep=0.8")  # Longer than the keep-alive.

    assert slow.status == 200
    assert not slow.cold
    assert slow.headers["x-process-pid"] == warmup.headers["x-process-pid"]
    assert gw.stats("svc-a")["scale_downs"] == 0  # The keep-alive restarts when a call ends.


def test_idle_seconds_grow_while_warm_and_idle(gateway_factory) -> None:
    gw: Gateway = gateway_factory(svc())
    gw.request("/svc-a/x?sleep=0.2")

    before = gw.stats("svc-a")
    time.sleep(0.3)
    after = gw.stats("svc-a")

    assert after["idle_seconds"] - before["idle_seconds"] >= 0.3
    assert after["busy_seconds"] == pytest.approx(before["busy_seconds"])
    assert after["busy_seconds"] >= 0.2
    assert after["ready_seconds"] == pytest.approx(
        after["idle_seconds"] + after["busy_seconds"], abs=1e-3)


# --- routing ---------------------------------------------------------------------------------


def test_unknown_service_is_404_naming_it(gateway_factory) -> None:
    gw: Gateway = gateway_factory(svc())
    response = gw.request("/no-such-svc/x")
    assert response.status == 404
    assert b"no-such-svc" in response.body
    assert gw.stats("svc-a")["requests"] == 0


@pytest.mark.parametrize("host", ["svc-b.default.svc.cluster.local", "svc-b.localhost:8080"])
def test_host_header_routes_to_service(gateway_factory, host: str) -> None:
    gw: Gateway = gateway_factory(svc("svc-a"), svc("svc-b"))
    response = gw.request("/work?sleep=0.01", headers={"Host": host})
    assert response.status == 200
    assert response.json() == {"service": "svc-b", "slept": 0.01}
    assert gw.stats("svc-b")["requests"] == 1
    assert gw.stats("svc-a")["requests"] == 0


def test_path_prefix_wins_over_host_header(gateway_factory) -> None:
    gw: Gateway = gateway_factory(svc("svc-a"), svc("svc-b"))
    response = gw.request("/svc-a/x", headers={"Host": "svc-b.localhost"})
    assert response.json()["service"] == "svc-a"


def test_route_strips_service_prefix_and_keeps_query() -> None:
    gateway = load_gateway_module()

    class FakeGateway:
        services = {"svc-a": "SERVICE"}

    route = gateway.route
    assert route(FakeGateway, "/svc-a/warmup?x=1", "") == ("SERVICE", "/warmup?x=1", "svc-a")
    assert route(FakeGateway, "/svc-a", "") == ("SERVICE", "/", "svc-a")
    assert route(FakeGateway, "/a/b?q", "svc-a.localhost:80") == ("SERVICE", "/a/b?q", "svc-a")
    assert route(FakeGateway, "/other/b", "x.localhost") == (None, "", "other")


def test_parse_config_defaults() -> None:
    gateway = load_gateway_module()
    config = gateway.parse_config({"services": [{"name": "svc-a"}]})
    assert (config.host, config.port) == ("127.0.0.1", 0)
    service = config.services[0]
    assert service.command is None
    assert (service.init_seconds, service.keep_alive_seconds,
            service.ready_timeout_seconds) == (0.0, 60.0, 30.0)


# --- admin -----------------------------------------------------------------------------------


def test_reset_stops_processes_and_zeroes_counters(gateway_factory) -> None:
    gw: Gateway = gateway_factory(svc())
    pid = int(gw.request("/svc-a/x").headers["x-process-pid"])

    response = gw.request("/_gateway/reset", method="POST")

    assert response.status == 200
    assert not pid_alive(pid)
    stats = gw.stats("svc-a")
    assert stats["state"] == "idle"
    assert all(stats[k] == 0 for k in ("cold_starts", "requests", "cold_requests",
                                       "warmup_requests", "scale_downs", "ready_seconds",
                                       "idle_seconds", "busy_seconds", "start_seconds"))
    assert gw.request("/svc-a/x").cold


def test_admin_endpoints(gateway_factory) -> None:
    gw: Gateway = gateway_factory(svc())
    assert gw.request("/_gateway/healthz").status == 200
    assert gw.request("/_gateway/reset").status == 405
    assert gw.request("/_gateway/nope").status == 404
    stats = gw.stats()
    assert set(stats["services"]["svc-a"]) >= {
        "state", "cold_starts", "requests", "cold_requests", "warmup_requests", "scale_downs",
        "ready_seconds", "idle_seconds", "busy_seconds", "start_seconds"}


# --- failing starts --------------------------------------------------------------------------


def test_process_exiting_before_ready_gives_503(gateway_factory) -> None:
    gw: Gateway = gateway_factory(svc(command=["/bin/false"]))
    response = gw.request("/svc-a/x")
    assert response.status == 503
    assert b"exited" in response.body
    assert gw.stats("svc-a")["state"] == "idle"


def test_ready_timeout_gives_503_and_kills_process(gateway_factory, tmp_path: Path) -> None:
    pid_file = tmp_path / "sleeper.pid"
    script = f"echo $$ > {pid_file}; exec sleep 30"
    gw: Gateway = gateway_factory(svc(command=["/bin/sh", "-c", script],
                                      ready_timeout_seconds=0.3))
    response = gw.request("/svc-a/x")
    assert response.status == 503
    assert b"ready_timeout_seconds" in response.body
    pid = int(pid_file.read_text())
    gw.wait_for(lambda: not pid_alive(pid), timeout=5)
    assert gw.stats("svc-a")["state"] == "idle"


def test_custom_command_gets_port_placeholder(gateway_factory) -> None:
    example = REPO / "deploy" / "local" / "example_service.py"
    gw: Gateway = gateway_factory(svc(command=[PYTHON, str(example), "--port", "{port}",
                                               "--name", "custom"]))
    response = gw.request("/svc-a/x")
    assert response.status == 200
    assert response.json()["service"] == "custom"


# --- configuration and lifecycle --------------------------------------------------------------


@pytest.mark.parametrize("config, field", [
    ({"services": [{"name": "Bad_Name"}]}, "services[0].name"),
    ({"services": [{"name": "ok"}, {"name": "x", "keep_alive_seconds": -1}]},
     "services[1].keep_alive_seconds"),
    ({"services": [{"name": "ok", "init_seconds": "1"}]}, "services[0].init_seconds"),
    ({"services": [{"name": "ok", "keepalive_seconds": 5}]}, "services[0].keepalive_seconds"),
    ({"services": [{"name": "ok", "command": []}]}, "services[0].command"),
    ({"services": [{"name": "ok"}, {"name": "ok"}]}, "services[1].name"),
    ({"services": []}, "services"),
    ({"listen": {"port": 70000}, "services": [{"name": "ok"}]}, "listen.port"),
])
def test_bad_config_exits_non_zero_naming_the_field(tmp_path: Path, config: dict,
                                                     field: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    result = subprocess.run([PYTHON, str(GATEWAY), "--config", str(path)],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode != 0
    assert field in result.stderr


def test_config_that_is_not_json_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    result = subprocess.run([PYTHON, str(GATEWAY), "--config", str(path)],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode != 0
    assert "not valid JSON" in result.stderr


def test_example_config_is_valid() -> None:
    gateway = load_gateway_module()
    config = gateway.load_config(str(REPO / "deploy" / "local" / "example-gateway.json"))
    assert [s.work_seconds for s in config.services] == [3.0, 7.0, 5.0]
    assert all(s.keep_alive_seconds == 60 for s in config.services)


def test_sigterm_stops_children_and_exits_zero(gateway_factory) -> None:
    gw: Gateway = gateway_factory(svc("svc-a"), svc("svc-b"))
    pids = {int(gw.request(f"/{name}/x").headers["x-process-pid"]) for name in ("svc-a", "svc-b")}
    assert all(pid_alive(pid) for pid in pids)

    gw.process.send_signal(signal.SIGTERM)

    assert gw.process.wait(timeout=10) == 0
    for pid in pids:
        assert not pid_alive(pid), f"service process {pid} outlived the gateway"


def test_sigterm_during_cold_start_leaves_no_child(gateway_factory, tmp_path: Path) -> None:
    pid_file = tmp_path / "starting.pid"
    script = f"echo $$ > {pid_file}; exec sleep 30"
    gw: Gateway = gateway_factory(svc(command=["/bin/sh", "-c", script]))
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(lambda: gw.request("/svc-a/x"))
        gw.wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
        pid = int(pid_file.read_text())
        gw.process.send_signal(signal.SIGTERM)
        assert gw.process.wait(timeout=10) == 0
        try:
            held = pending.result(timeout=10)
        except OSError:
            pass  # Its connection died with the gateway: acceptable.
        else:
            assert held.status == 503  # Released with an error before the gateway exited.
    gw.wait_for(lambda: not pid_alive(pid), timeout=5)


def test_children_die_when_gateway_is_killed(gateway_factory) -> None:
    gw: Gateway = gateway_factory(svc())
    pid = int(gw.request("/svc-a/x").headers["x-process-pid"])

    gw.process.kill()  # SIGKILL: no cleanup code runs; the kernel must take the child down.
    gw.process.wait(timeout=10)

    gw.wait_for(lambda: not pid_alive(pid), timeout=5)
