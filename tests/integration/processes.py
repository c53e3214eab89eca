"""Integration harness, processes: real prewarmd and gateway processes over loopback, and what
talks to them.

- Build products: where prewarmd and the generated Python stubs are ($PREWARM_BUILD_DIR), and
  `load_stubs()`, which imports grpc and the stubs into this module (`pb2`, `pb2_grpc`, `grpc`).
- `Prewarmd`: starts build/server/prewarmd on OS-chosen ports (parsed from its "serving gRPC on
  port N, metrics on port M" log line) with a store in a work directory; SIGTERM or SIGKILL it,
  restart it on the same store and port; its metrics.
- `Gateway`: starts deploy/local/gateway.py (the scale-to-zero gateway) on port 0 with a given set
  of services; stats, reset, plain HTTP requests.
- `Client`: the gRPC stub with a default deadline on every call.
- `TargetServer`, `closed_port()`: warm-up targets that misbehave, and one that is not there.

Every process is started with PR_SET_PDEATHSIG (killed by the kernel if this interpreter dies), from
one long-lived spawner thread, and is also tracked for an atexit clean-up: no orphans.

Driving workflows through these processes is workflows.py; harness.py re-exports both.
"""

from __future__ import annotations

import atexit
import ctypes
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"
GATEWAY_SCRIPT = REPO / "deploy" / "local" / "gateway.py"
START_TIMEOUT_SECONDS = 15.0
DEFAULT_RPC_TIMEOUT_SECONDS = 5.0


# --------------------------------------------------------------------------------------------
# Build products


def build_dir() -> Path:
    """The CMake build directory: $PREWARM_BUILD_DIR, else <repo>/build."""
    env = os.environ.get("PREWARM_BUILD_DIR")
    return Path(env).resolve() if env else REPO / "build"


def prewarmd_binary(build: Optional[Path] = None) -> Path:
    return (build or build_dir()) / "server" / "prewarmd"


def stubs_dir(build: Optional[Path] = None) -> Path:
    return (build or build_dir()) / "python"


def missing_build_products(build: Optional[Path] = None) -> Optional[str]:
    """Why the build products the integration tests need are unusable, or None when they are fine."""
    binary = prewarmd_binary(build)
    if not os.access(binary, os.X_OK):
        return (f"{binary} is missing; build it with "
                f"`ninja -C {build or build_dir()} prewarmd prewarm_python_stubs`")
    if not (stubs_dir(build) / "prewarm" / "v1" / "prewarm_pb2_grpc.py").exists():
        return (f"the Python stubs are missing from {stubs_dir(build)}; build them with "
                f"`ninja -C {build or build_dir()} prewarm_python_stubs`")
    try:
        load_stubs(build)
    except ImportError as err:
        return f"cannot import the generated stubs from {stubs_dir(build)}: {err}"
    return None


def binaries_required() -> bool:
    """PREWARM_REQUIRE_BINARIES=1 (set by CTest): missing build products fail the tests."""
    return os.environ.get("PREWARM_REQUIRE_BINARIES", "") not in ("", "0")


def require_build_products() -> None:
    """In a pytest test or fixture: skips it when the build products are missing, or fails it
    when binaries_required() (under CTest a skip would hide a broken build)."""
    import pytest  # noqa: PLC0415 - only tests call this
    reason = missing_build_products()
    if reason is None:
        return
    if binaries_required():
        pytest.fail(f"PREWARM_REQUIRE_BINARIES=1: {reason}", pytrace=False)
    pytest.skip(reason)


pb2: Any = None       # prewarm.v1.prewarm_pb2, once load_stubs() ran
pb2_grpc: Any = None  # prewarm.v1.prewarm_pb2_grpc
grpc: Any = None


def load_stubs(build: Optional[Path] = None) -> None:
    """Imports grpc and the generated stubs (build/python) into this module's globals."""
    global pb2, pb2_grpc, grpc
    if pb2 is not None:
        return
    path = str(stubs_dir(build))
    if path not in sys.path:
        sys.path.insert(0, path)
    import grpc as grpc_module  # noqa: PLC0415 - Debian's grpcio, /usr/bin/python3 only
    from prewarm.v1 import prewarm_pb2, prewarm_pb2_grpc  # noqa: PLC0415
    grpc, pb2, pb2_grpc = grpc_module, prewarm_pb2, prewarm_pb2_grpc


