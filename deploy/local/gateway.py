#!/usr/bin/python3
"""Local scale-to-zero gateway: a stand-in for Knative's activator, for tests and demos.

For each configured service it keeps at most one process. The first request to a service with no
process starts one (the cold start: process spawn plus the service's initialisation), holds the
request, and every other request for that service arriving meanwhile, until the process answers
GET /healthz with 200, then forwards them. A process with no request in flight for longer than its
keep-alive is stopped (scale to zero). See README.md beside this file.

Usage: gateway.py --config FILE [--port N] [--host H] [--port-file PATH]

Standard library only; run with /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import ctypes
import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
EXAMPLE_SERVICE = HERE / "example_service.py"

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
PROBE_INTERVAL_SECONDS = 0.010
REAPER_INTERVAL_SECONDS = 0.050
STOP_GRACE_SECONDS = 2.0
UPSTREAM_TIMEOUT_SECONDS = 3600.0
WARMUP_PATH = "/warmup"

# RFC 9110 §7.6.1: meaningful only for a single connection, never forwarded.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})

log = logging.getLogger("gateway")


# --------------------------------------------------------------------------------------------
# Configuration


class ConfigError(ValueError):
    """A config file problem; the message names the offending field."""


@dataclass(frozen=True)
class ServiceConfig:
    name: str
    command: Optional[tuple[str, ...]] = None
    init_seconds: float = 0.0
    work_seconds: float = 0.0
    keep_alive_seconds: float = 60.0
    ready_timeout_seconds: float = 30.0


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 0
    services: tuple[ServiceConfig, ...] = ()


def _number(obj: dict[str, Any], key: str, where: str, default: float,
            positive: bool = False) -> float:
    value = obj.get(key, default)
    # bool is an int subclass; `true` is never a sensible duration.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}.{key}: must be a number of seconds, got {value!r}")
    if value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"{where}.{key}: must be {bound}, got {value!r}")
    return float(value)


def _check_keys(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    # Unknown keys are almost always typos ("keepalive_seconds"); silently ignoring them would
    # make an experiment run with defaults nobody asked for.
    for key in obj:
        if key not in allowed:
            allowed_list = ", ".join(sorted(allowed))
            raise ConfigError(f"{where}.{key}: unknown field (allowed: {allowed_list})")


def _parse_service(obj: Any, where: str) -> ServiceConfig:
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: must be an object")
    _check_keys(obj, {f.name for f in ServiceConfig.__dataclass_fields__.values()}, where)
    name = obj.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(f"{where}.name: must be a DNS label of [a-z0-9-] "
                          f"(1-63 chars, no leading/trailing '-'), got {name!r}")
    command = obj.get("command")
    if command is not None:
        if (not isinstance(command, list) or not command
                or not all(isinstance(arg, str) and arg for arg in command)):
            raise ConfigError(f"{where}.command: must be a non-empty list of non-empty strings")
        command = tuple(command)
    return ServiceConfig(
        name=name,
        command=command,
        init_seconds=_number(obj, "init_seconds", where, 0.0),
        work_seconds=_number(obj, "work_seconds", where, 0.0),
        keep_alive_seconds=_number(obj, "keep_alive_seconds", where, 60.0),
        ready_timeout_seconds=_number(obj, "ready_timeout_seconds", where, 30.0, positive=True),
    )


def parse_config(data: Any) -> GatewayConfig:
    """Validates a decoded JSON config. Raises ConfigError naming the bad field."""
    if not isinstance(data, dict):
        raise ConfigError("config: top level must be a JSON object")
    _check_keys(data, {"listen", "services"}, "config")
    listen = data.get("listen", {})
    if not isinstance(listen, dict):
        raise ConfigError("listen: must be an object")
    _check_keys(listen, {"host", "port"}, "listen")
    host = listen.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host:
        raise ConfigError(f"listen.host: must be a non-empty string, got {host!r}")
    port = listen.get("port", 0)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"listen.port: must be an integer 0..65535, got {port!r}")
    services = data.get("services")
    if not isinstance(services, list) or not services:
        raise ConfigError("services: must be a non-empty list")
    parsed = tuple(_parse_service(s, f"services[{i}]") for i, s in enumerate(services))
    seen: set[str] = set()
    for i, svc in enumerate(parsed):
        if svc.name in seen:
            raise ConfigError(f"services[{i}].name: duplicate service name {svc.name!r}")
        seen.add(svc.name)
    return GatewayConfig(host=host, port=port, services=parsed)


def load_config(path: str) -> GatewayConfig:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"config: cannot read {path}: {err.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"config: {path} is not valid JSON: {err}") from None
    return parse_config(data)


# --------------------------------------------------------------------------------------------
# Child processes


def _load_pdeathsig() -> Optional[Callable[[], None]]:
    """Returns a preexec hook that makes the kernel SIGKILL the child if the gateway dies.

    This covers the crash path (the gateway itself SIGKILLed), where no cleanup code can run.
    Linux only; elsewhere we rely on the normal shutdown path.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    parent = os.getpid()

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent:  # The gateway died before prctl took effect.
            os._exit(1)

    return hook


