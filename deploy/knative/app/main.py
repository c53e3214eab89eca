#!/usr/bin/env python3
"""Example Knative service with a cheap /warmup handler, for prewarm.

A cold start of this service is: Knative schedules a pod, the container starts, then this process
initialises (INIT_SECONDS, standing in for loading a model or opening connections) before it
listens. Until it listens, the request that woke the service up waits in Knative's activator. So
a request to /warmup pays the whole cold start and leaves the container warm, at the cost of a
few microseconds of work once it is up: exactly what prewarmd needs to fire just before a task.

Endpoints (GET or POST; a request body is read and ignored):
  /warmup              200 "warm" at once (prewarmd's warm-up request)
  /healthz             200 "ok" (readiness)
  anything else        the "task": sleeps WORK_SECONDS (or ?sleep=SECONDS, at most
                       MAX_SLEEP_SECONDS), then 200 {"service", "slept", "cold"}

The body of every request is read to its end (Content-Length, or chunked transfer coding) before
the answer: Knative's queue-proxy keeps connections open and sends the next request on the same
one, which would otherwise be parsed from the unread body. A body that cannot be read (a bad
Content-Length, a broken chunk, another transfer coding, more than MAX_BODY_BYTES) is answered
with an error and the connection is closed.

Every response carries X-Process-Cold: "true" only on the first request (other than /healthz) the
process serves, so a caller (the Airflow operator) can report whether its call was cold.

Environment: PORT (set by Knative; default 8080), INIT_SECONDS (default 2), WORK_SECONDS
(default 1), K_SERVICE (set by Knative: the service name). Python 3 standard library only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# A task may sleep this long: a minute below the revision's timeoutSeconds (600 in
# ../service.yaml, Knative's default max-revision-timeout-seconds), which also covers the cold start
# and the time the request waits in the activator.
MAX_SLEEP_SECONDS = 540.0
# Request bodies are ignored; anything larger than this is refused with 413.
MAX_BODY_BYTES = 1 << 20
CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,8}")


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
        if not self._read_body():
            return
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
        if self._read_body():
            self._reply(200, b"", "text/plain", cold=False)

    def _read_body(self) -> bool:
        """Reads and discards the request's body, so that the connection is positioned at the next
        request. False when the body could not be read: the error has been answered (or the peer
        is gone) and the connection will be closed."""
        encodings = self.headers.get_all("Transfer-Encoding") or []
        lengths = self.headers.get_all("Content-Length") or []
        if encodings:
            # RFC 9112 6.1: Transfer-Encoding overrides Content-Length, and a message with both
            # may be an attempt at request smuggling: answer it, then close the connection.
            if lengths:
                self.close_connection = True
            codings = [c.strip().lower() for e in encodings for c in e.split(",") if c.strip()]
            if codings != ["chunked"]:
                return self._refuse(501, "only the chunked transfer coding is supported")
            return self._read_chunked()
        if not lengths:
            return True  # No body (RFC 9112 6.3: a request without either has none).
        values = {v.strip() for v in ",".join(lengths).split(",")}
        if len(values) != 1 or not next(iter(values)).isdigit():
            return self._refuse(400, "bad Content-Length")
        length = int(values.pop())
        if length > MAX_BODY_BYTES:
            return self._refuse(413, "request body too large")
        return self._discard(length)

    def _read_chunked(self) -> bool:
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                return self._refuse(400, "bad chunk size line") if line else self._gone()
            size_text = line.split(b";", 1)[0].strip()  # chunk extensions are ignored
            if not CHUNK_SIZE.fullmatch(size_text):
                return self._refuse(400, "bad chunk size")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > MAX_BODY_BYTES:
                return self._refuse(413, "request body too large")
            if not self._discard(size):
                return False
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                return self._refuse(400, "chunk data not followed by CRLF")
        while True:  # The trailer section, up to its empty line.
            line = self.rfile.readline(8192)
            if line in (b"\r\n", b"\n"):
                return True
            if not line.endswith(b"\n"):
                return self._refuse(400, "bad trailer") if line else self._gone()

    def _discard(self, length: int) -> bool:
        while length > 0:
            data = self.rfile.read(min(length, 65536))
            if not data:
                return self._gone()
            length -= len(data)
        return True

    def _refuse(self, status: int, message: str) -> bool:
        self.close_connection = True
        self._reply(status, message.encode() + b"\n", "text/plain", cold=False)
        return False

    def _gone(self) -> bool:
        """The peer closed the connection inside the body: nothing to answer."""
        self.close_connection = True
        return False

    def _reply(self, status: int, body: bytes, content_type: str, cold: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Process-Cold", "true" if cold else "false")
        if self.close_connection:
            self.send_header("Connection", "close")
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
