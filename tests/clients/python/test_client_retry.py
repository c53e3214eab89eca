"""PrewarmClient's retries of UNAVAILABLE (retry.py) against a real gRPC server in this process
(flaky_server.py: answers UNAVAILABLE a given number of times, as a standby does during a
failover, and then answers)."""

from __future__ import annotations

import random
import threading
import time
from concurrent import futures
from typing import Any

import grpc
import pytest

import support
from support import harness

support.need_stubs()

from flaky_server import FlakyService  # noqa: E402
from prewarm_client import (NO_RETRY, DeadlineExceededError, NotFoundError,  # noqa: E402
                            PrewarmClient, RetryPolicy, UnavailableError, pb2_grpc)


def seeded(**kwargs: Any) -> dict[str, Any]:
    return {"retry_random": random.Random(7), **kwargs}


def test_unavailable_is_retried_until_the_server_answers(flaky: tuple[FlakyService, str]
                                                         ) -> None:
    service, target = flaky
    service.failures = 3
    policy = RetryPolicy(max_attempts=5, initial_backoff=0.05, max_backoff=0.2)
    with PrewarmClient(target, timeout=5, retry=policy, **seeded()) as client:
        assert [s.name for s in client.list_services()] == ["svc-a"]
    assert len(service.arrivals) == 4
    # Exponential backoff with jitter: retry n waits between b/2 and b, b = 0.05 · 2^(n-1).
    gaps = [b - a for a, b in zip(service.arrivals, service.arrivals[1:])]
    for n, gap in enumerate(gaps, start=1):
        ceiling = min(0.2, 0.05 * 2 ** (n - 1))
        assert gap >= ceiling / 2 - 0.005, gaps
    # The same request every time (a ReportTiming repeat is idempotent on the server).
    service.arrivals.clear()
    service.failures = 1
    with PrewarmClient(target, timeout=5, retry=policy, **seeded()) as client:
        client.report("run-1", "a", "started", event_time=1_700_000_000)
    assert len(service.requests) == 2 and service.requests[0] == service.requests[1]


def test_the_deadline_bounds_all_attempts(flaky: tuple[FlakyService, str]) -> None:
    """A replica that never leads: the client retries until the call's deadline, then raises the
    server's UNAVAILABLE with how many attempts it made; never later than the deadline."""
    service, target = flaky
    service.failures = 10**6
    policy = RetryPolicy(max_attempts=1000, initial_backoff=0.02, max_backoff=0.1)
    with PrewarmClient(target, timeout=5, retry=policy, **seeded()) as client:
        for timeout in (0.3, 0.8):
            before = len(service.arrivals)
            t0 = time.monotonic()
            with pytest.raises(UnavailableError) as info:
                client.prewarm("run-x", "wf", [{"task_id": "a"}], timeout=timeout)
            elapsed = time.monotonic() - t0
            assert elapsed <= timeout + 0.3, elapsed
            attempts = len(service.arrivals) - before
            assert info.value.attempts == attempts >= 3
            assert "not the leader" in info.value.message
            assert f"after {attempts} attempts" in str(info.value)


def test_max_attempts_and_no_retry(flaky: tuple[FlakyService, str]) -> None:
    service, target = flaky
    service.failures = 10**6
    with PrewarmClient(target, timeout=5, retry=RetryPolicy(max_attempts=3, initial_backoff=0.01,
                                                            max_backoff=0.01),
                       **seeded()) as client:
        with pytest.raises(UnavailableError) as info:
            client.list_services()
    assert info.value.attempts == 3 and len(service.arrivals) == 3
    for retry in (NO_RETRY, None):
        service.arrivals.clear()
        with PrewarmClient(target, timeout=5, retry=retry) as client:
            with pytest.raises(UnavailableError) as info:
                client.list_services()
        assert info.value.attempts == 1 and len(service.arrivals) == 1


def test_other_errors_are_not_retried(flaky: tuple[FlakyService, str]) -> None:
    service, target = flaky
    service.failures, service.code = 10**6, grpc.StatusCode.NOT_FOUND
    with PrewarmClient(target, timeout=5, **seeded()) as client:
        with pytest.raises(NotFoundError):
            client.report("run-1", "a", "started")
    assert len(service.arrivals) == 1


def test_attempt_timeout_caps_each_attempt(flaky: tuple[FlakyService, str]) -> None:
    """A server that does not answer in time: the attempt ends at attempt_timeout with
    DEADLINE_EXCEEDED, which is not retried (the call may have run)."""
    service, target = flaky
    service.hang = 0.5
    with PrewarmClient(target, timeout=5, attempt_timeout=0.1, **seeded()) as client:
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceededError) as info:
            client.list_services()
    assert time.monotonic() - t0 < 0.45
    assert info.value.attempts == 1


def test_a_restarted_server_is_reached_within_the_deadline() -> None:
    """Failover seen from the client: nothing listens on the port (connection refused:
    UNAVAILABLE), then a server starts there; without retries the call fails at once, with
    them it reaches the server within its deadline."""
    port = harness.closed_port()
    target = f"127.0.0.1:{port}"
    # Reconnect quickly after the refused connection, as a Kubernetes Service does once it
    # routes to the new leader.
    options = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 200)]
    with PrewarmClient(target, timeout=5, retry=NO_RETRY, options=options) as client:
        with pytest.raises(UnavailableError) as info:
            client.list_services()
        assert info.value.attempts == 1
    service = FlakyService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb2_grpc.add_PrewarmServiceServicer_to_server(service, server)

    def start() -> None:
        assert server.add_insecure_port(target) == port
        server.start()

    starter = threading.Timer(0.4, start)
    policy = RetryPolicy(max_attempts=100, initial_backoff=0.05, max_backoff=0.2)
    try:
        with PrewarmClient(target, timeout=5, retry=policy, options=options,
                           **seeded()) as client:
            starter.start()
            t0 = time.monotonic()
            assert [s.name for s in client.list_services()] == ["svc-a"]
            assert 0.3 < time.monotonic() - t0 < 5
        assert len(service.arrivals) == 1  # the attempts before it never reached a server
    finally:
        starter.cancel()
        server.stop(None)


@pytest.mark.parametrize("kwargs", [
    {"max_attempts": 0}, {"max_attempts": 1.5}, {"initial_backoff": -1},
    {"max_backoff": float("nan")}, {"initial_backoff": 2, "max_backoff": 1},
    {"multiplier": 0.5},
])
def test_bad_retry_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=2)
    rng = random.Random(1)
    for retry, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (30, 1.0)]:
        draws = [policy.backoff(retry, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in draws), (retry, draws)
        assert len(set(draws)) > 1  # jittered