class ChildProcesses:
    """Spawns and stops service processes, each in its own process group. Thread-safe.

    All spawns happen on one long-lived thread: PR_SET_PDEATHSIG fires when the *thread* that
    forked the child exits, so forking from short-lived request threads would kill the child.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen[bytes]] = set()
        self._jobs: list[tuple[list[str], dict[str, str], _SpawnResult]] = []
        self._jobs_cv = threading.Condition(self._lock)
        self._closed = False
        self._preexec = _load_pdeathsig()
        threading.Thread(target=self._spawn_loop, name="spawner", daemon=True).start()

    def spawn(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Starts argv in a new session. Raises OSError if it cannot be executed."""
        result = _SpawnResult()
        with self._jobs_cv:
            self._jobs.append((argv, env, result))
            self._jobs_cv.notify()
        result.done.wait()
        if result.error is not None:
            raise result.error
        assert result.process is not None
        return result.process

    def _spawn_loop(self) -> None:
        while True:
            with self._jobs_cv:
                while not self._jobs:
                    self._jobs_cv.wait()
                argv, env, result = self._jobs.pop(0)
                # Popen under the lock: stop_all() must see every process, even one being
                # spawned while the gateway shuts down.
                try:
                    if self._closed:
                        raise OSError("gateway is shutting down")
                    process = subprocess.Popen(
                        argv, env=env, stdin=subprocess.DEVNULL,
                        # Children must not write to our stdout: its first line is the
                        # "listening" line that scripts parse.
                        stdout=sys.stderr.fileno(), stderr=sys.stderr.fileno(),
                        start_new_session=True, preexec_fn=self._preexec)
                    self._live.add(process)
                    result.process = process
                except Exception as err:  # Also SubprocessError from the preexec hook.
                    result.error = err if isinstance(err, OSError) else OSError(str(err))
            result.done.set()

    def stop(self, process: subprocess.Popen[bytes],
             grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM the process group, SIGKILL it after grace_seconds; returns once reaped."""
        self._signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            self._signal_group(process, signal.SIGKILL)
            process.wait()
        # Grandchildren that ignored SIGTERM would otherwise outlive their leader.
        self._signal_group(process, signal.SIGKILL)
        with self._lock:
            self._live.discard(process)

    def stop_all(self) -> None:
        """Refuses further spawns and stops every live process."""
        with self._lock:
            self._closed = True
            live = list(self._live)
        threads = [threading.Thread(target=self.stop, args=(p,)) for p in live]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
        try:
            os.killpg(process.pid, sig)  # start_new_session: pgid == pid.
        except (ProcessLookupError, PermissionError):
            pass


@dataclass
class _SpawnResult:
    done: threading.Event = field(default_factory=threading.Event)
    process: Optional[subprocess.Popen[bytes]] = None
    error: Optional[OSError] = None


def free_port() -> int:
    # Racy by nature (the port is released before the child binds it), but on loopback the
    # kernel does not hand the same ephemeral port out again that quickly.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def probe_ready(port: int, timeout: float) -> bool:
    """One readiness probe: GET /healthz answered with 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=max(timeout, 0.001))
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# Per-service state


STARTING, READY, FAILED, STOPPED = "starting", "ready", "failed", "stopped"


