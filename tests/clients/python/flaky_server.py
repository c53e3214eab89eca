"""A PrewarmService in this process that answers UNAVAILABLE a given number of times, as a standby
replica does during a failover, and then answers: for the retry tests of the client and the
Airflow listener."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Any, Iterator

import grpc

from prewarm_client import pb2, pb2_grpc


class FlakyService(pb2_grpc.PrewarmServiceServicer):
    """Answers the first `failures` calls with `code` (UNAVAILABLE: "not the leader"), later ones
    normally; records when each call arrived."""

    def __init__(self) -> None:
        self.failures = 0
        self.code = grpc.StatusCode.UNAVAILABLE
        self.hang = 0.0
        self.arrivals: list[float] = []
        self.requests: list[Any] = []
        self._lock = threading.Lock()

    def _answer(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.arrivals.append(time.monotonic())
            failing = len(self.arrivals) <= self.failures
        if self.hang:
            time.sleep(self.hang)
        if failing:
            context.abort(self.code, "replica is a standby: not the leader")

    def ListServices(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._answer(context)
        return pb2.ListServicesResponse(services=[pb2.Service(name="svc-a")])

    def ReportTiming(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.requests.append(request)
        self._answer(context)
        return pb2.ReportTimingResponse()

    def Prewarm(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.requests.append(request)
        self._answer(context)
        return pb2.PrewarmResponse(plan=pb2.RunPlan(run_id=request.run_id))


def serve() -> Iterator[tuple[FlakyService, str]]:
    """(the service, its "127.0.0.1:<port>" target): a real gRPC server on port 0, stopped when
    the generator ends (conftest.py's `flaky` fixture)."""
    service = FlakyService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb2_grpc.add_PrewarmServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield service, f"127.0.0.1:{port}"
    finally:
        server.stop(None)
