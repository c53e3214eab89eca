"""prewarmd stops promptly on SIGTERM, and refuses to start on a store file that was emptied.

Issue 11, defects 2 and 4: SIGTERM used to wait the whole 5 s grace whenever a client held a
connection open, even with no call in flight; a store truncated to 0 bytes used to start as an
empty store, forgetting every service and active run without a word.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import harness

# prewarmd's shutdown grace for calls in flight (server.h). With none in flight it must not be
# waited out; the bound leaves room for a loaded machine and still tells the two apart.
GRACE_SECONDS = 5.0
PROMPT_SECONDS = 2.0


def test_sigterm_with_an_idle_client_and_a_watch_stream_exits_well_within_the_grace(
        start_prewarmd: Callable[..., harness.Prewarmd]) -> None:
    pb = harness.pb2
    prewarmd = start_prewarmd()
    client = prewarmd.client()
    client.ListServices(pb.ListServicesRequest())  # The connection stays open, idle.
    stream = client.stub.WatchWarmups(pb.WatchWarmupsRequest(), timeout=30)
    ended: dict[str, object] = {}

    def watch() -> None:
        try:
            for _ in stream:
                pass
            ended["code"] = "OK"
        except Exception as err:  # grpc.RpcError: the server ended the stream.
            ended["code"] = getattr(err, "code", lambda: err)()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stream.initial_metadata()  # The server has registered the subscription (prewarm.proto).

    started = time.monotonic()
    os.killpg(prewarmd.process.pid, signal.SIGTERM)
    code = prewarmd.process.wait(timeout=GRACE_SECONDS * 3)
    elapsed = time.monotonic() - started
    print(f"SIGTERM to exit: {elapsed:.3f} s (grace {GRACE_SECONDS:g} s)")
    assert code == 0, prewarmd.log()
    assert elapsed < PROMPT_SECONDS, (elapsed, prewarmd.log())
    watcher.join(timeout=10)
    assert "code" in ended, "the WatchWarmups stream was not ended by the shutdown"
    assert "prewarmd stopped" in prewarmd.log()
    prewarmd.stop()


def test_a_store_truncated_to_zero_bytes_is_refused_unless_accepted(
        start_prewarmd: Callable[..., harness.Prewarmd]) -> None:
    pb = harness.pb2
    prewarmd = start_prewarmd()
    service = pb.Service(name="svc-a", warmup_url="http://127.0.0.1:9/warmup")
    prewarmd.client().RegisterService(pb.RegisterServiceRequest(service=service))
    assert prewarmd.stop() == 0
    store: Path = prewarmd.store
    assert store.stat().st_size > 0
    os.truncate(store, 0)

    try:
        prewarmd.start()
        raise AssertionError("prewarmd started on an emptied store")
    except RuntimeError as err:
        message = str(err)
    assert "exited with code 1" in message, message
    assert "DATA_LOSS" in message, message
    assert str(store) in message, message
    assert "--store_accept_empty" in message, message
    assert store.stat().st_size == 0, "refusing must leave the file as it was"

    prewarmd.args.append("--store_accept_empty")
    prewarmd.start()
    log = prewarmd.log()
    assert "WARNING" in log and "NEW EMPTY STORE" in log, log
    assert prewarmd.restored() == (0, 0, 0)
    assert prewarmd.stop() == 0
    # Initialised now: it starts without the flag.
    prewarmd.args.remove("--store_accept_empty")
    prewarmd.start()
    assert prewarmd.stop() == 0