# --------------------------------------------------------------------------------------------
# Processes


_live_lock = threading.Lock()
_live: set[subprocess.Popen[bytes]] = set()


def _pdeathsig_hook() -> Optional[Callable[[], None]]:
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return hook


class _Spawner:
    """Starts every child process from one long-lived thread. PR_SET_PDEATHSIG fires when the
    *thread* that forked the child exits, so a process started from a short-lived thread (a test's
    helper thread restarting prewarmd mid-run) would be killed as soon as that thread ended."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._jobs: list[tuple[Callable[[], subprocess.Popen[bytes]], dict[str, Any]]] = []
        self._thread: Optional[threading.Thread] = None

    def run(self, start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        job: dict[str, Any] = {"done": threading.Event()}
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="harness-spawner",
                                                daemon=True)
                self._thread.start()
            self._jobs.append((start, job))
            self._cond.notify()
        job["done"].wait()
        if "error" in job:
            raise job["error"]
        return job["process"]

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs:
                    self._cond.wait()
                start, job = self._jobs.pop(0)
            try:
                job["process"] = start()
            except BaseException as err:  # Handed to the caller.
                job["error"] = err
            job["done"].set()


_spawner = _Spawner()


def _spawn(argv: list[str], log_path: Path, cwd: Optional[Path] = None,
           stdout: Any = None) -> subprocess.Popen[bytes]:
    def start() -> subprocess.Popen[bytes]:
        log = open(log_path, "ab")
        try:
            return subprocess.Popen(
                argv, cwd=cwd, stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else log, stderr=log,
                start_new_session=True, preexec_fn=_pdeathsig_hook())
        finally:
            log.close()

    process = _spawner.run(start)
    with _live_lock:
        _live.add(process)
    return process


def _forget(process: subprocess.Popen[bytes]) -> None:
    with _live_lock:
        _live.discard(process)


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
          timeout: float = 10.0) -> int:
    """Sends `sig` to the process group, SIGKILLs it after `timeout`; returns the exit code."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
    # Anything left in its process group (the gateway's services have their own groups and the
    # gateway stops them; PR_SET_PDEATHSIG covers its crash path).
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _forget(process)
    return process.returncode


