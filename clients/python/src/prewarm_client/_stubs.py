"""The generated prewarm.v1 stubs, imported once with an error that says how to produce them."""

from __future__ import annotations

from typing import Any

try:
    from prewarm_client._proto.prewarm.v1 import prewarm_pb2 as pb2
    from prewarm_client._proto.prewarm.v1 import prewarm_pb2_grpc as pb2_grpc
except ImportError as err:  # pragma: no cover - depends on the build having run
    raise ImportError(
        "prewarm_client's generated gRPC stubs are missing (prewarm_client/_proto). They are "
        "produced by the build, never committed: run `/usr/bin/python3 clients/python/"
        "generate_stubs.py`, build the CMake target `prewarm_python_client`, or install the "
        f"wheel. ({err})") from err

__all__ = ["pb2", "pb2_grpc"]

# For type hints of generated messages without depending on the generated names.
Message = Any
