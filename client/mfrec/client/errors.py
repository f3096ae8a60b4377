"""The one exception type the client raises."""

from __future__ import annotations

import grpc


class RecommenderError(Exception):
    """A call to the recommender failed.

    Attributes:
        code: the gRPC status code (for example grpc.StatusCode.INVALID_ARGUMENT).
        message: the server's explanation, or the transport's when the server is unreachable.
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> RecommenderError:
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "")