@atexit.register
def _kill_leftovers() -> None:
    with _live_lock:
        live = list(_live)
    for process in live:
        _stop(process, signal.SIGTERM, timeout=5.0)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.01,
             what: str = "condition") -> Any:
    """Polls `predicate` until it returns a truthy value, which is returned; TimeoutError after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# gRPC client


class Client:
    """PrewarmService stub whose calls carry a deadline (`timeout` seconds) unless given one.

    `client.Prewarm(request)` returns the response; `client.Prewarm(request, timeout=1)` overrides
    the deadline. grpc.RpcError propagates.
    """

    def __init__(self, address: str, timeout: float = DEFAULT_RPC_TIMEOUT_SECONDS,
                 wait_for_ready: bool = False, retry_unavailable: bool = False) -> None:
        load_stubs()
        self.address = address
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        # Retry calls that fail with UNAVAILABLE (a connection broken by a server restart) until
        # their deadline.
        self.retry_unavailable = retry_unavailable
        # Big enough to send the oversize-message test's request; the server enforces its limit.
        self.channel = grpc.insecure_channel(
            address, options=[("grpc.max_send_message_length", 64 << 20),
                              ("grpc.max_receive_message_length", 64 << 20)])
        self.stub = pb2_grpc.PrewarmServiceStub(self.channel)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        rpc = getattr(self.stub, method)

        def call(request: Any, timeout: Optional[float] = None, **kwargs: Any) -> Any:
            kwargs.setdefault("wait_for_ready", self.wait_for_ready)
            deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
            while True:
                try:
                    return rpc(request, timeout=max(0.01, deadline - time.monotonic()), **kwargs)
                except grpc.RpcError as err:
                    if not (self.retry_unavailable and err.code() == grpc.StatusCode.UNAVAILABLE
                            and time.monotonic() < deadline):
                        raise
                time.sleep(0.05)

        return call

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def duration(seconds: float) -> Any:
    load_stubs()
    from google.protobuf import duration_pb2  # noqa: PLC0415
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(round(seconds * 1e9)))
    return d


def timestamp(unix_seconds: float) -> Any:
    load_stubs()
    from google.protobuf import timestamp_pb2  # noqa: PLC0415
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(round(unix_seconds * 1e9)))
    return t


# --------------------------------------------------------------------------------------------
# prewarmd


SERVING_RE = re.compile(r"prewarmd serving gRPC on port (\d+), metrics on port (\d+)")
RESTORED_RE = re.compile(r"restored (\d+) services, (\d+) observations and (\d+) active runs")


class Prewarmd:
    """A prewarmd subprocess with its store in `workdir`. Use as a context manager, or call
    start() and stop(); stop() also runs at interpreter exit.

    `grpc_port=0` lets the OS choose the first time; restart() reuses the port it got.
    """

    def __init__(self, workdir: Path, args: Sequence[str] = (), store: Optional[Path] = None,
                 grpc_port: int = 0, build: Optional[Path] = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        self.store = Path(store) if store else self.workdir / "prewarm.db"
        self.binary = prewarmd_binary(build)
        self.grpc_port = grpc_port
        self.metrics_port = 0
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.starts = 0
        self.log_path = self.workdir / "prewarmd.log"
        self._log_offset = 0
        self._clients: list[Client] = []

    # Lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> "Prewarmd":
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        argv = [str(self.binary), f"--grpc_address=127.0.0.1:{self.grpc_port}",
                "--metrics_address=127.0.0.1:0", f"--store={self.store}", *self.args]
        self.process = _spawn(argv, self.log_path, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while True:
            match = SERVING_RE.search(self.log())
            if match:
                self.grpc_port, self.metrics_port = int(match.group(1)), int(match.group(2))
                return self
            if self.process.poll() is not None:
                _forget(self.process)
                raise RuntimeError(f"prewarmd exited with code {self.process.returncode} before "
                                   f"serving; its log:\n{self.log()}")
            if time.monotonic() > deadline:
                _stop(self.process, signal.SIGKILL)
                raise RuntimeError(f"prewarmd did not serve within {timeout:g} s; its log:\n"
                                   f"{self.log()}")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """Graceful stop (SIGTERM); returns the exit code, None when it was not running."""
        self.close_clients()
        if self.process is None:
            return None
        code = _stop(self.process, signal.SIGTERM, timeout)
        self.process = None
        return code

    def kill(self) -> Optional[int]:
        """kill -9; returns the exit code (-9)."""
        if self.process is None:
            return None
        code = _stop(self.process, signal.SIGKILL)
        self.process = None
        return code

    def restart(self, timeout: float = START_TIMEOUT_SECONDS) -> "Prewarmd":
        """Starts again on the same store and gRPC port (after stop() or kill())."""
        if self.process is not None and self.process.poll() is None:
            self.stop()
        return self.start(timeout)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "Prewarmd":
        return self.start() if not self.running else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Access ---------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def client(self, timeout: float = DEFAULT_RPC_TIMEOUT_SECONDS,
               wait_for_ready: bool = False) -> Client:
        """A new client (closed by stop())."""
        c = Client(self.address, timeout=timeout, wait_for_ready=wait_for_ready)
        self._clients.append(c)
        return c

    def close_clients(self) -> None:
        for c in self._clients:
            c.close()
        self._clients.clear()

    def log(self, all_starts: bool = False) -> str:
        """The log (stderr) of the current start, or of every start."""
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        return data.decode(errors="replace") if all_starts else \
            data[self._log_offset:].decode(errors="replace")

    def restored(self) -> tuple[int, int, int]:
        """(services, observations, active runs) restored by the current start."""
        match = RESTORED_RE.search(self.log())
        assert match, f"no 'restored ...' line in the log:\n{self.log()}"
        return int(match.group(1)), int(match.group(2)), int(match.group(3))

    def metrics_text(self, timeout: float = 5.0) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=timeout)
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            body = resp.read().decode()
            assert resp.status == 200, f"/metrics answered {resp.status}: {body[:200]}"
            return body
        finally:
            conn.close()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
        return metric_value(self.metrics_text(), name, **labels)


SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if not m or m.group(1) != name:
            continue
        have = dict(LABEL_RE.findall(m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
    return total


# --------------------------------------------------------------------------------------------
# Gateway


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    elapsed: float

    @property
    def cold(self) -> bool:
        return self.headers.get("x-gateway-cold-start") == "true"

    @property
    def wait_seconds(self) -> float:
        return float(self.headers.get("x-gateway-wait-seconds", "0") or 0)

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(port: int, path: str, method: str = "GET", timeout: float = 60.0,
                 host: str = "127.0.0.1") -> Response:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    start = time.monotonic()
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data,
                        time.monotonic() - start)
    finally:
        conn.close()


@dataclass(frozen=True)
class GatewayService:
    name: str
    init_seconds: float
    keep_alive_seconds: float
    work_seconds: float = 0.0


class Gateway:
    """The local scale-to-zero gateway as a subprocess on an OS-chosen port."""

    def __init__(self, workdir: Path, services: Iterable[GatewayService]) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.services = {s.name: s for s in services}
        self.port = 0
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.log_path = self.workdir / "gateway.log"

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> "Gateway":
        config = {"listen": {"host": "127.0.0.1", "port": 0},
                  "services": [{"name": s.name, "init_seconds": s.init_seconds,
                                "work_seconds": s.work_seconds,
                                "keep_alive_seconds": s.keep_alive_seconds}
                               for s in self.services.values()]}
        config_path = self.workdir / "gateway.json"
        config_path.write_text(json.dumps(config, indent=2))
        port_file = self.workdir / "gateway.port"
        port_file.unlink(missing_ok=True)
        self.process = _spawn([PYTHON, str(GATEWAY_SCRIPT), "--config", str(config_path),
                               "--port", "0", "--port-file", str(port_file)],
                              self.log_path, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not port_file.exists():
            if self.process.poll() is not None:
                _forget(self.process)
                raise RuntimeError(f"gateway exited with code {self.process.returncode}; its log:"
                                   f"\n{self.log_path.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                _stop(self.process, signal.SIGKILL)
                raise RuntimeError("gateway did not listen within {timeout:g} s")
            time.sleep(0.01)
        self.port = int(port_file.read_text())
        return self

    def stop(self) -> Optional[int]:
        if self.process is None:
            return None
        code = _stop(self.process, signal.SIGTERM, timeout=15.0)
        self.process = None
        return code

    def __enter__(self) -> "Gateway":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, service: str, path: str = "/warmup") -> str:
        return f"http://127.0.0.1:{self.port}/{service}{path}"

    def request(self, path: str, method: str = "GET", timeout: float = 60.0) -> Response:
        return http_request(self.port, path, method, timeout)

    def stats(self) -> dict[str, dict[str, Any]]:
        return self.request("/_gateway/stats").json()["services"]

    def reset(self) -> None:
        resp = self.request("/_gateway/reset", method="POST")
        assert resp.status == 200, resp.body

    def all_idle(self) -> bool:
        return all(s["state"] == "idle" for s in self.stats().values())


# --------------------------------------------------------------------------------------------
# Gateway fixtures


def gateway_starter(workdir: Path) -> Iterator[Callable[..., "Gateway"]]:
    """For a pytest fixture: yields start(services, name="gateway") -> a running Gateway in
    workdir/name; stops every gateway it started when resumed."""
    started: list[Gateway] = []

    def start(services: list[GatewayService], name: str = "gateway") -> Gateway:
        gateway = Gateway(workdir / name, services)
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        gateway.stop()


# --------------------------------------------------------------------------------------------
# Work directories


def make_workdir(prefix: str = "prewarm-it-") -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=prefix)


# --------------------------------------------------------------------------------------------
# Misbehaving warm-up targets


class TargetServer:
    """A tiny HTTP server on a thread, for warm-up targets that misbehave: answers every request
    with `status` after sleeping `delay` seconds, and counts the requests. Context manager."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: PLC0415

        target = self
        self.status, self.delay = status, delay
        self.requests = 0
        self.request_times: list[float] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with target._lock:
                    target.requests += 1
                    target.request_times.append(time.time())
                if target.delay:
                    target._closing.wait(target.delay)
                body = f"status {target.status}\n".encode()
                try:
                    self.send_response(target.status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # The client gave up (timeout).

            do_POST = do_HEAD = do_GET

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/warmup") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> "TargetServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound and released; not reused that quickly)."""
    import socket  # noqa: PLC0415
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
