#!/usr/bin/python3
"""Example serverless service for the local scale-to-zero gateway.

Behaves like the seed paper's Knative services: it does no real work, it sleeps. Started by
gateway.py on a port of the gateway's choosing; the `--init-seconds` sleep before listening is the
initialisation part of the cold start (the gateway adds process spawn on top).

Endpoints:
  /healthz          200 "ok"          (readiness probe; does not count as a request served)
  /warmup, /ping    200 "warm"        (the warm-up handler: answers at once)
  anything else     sleeps --work-seconds (or ?sleep=SECONDS), then 200 {"service", "slept"}

Every response carries X-Process-Cold ("true" only on the first non-healthz request this process
serves, so a client can tell a cold call from a warm one), X-Process-Start-Time (unix seconds) and
X-Process-Pid. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

WARMUP_PATHS = frozenset({"/warmup", "/ping"})


class ProcessState:
    """What one process knows about itself. Thread-safe."""

    def __init__(self, name: str, work_seconds: float) -> None:
        self.name = name
        self.work_seconds = work_seconds
        self.start_time = time.time()
        self._lock = threading.Lock()
        self._served = False

    def take_cold_flag(self) -> bool:
        """True for exactly one caller: the first non-healthz request."""
        with self._lock:
            cold = not self._served
            self._served = True
            return cold

    def peek_cold_flag(self) -> bool:
        with self._lock:
            return not self._served


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "prewarm-example-service/1"
    disable_nagle_algorithm = True  # Headers and body go out in separate writes.
    state: ProcessState  # set on the subclass built in main()

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def do_HEAD(self) -> None:
        self._handle(send_body=False)

    def _handle(self, send_body: bool = True) -> None:
        self._drain_body()
        url = urlsplit(self.path)
        if url.path == "/healthz":
            # The probe must not consume the cold flag, or every first call would look warm.
            self._reply(200, b"ok\n", "text/plain", self.state.peek_cold_flag(), send_body)
            return
        cold = self.state.take_cold_flag()
        if url.path in WARMUP_PATHS:
            self._reply(200, b"warm\n", "text/plain", cold, send_body)
            return
        try:
            seconds = self._sleep_seconds(url.query)
        except ValueError as err:
            self._reply(400, f"{err}\n".encode(), "text/plain", cold, send_body)
            return
        time.sleep(seconds)
        body = json.dumps({"service": self.state.name, "slept": seconds}).encode() + b"\n"
        self._reply(200, body, "application/json", cold, send_body)

    def _sleep_seconds(self, query: str) -> float:
        values = parse_qs(query).get("sleep")
        if not values:
            return self.state.work_seconds
        try:
            seconds = float(values[-1])
        except ValueError:
            raise ValueError(f"bad sleep value {values[-1]!r}: want seconds") from None
        if not 0 <= seconds <= 3600:
            raise ValueError(f"bad sleep value {values[-1]!r}: want 0..3600 seconds")
        return seconds

    def _drain_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)

    def _reply(self, status: int, body: bytes, content_type: str, cold: bool,
               send_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Process-Cold", "true" if cold else "false")
        self.send_header("X-Process-Start-Time", f"{self.state.start_time:.6f}")
        self.send_header("X-Process-Pid", str(os.getpid()))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # One line per request would drown the gateway's log.


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")),
                        help="port to listen on (default: $PORT or 8080)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--init-seconds", type=float, default=0.0,
                        help="initialisation time before listening (the cold start)")
    parser.add_argument("--work-seconds", type=float, default=0.0,
                        help="how long a normal request sleeps")
    parser.add_argument("--name", default=os.environ.get("SERVICE_NAME", "example"))
    args = parser.parse_args(argv)
    if args.init_seconds < 0 or args.work_seconds < 0:
        parser.error("--init-seconds and --work-seconds must be >= 0")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    state = ProcessState(args.name, args.work_seconds)
    time.sleep(args.init_seconds)
    handler = type("BoundHandler", (Handler,), {"state": state})
    ThreadingHTTPServer.request_queue_size = 128  # Bursts of concurrent calls; default is 5.
    server = ThreadingHTTPServer((args.host, args.port), handler)
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