class Instance:
    """One process of a service and its time accounting. Guarded by the owning Service's lock."""

    def __init__(self, started_at: float) -> None:
        self.state = STARTING
        self.started_at = started_at
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.port = 0
        self.error = ""
        self.waiters = 0  # Requests held for this start; counted in-flight once ready.
        self.in_flight = 0
        self.ready_at = 0.0
        self.idle_since: Optional[float] = None  # Set while ready with nothing in flight.
        self.busy_since: Optional[float] = None  # Set while ready with requests in flight.
        self.idle_total = 0.0
        self.busy_total = 0.0
        self.cancelled = threading.Event()  # Wakes the starter thread on reset/shutdown.

    def mark_ready(self, now: float) -> None:
        self.state = READY
        self.ready_at = now
        self.in_flight = self.waiters
        if self.in_flight:
            self.busy_since = now
        else:
            self.idle_since = now

    def begin_request(self, now: float) -> None:
        if self.in_flight == 0 and self.idle_since is not None:
            self.idle_total += now - self.idle_since
            self.idle_since, self.busy_since = None, now
        self.in_flight += 1

    def end_request(self, now: float) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self.busy_since is not None:
            self.busy_total += now - self.busy_since
            self.busy_since, self.idle_since = None, now

    def times(self, now: float) -> tuple[float, float, float]:
        """(ready, idle, busy) seconds so far, including the ongoing interval."""
        if self.state != READY:
            return 0.0, 0.0, 0.0
        idle = self.idle_total + (now - self.idle_since if self.idle_since is not None else 0.0)
        busy = self.busy_total + (now - self.busy_since if self.busy_since is not None else 0.0)
        return now - self.ready_at, idle, busy


@dataclass
class Counters:
    cold_starts: int = 0
    requests: int = 0
    cold_requests: int = 0
    warmup_requests: int = 0
    scale_downs: int = 0
    start_seconds: float = 0.0  # Process starts, from spawn to ready, summed.
    ready_seconds: float = 0.0
    idle_seconds: float = 0.0
    busy_seconds: float = 0.0


@dataclass(frozen=True)
class Lease:
    """A request's claim on a ready instance; give it back with Service.release."""
    instance: Instance
    cold: bool
    wait_seconds: float

    @property
    def port(self) -> int:
        return self.instance.port


class StartFailed(Exception):
    """The process for a held request could not be made ready."""


