#!/usr/bin/env python3
"""Example Knative service with a cheap /warmup handler, for prewarm.

A cold start of this service is: Knative schedules a pod, the container starts, then this process
initialises (INIT_SECONDS, standing in for loading a model or opening connections) before it
listens. Until it listens, the request that woke the service up waits in Knative's activator. So
a request to /warmup pays the whole cold start and leaves the container warm, at the cost of a
few microseconds of work once it is up: exactly what prewarmd needs to fire just before a task.

Endpoints:
  GET /warmup          200 "warm" at once (prewarmd's warm-up request)
  GET /healthz         200 "ok" (readiness)
  anything else        the "task": sleeps WORK_SECONDS (or ?sleep=SECONDS, at most 600), then
                       200 {"service", "slept", "cold"}

Every response carries X-Process-Cold: "true" only on the first request (other than /healthz) the
process serves, so a caller (the Airflow operator) can report whether its call was cold.

Environment: PORT (set by Knative; default 8080), INIT_SECONDS (default 2), WORK_SECONDS
(default 1), K_SERVICE (set by Knative: the service name). Python 3 standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_SLEEP_SECONDS = 600.0


class State:
    """Whether the process has served a request yet. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._served = False

    def take_cold(self) -> bool:
        with self._lock:
            cold, self._served = not self._served, True
            return cold


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "prewarm-knative-example/1"
    state = State()
    work_seconds = 1.0
    name = "prewarm-example"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._reply(200, b"ok\n", "text/plain", cold=False)
            return
        cold = self.state.take_cold()
        if url.path == "/warmup":
            self._reply(200, b"warm\n", "text/plain", cold)
            return
        try:
            sleep = float(parse_qs(url.query).get("sleep", [self.work_seconds])[0])
        except ValueError:
            self._reply(400, b"sleep must be a number\n", "text/plain", cold)
            return
        sleep = min(max(sleep, 0.0), MAX_SLEEP_SECONDS)
        time.sleep(sleep)
        body = json.dumps({"service": self.name, "slept": sleep, "cold": cold}).encode() + b"\n"
        self._reply(200, body, "application/json", cold)

    do_POST = do_GET

    def do_HEAD(self) -> None:
        self._reply(200, b"", "text/plain", cold=False)

    def _reply(self, status: int, body: bytes, content_type: str, cold: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Process-Cold", "true" if cold else "false")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # One line per request would drown the pod's log.


def main() -> int:
    port = int(os.environ.get("PORT", "8080"))
    init_seconds = float(os.environ.get("INIT_SECONDS", "2"))
    Handler.work_seconds = float(os.environ.get("WORK_SECONDS", "1"))
    Handler.name = os.environ.get("K_SERVICE", "prewarm-example")
    # Knative sends SIGTERM and keeps routing in-flight requests for a while: exit cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(init_seconds)  # The initialisation part of the cold start.
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    print(f"{Handler.name} listening on port {server.server_address[1]} after "
          f"{init_seconds:g} s of initialisation", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
