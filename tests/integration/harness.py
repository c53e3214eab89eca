"""Integration harness: real prewarmd and gateway processes over loopback, and a small workflow runner.

Used by the integration tests (tests/integration/test_*.py), the Python client tests
(tests/clients/python/support.py), the deploy tests (tests/deploy/) and the seed experiment demo
(bench/seed_experiment.py). Standard library plus Debian's grpcio/protobuf; run with
/usr/bin/python3.

The harness is two modules; this one re-exports both under the names it always had:
- processes.py: build products and stubs, starting and stopping prewarmd, the gateway and
  misbehaving warm-up targets, the gRPC client, metrics.
- workflows.py: workflows and the runner that drives them through the gateway under a
  pre-warming policy, and the comparison of policies.

`harness.pb2`, `harness.pb2_grpc` and `harness.grpc` are read from processes.py on each access,
since load_stubs() sets them there after this module is imported.
"""

from __future__ import annotations

from typing import Any

import processes
from processes import (
    DEFAULT_RPC_TIMEOUT_SECONDS,
    GATEWAY_SCRIPT,
    LABEL_RE,
    PYTHON,
    REPO,
    RESTORED_RE,
    SAMPLE_RE,
    SERVING_RE,
    START_TIMEOUT_SECONDS,
    Client,
    Gateway,
    GatewayService,
    Prewarmd,
    Response,
    TargetServer,
    _forget,
    _spawn,
    _stop,
    binaries_required,
    build_dir,
    closed_port,
    duration,
    gateway_starter,
    http_request,
    load_stubs,
    make_workdir,
    metric_value,
    missing_build_products,
    prewarmd_binary,
    require_build_products,
    stubs_dir,
    timestamp,
    wait_for,
)
from workflows import (
    MODES,
    RunResult,
    Task,
    TaskResult,
    Workflow,
    WorkflowRunner,
    comparison_table,
    mean,
    plan_summary,
    seed_chain,
)

_STUBS = ("pb2", "pb2_grpc", "grpc")


def __getattr__(name: str) -> Any:
    if name in _STUBS:
        return getattr(processes, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


__all__ = [
    "DEFAULT_RPC_TIMEOUT_SECONDS", "GATEWAY_SCRIPT", "LABEL_RE", "MODES", "PYTHON", "REPO",
    "RESTORED_RE", "SAMPLE_RE", "SERVING_RE", "START_TIMEOUT_SECONDS", "Client", "Gateway",
    "GatewayService", "Prewarmd", "Response", "RunResult", "TargetServer", "Task", "TaskResult",
    "Workflow", "WorkflowRunner", "binaries_required", "build_dir", "closed_port",
    "comparison_table", "duration", "gateway_starter", "http_request", "load_stubs",
    "make_workdir", "mean", "metric_value", "missing_build_products", "plan_summary",
    "prewarmd_binary", "require_build_products", "seed_chain", "stubs_dir", "timestamp",
    "wait_for",
    # Process handles, for tests that start a process of their own (tests/deploy/test_deploy_live.py).
    "_forget", "_spawn", "_stop",
]
