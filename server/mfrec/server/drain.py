"""Draining: once shutdown starts, Recommender calls in flight finish and new ones are refused.

gRPC's own `server.stop(grace)` stops taking calls off the wire while still accepting them,
so a call that arrives during the grace period waits for it to end and is then cancelled.
Draining first answers such calls UNAVAILABLE at once (clients retry elsewhere), lets the
calls already running finish, and only then stops the server.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

# The drain ends once nothing is in flight and no call was refused for this long, so clients
# still sending (the typed client retries UNAVAILABLE for up to about 0.7 s) keep getting
# UNAVAILABLE instead of racing the final stop, which cancels whatever is on the wire.
QUIET_SECONDS = 1.0
SHUTTING_DOWN = "the server is shutting down; retry against another instance"


class Drain(grpc.ServerInterceptor):
    """Counts the unary calls of one service in flight, and refuses new ones while draining."""

    def __init__(self, service_name: str) -> None:
        self._prefix = f"/{service_name}/"
        self._changed = threading.Condition()
        self._in_flight = 0
        self._draining = False
        self._last_refusal = -math.inf

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if (
            handler is None
            or handler.unary_unary is None
            or not handler_call_details.method.startswith(self._prefix)
        ):
            return handler  # health and reflection answer until the server stops
        return grpc.unary_unary_rpc_method_handler(
            self._counted(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _counted(self, behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Any:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            with self._changed:
                refused = self._draining
                if refused:
                    self._last_refusal = time.monotonic()
                else:
                    self._in_flight += 1
            if refused:
                context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
            try:
                return behavior(request, context)
            finally:
                with self._changed:
                    self._in_flight -= 1
                    self._changed.notify_all()

        return run

    def drain(self, timeout: float) -> bool:
        """Refuses new calls; waits until the running ones are done and callers are quiet.

        Quiet means no call refused for QUIET_SECONDS, counted from the start of the drain at
        the earliest, so every drain takes at least that long (or timeout, if shorter).

        Returns:
            False when timeout seconds passed first.
        """
        started = time.monotonic()
        deadline = started + timeout
        with self._changed:
            self._draining = True
            while True:
                now = time.monotonic()
                # Callers between two calls look idle: wait for quiet from the start, too.
                quiet_at = max(started, self._last_refusal) + QUIET_SECONDS
                if self._in_flight == 0 and now >= quiet_at:
                    return True
                if now >= deadline:
                    return False
                until = deadline if self._in_flight else min(quiet_at, deadline)
                self._changed.wait(timeout=until - now)