class Service:
    """Lifecycle of one service's process: cold start, leases, scale to zero. Thread-safe."""

    def __init__(self, config: ServiceConfig, children: ChildProcesses,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._children = children
        self._clock = clock
        self._cond = threading.Condition()
        self._current: Optional[Instance] = None
        self._counters = Counters()

    # Request path -------------------------------------------------------------------------

    def acquire(self, warmup: bool) -> Lease:
        """Returns a lease on a ready process, starting one if needed. Raises StartFailed."""
        arrived = self._clock()
        with self._cond:
            self._counters.requests += 1
            self._counters.warmup_requests += int(warmup)
            inst = self._current
            if inst is not None and inst.state == READY:
                inst.begin_request(arrived)
                return Lease(inst, cold=False, wait_seconds=0.0)
            if inst is None:
                inst = self._start_locked(arrived)
            inst.waiters += 1
            self._counters.cold_requests += 1
            while inst.state == STARTING:
                self._cond.wait()
            if inst.state == FAILED:
                raise StartFailed(inst.error)
            # READY, or already STOPPED again by a reset: forwarding will then fail with 502.
            return Lease(inst, cold=True, wait_seconds=max(0.0, inst.ready_at - arrived))

    def release(self, lease: Lease) -> None:
        with self._cond:
            if lease.instance is self._current:
                lease.instance.end_request(self._clock())

    # Cold start -----------------------------------------------------------------------------

    def _start_locked(self, now: float) -> Instance:
        inst = Instance(started_at=now)
        self._current = inst
        self._counters.cold_starts += 1
        threading.Thread(target=self._run_start, args=(inst,), daemon=True,
                         name=f"start-{self.config.name}").start()
        return inst

    def _run_start(self, inst: Instance) -> None:
        try:
            self._start_and_wait(inst)
        except Exception as err:  # Held requests must never wait forever on a dead thread.
            log.exception("%s: start failed unexpectedly", self.config.name)
            self._fail_start(inst, inst.process, f"internal error: {err}")

    def _start_and_wait(self, inst: Instance) -> None:
        try:
            port = free_port()
            process = self._children.spawn(self._argv(port), self._env(port))
        except OSError as err:
            self._fail_start(inst, None, f"cannot start process: {err}")
            return
        with self._cond:
            inst.process, inst.port = process, port
        log.info("%s: started pid %d on port %d", self.config.name, process.pid, port)
        error = self._wait_ready(inst, process, port)
        if error:
            self._fail_start(inst, process, error)
            return
        with self._cond:
            if inst.state != STARTING:  # Cancelled by reset or shutdown meanwhile.
                error = inst.error or "cancelled"
            else:
                inst.mark_ready(self._clock())
                self._counters.start_seconds += inst.ready_at - inst.started_at
                self._cond.notify_all()
        if error:
            self._children.stop(process)
            return
        log.info("%s: ready after %.3f s", self.config.name, inst.ready_at - inst.started_at)

    def _wait_ready(self, inst: Instance, process: subprocess.Popen[bytes], port: int) -> str:
        """Polls /healthz until 200. Returns "" when ready, else why not."""
        deadline = inst.started_at + self.config.ready_timeout_seconds
        while True:
            if inst.cancelled.is_set():
                return "start cancelled"
            code = process.poll()
            if code is not None:
                return f"process exited with code {code} before becoming ready"
            remaining = deadline - self._clock()
            if remaining <= 0:
                return (f"process not ready after "
                        f"{self.config.ready_timeout_seconds:g} s (ready_timeout_seconds)")
            if probe_ready(port, min(1.0, remaining)):
                return ""
            inst.cancelled.wait(min(PROBE_INTERVAL_SECONDS, max(0.0, deadline - self._clock())))

    def _fail_start(self, inst: Instance, process: Optional[subprocess.Popen[bytes]],
                    error: str) -> None:
        message = f"service {self.config.name!r} failed to start: {error}"
        log.warning("%s", message)
        with self._cond:
            if inst.state == STARTING:
                inst.state, inst.error = FAILED, message
            if self._current is inst:
                self._current = None
            self._cond.notify_all()
        if process is not None:
            self._children.stop(process)

    def _argv(self, port: int) -> list[str]:
        cfg = self.config
        if cfg.command is not None:
            return [arg.replace("{port}", str(port)) for arg in cfg.command]
        return [sys.executable, str(EXAMPLE_SERVICE), "--port", str(port),
                "--init-seconds", repr(cfg.init_seconds), "--work-seconds", repr(cfg.work_seconds),
                "--name", cfg.name]

    def _env(self, port: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(PORT=str(port), SERVICE_NAME=self.config.name,
                   INIT_SECONDS=repr(self.config.init_seconds),
                   WORK_SECONDS=repr(self.config.work_seconds))
        return env

    # Scale to zero, reset, shutdown --------------------------------------------------------

    def reap(self, now: float) -> None:
        """Stops the process if idle past its keep-alive, or forgets it if it died."""
        with self._cond:
            inst = self._current
            if inst is None or inst.state != READY or inst.process is None:
                return
            if inst.process.poll() is not None:
                log.warning("%s: pid %d exited unexpectedly with code %d", self.config.name,
                            inst.process.pid, inst.process.returncode)
                process = self._detach_locked(now)
            elif (inst.in_flight == 0 and inst.idle_since is not None
                  and now - inst.idle_since > self.config.keep_alive_seconds):
                log.info("%s: idle for %.3f s, scaling to zero", self.config.name,
                         now - inst.idle_since)
                self._counters.scale_downs += 1
                process = self._detach_locked(now)
            else:
                return
        # Off the reaper thread: a stubborn process may take the full SIGKILL grace period.
        threading.Thread(target=self._children.stop, args=(process,), daemon=True).start()

    def stop_now(self, reset_counters: bool) -> None:
        """Stops the process (if any) and returns once it is gone. For reset and shutdown."""
        with self._cond:
            process = self._detach_locked(self._clock())
            if reset_counters:
                self._counters = Counters()
        if process is not None:
            self._children.stop(process)

    def _detach_locked(self, now: float) -> Optional[subprocess.Popen[bytes]]:
        inst = self._current
        if inst is None:
            return None
        ready, idle, busy = inst.times(now)
        self._counters.ready_seconds += ready
        self._counters.idle_seconds += idle
        self._counters.busy_seconds += busy
        if inst.state == STARTING:
            inst.state = FAILED
            inst.error = f"service {self.config.name!r} was stopped while starting"
            inst.cancelled.set()
        else:
            inst.state = STOPPED
        self._current = None
        self._cond.notify_all()
        return inst.process

    # Stats ------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        with self._cond:
            c = self._counters
            inst = self._current
            ready, idle, busy = inst.times(now) if inst else (0.0, 0.0, 0.0)
            live = inst is not None and inst.process is not None
            return {
                "state": inst.state if inst else "idle",
                "cold_starts": c.cold_starts,
                "requests": c.requests,
                "cold_requests": c.cold_requests,
                "warmup_requests": c.warmup_requests,
                "scale_downs": c.scale_downs,
                "start_seconds": round(c.start_seconds, 6),
                "ready_seconds": round(c.ready_seconds + ready, 6),
                "idle_seconds": round(c.idle_seconds + idle, 6),
                "busy_seconds": round(c.busy_seconds + busy, 6),
                "in_flight": inst.in_flight if inst else 0,
                "pid": inst.process.pid if live else None,
                "keep_alive_seconds": self.config.keep_alive_seconds,
            }


class Gateway:
    """All services plus the reaper thread. Thread-safe."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.children = ChildProcesses()
        self.services = {s.name: Service(s, self.children) for s in config.services}
        self._stopping = threading.Event()
        self._reaper = threading.Thread(target=self._reap_loop, name="reaper", daemon=True)

    def start(self) -> None:
        self._reaper.start()

    def _reap_loop(self) -> None:
        while not self._stopping.wait(REAPER_INTERVAL_SECONDS):
            now = time.monotonic()
            for service in self.services.values():
                service.reap(now)

    def stats(self) -> dict[str, Any]:
        return {"services": {name: s.snapshot() for name, s in self.services.items()}}

    def reset(self) -> None:
        self._for_each_service(lambda s: s.stop_now(reset_counters=True))

    def shutdown(self) -> None:
        self._stopping.set()
        self._for_each_service(lambda s: s.stop_now(reset_counters=False))
        self.children.stop_all()  # Also catches processes a scale-down thread is still stopping.

    def _for_each_service(self, fn: Callable[[Service], None]) -> None:
        # In parallel: each stop may wait out the SIGKILL grace period.
        threads = [threading.Thread(target=fn, args=(s,)) for s in self.services.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


# --------------------------------------------------------------------------------------------
# HTTP front end


def route(gateway: Gateway, path: str, host: str) -> tuple[Optional[Service], str, str]:
    """Maps a request to (service, upstream path, name for error messages).

    The path's first segment wins (/svc-a/warmup -> svc-a, /warmup); otherwise the Host header's
    first label, as Knative routes (svc-a.default.svc.cluster.local, svc-a.localhost).
    """
    url = urlsplit(path)
    query = f"?{url.query}" if url.query else ""
    first, _, rest = url.path.lstrip("/").partition("/")
    if first in gateway.services:
        return gateway.services[first], f"/{rest}{query}", first
    label = host.split(":", 1)[0].split(".", 1)[0].lower() if host else ""
    if label in gateway.services:
        return gateway.services[label], f"{url.path or '/'}{query}", label
    return None, "", first or label


class GatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # Headers and body go out in separate writes.
    server_version = "prewarm-local-gateway/1"
    gateway: Gateway  # set on the subclass built in make_server()

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except ValueError as err:
            self.close_connection = True  # The stream position is unknown now.
            self._send_text(400, f"bad request body: {err}")
            return
        if urlsplit(self.path).path.startswith("/_gateway/"):
            self._handle_admin()
            return
        service, upstream_path, name = route(self.gateway, self.path, self.headers.get("Host", ""))
        if service is None:
            known = ", ".join(self.gateway.services)
            self._send_text(404, f"unknown service {name!r}: neither the path {self.path!r} nor "
                                 f"the Host header names a configured service (known: {known})")
            return
        self._proxy(service, upstream_path, body)

    def _handle_admin(self) -> None:
        path = urlsplit(self.path).path
        endpoints = {"/_gateway/stats": "GET", "/_gateway/healthz": "GET",
                     "/_gateway/reset": "POST"}
        if path not in endpoints:
            self._send_text(404, f"unknown gateway endpoint {path}")
        elif self.command != endpoints[path]:
            self._send_text(405, f"{path} takes {endpoints[path]}", {"Allow": endpoints[path]})
        elif path == "/_gateway/stats":
            body = json.dumps(self.gateway.stats(), indent=2).encode() + b"\n"
            self._send(200, body, {"Content-Type": "application/json"})
        elif path == "/_gateway/reset":
            self.gateway.reset()
            self._send_text(200, "reset: all processes stopped, counters zeroed")
        else:
            self._send_text(200, "ok")

    def _proxy(self, service: Service, upstream_path: str, body: bytes) -> None:
        warmup = urlsplit(upstream_path).path == WARMUP_PATH
        try:
            lease = service.acquire(warmup)
        except StartFailed as err:
            self._send_text(503, str(err))
            return
        try:
            gateway_headers = {
                "X-Gateway-Cold-Start": "true" if lease.cold else "false",
                "X-Gateway-Wait-Seconds": f"{lease.wait_seconds:.6f}",
            }
            try:
                status, reason, headers, data = self._forward(lease.port, upstream_path, body)
            except (OSError, http.client.HTTPException) as err:
                self._send_text(502, f"service {service.config.name!r} did not answer: {err}",
                                gateway_headers)
                return
        finally:
            service.release(lease)
        self._send_upstream(status, reason, headers, data, gateway_headers)

    def _forward(self, port: int, path: str,
                 body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=UPSTREAM_TIMEOUT_SECONDS)
        try:
            # Host is forwarded as received, like Knative's activator does.
            conn.putrequest(self.command, path, skip_host=True, skip_accept_encoding=True)
            for key, value in self._forwardable(self.headers.items()):
                if key.lower() != "content-length":
                    conn.putheader(key, value)
            if body or self.command in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.putheader("X-Forwarded-For", self.client_address[0])
            conn.endheaders(body or None)
            resp = conn.getresponse()
            return resp.status, resp.reason, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _send_upstream(self, status: int, reason: str, headers: list[tuple[str, str]],
                       data: bytes, extra: dict[str, str]) -> None:
        self.send_response_only(status, reason)
        for key, value in self._forwardable(headers):
            # For HEAD the upstream's Content-Length describes the body a GET would get.
            if key.lower() != "content-length" or self.command == "HEAD":
                self.send_header(key, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    @staticmethod
    def _forwardable(headers: Any) -> list[tuple[str, str]]:
        pairs = list(headers)
        named = {h.strip().lower() for k, v in pairs if k.lower() == "connection"
                 for h in v.split(",")}
        return [(k, v) for k, v in pairs if k.lower() not in HOP_BY_HOP and k.lower() not in named]

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        if not length.strip().isdigit():
            raise ValueError(f"bad Content-Length {length!r}")
        return self.rfile.read(int(length))

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ValueError(f"bad chunk size {size_line!r}") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # Trailers are dropped.
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _send_text(self, status: int, text: str, extra: Optional[dict[str, str]] = None) -> None:
        self._send(status, (text + "\n").encode(),
                   {"Content-Type": "text/plain; charset=utf-8", **(extra or {})})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def make_server(gateway: Gateway, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("BoundGatewayHandler", (GatewayHandler,), {"gateway": gateway})
    server_class = type("GatewayHTTPServer", (ThreadingHTTPServer,), {
        "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET,
        # A burst of concurrent requests (a fan-out warming many tasks) must not overflow the
        # default backlog of 5: the kernel would drop SYNs and the client retry a second later.
        "request_queue_size": 128,
        "daemon_threads": True,
    })
    return server_class((host, port), handler)


# --------------------------------------------------------------------------------------------
# Command line


def write_port_file(path: str, port: int) -> None:
    # Atomic: a test polling for the file never reads it half-written.
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Local scale-to-zero gateway (Knative activator stand-in).")
    parser.add_argument("--config", required=True, help="JSON config file")
    parser.add_argument("--port", type=int, help="listen port (overrides listen.port; 0 = any)")
    parser.add_argument("--host", help="listen host (overrides listen.host)")
    parser.add_argument("--port-file", help="write the bound port to this file once listening")
    parser.add_argument("--verbose", action="store_true", help="also log every request")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"gateway: config error: {err}", file=sys.stderr)
        return 2
    host = args.host if args.host is not None else config.host
    port = args.port if args.port is not None else config.port

    gateway = Gateway(config)
    # A plain flag, not an Event: a handler calling Event.set() could deadlock on the lock the
    # interrupted main thread already holds inside Event.wait().
    stop_requested = [False]

    def on_signal(signum: int, frame: Any) -> None:
        stop_requested[0] = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        server = make_server(gateway, host, port)
    except OSError as err:
        print(f"gateway: cannot listen on {host}:{port}: {err.strerror}", file=sys.stderr)
        return 1
    try:
        gateway.start()
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        bound_port = server.server_address[1]
        if args.port_file:
            write_port_file(args.port_file, bound_port)
        shown_host = f"[{host}]" if ":" in host else host
        print(f"gateway listening on http://{shown_host}:{bound_port}", flush=True)
        while not stop_requested[0]:
            time.sleep(0.05)
        log.info("shutting down")
        server.shutdown()
        return 0
    finally:
        # Also on unexpected exceptions: no service process may outlive the gateway.
        gateway.shutdown()
        server.server_close()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s gateway %(levelname)s %(message)s", stream=sys.stderr)
    return run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
