"""Typed errors of PrewarmClient: one class per gRPC status the server uses, keeping its message.

    try:
        client.get_plan("no-such-run")
    except prewarm_client.NotFoundError as err:
        print(err.code, err.message)   # StatusCode.NOT_FOUND, "run 'no-such-run' is not active"
"""

from __future__ import annotations

from typing import Optional

import grpc


class PrewarmError(Exception):
    """A call to prewarmd failed. `code` is the gRPC status, `message` the server's text (or the
    client library's, for DEADLINE_EXCEEDED and connection errors), `method` the RPC name,
    `attempts` how many times the call was tried (retries of UNAVAILABLE: retry.py)."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, code: Optional[grpc.StatusCode] = None,
                 method: str = "", attempts: int = 1) -> None:
        if code is not None:
            self.code = code
        self.message = message
        self.method = method
        self.attempts = attempts
        prefix = f"{method}: " if method else ""
        suffix = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"{prefix}{self.code.name}: {message}{suffix}")


class InvalidArgumentError(PrewarmError):
    """INVALID_ARGUMENT: bad input (a cycle, an unknown upstream id, a URL outside the allowlist);
    the message names the field or task."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(PrewarmError):
    """NOT_FOUND: unknown run, task or service."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(PrewarmError):
    """ALREADY_EXISTS: a Prewarm for a run id that is already active."""

    code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhaustedError(PrewarmError):
    """RESOURCE_EXHAUSTED: past a server limit (tasks per DAG, active runs, services, size)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(PrewarmError):
    """FAILED_PRECONDITION: a valid request in the wrong state (e.g. finishing a skipped task)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class UnavailableError(PrewarmError):
    """UNAVAILABLE: the server cannot be reached (down, restarting), is a standby replica, or
    could not commit. PrewarmClient raises it only once its retries (retry.py) are spent."""

    code = grpc.StatusCode.UNAVAILABLE


class UnauthenticatedError(PrewarmError):
    """UNAUTHENTICATED: missing or wrong bearer token."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(PrewarmError):
    """PERMISSION_DENIED."""

    code = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceededError(PrewarmError):
    """DEADLINE_EXCEEDED: no answer within the call's deadline."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


_BY_CODE: dict[grpc.StatusCode, type[PrewarmError]] = {
    cls.code: cls for cls in (
        InvalidArgumentError, NotFoundError, AlreadyExistsError, ResourceExhaustedError,
        FailedPreconditionError, UnavailableError, UnauthenticatedError, PermissionDeniedError,
        DeadlineExceededError)
}


def from_rpc_error(err: grpc.RpcError, method: str = "", attempts: int = 1) -> PrewarmError:
    """The typed error for a failed call (grpc.RpcError raised by a stub), after `attempts`
    tries."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    cls = _BY_CODE.get(code, PrewarmError)
    return cls(details or code.name, code=code, method=method, attempts=attempts)


__all__ = [
    "PrewarmError", "InvalidArgumentError", "NotFoundError", "AlreadyExistsError",
    "ResourceExhaustedError", "FailedPreconditionError", "UnavailableError",
    "UnauthenticatedError", "PermissionDeniedError", "DeadlineExceededError", "from_rpc_error",
]
