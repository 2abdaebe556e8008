"""Client-side exceptions, one per gRPC status code TF Serving answers with; each carries the server's message."""

from __future__ import annotations

import grpc


class ServingError(RuntimeError):
    """A failed RPC: ``code`` (grpc.StatusCode) and the server's ``details``."""

    def __init__(self, code: grpc.StatusCode, details: str, *, method: str = "") -> None:
        self.code = code
        self.details = details
        self.method = method
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{code.name}: {details}")


class NotFoundError(ServingError, LookupError):
    """Unknown model, or a version that is not (yet) loaded."""


class InvalidArgumentError(ServingError, ValueError):
    """Missing/extra inputs, a wrong dtype, a bad k, an unknown version label, ..."""


class FailedPreconditionError(ServingError):
    """An unknown signature name."""


class UnavailableError(ServingError, ConnectionError):
    """No server answered (after the retries)."""


class DeadlineExceededError(ServingError, TimeoutError):
    """The deadline ran out (after the retries)."""


_BY_CODE = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def from_rpc_error(error: grpc.RpcError, method: str = "") -> ServingError:
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else "") or str(error)
    return _BY_CODE.get(code, ServingError)(code, details, method=method)
