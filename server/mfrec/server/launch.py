"""Starting `mfrec serve` as a child process on loopback: for the demo and the benchmarks."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

START_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    """Returns a loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_command(model_dir: Path | str, port: int, *flags: str) -> list[str]:
    """Returns the argv of `mfrec serve` for model_dir on 127.0.0.1:port, plus extra flags."""
    return [
        sys.executable, "-m", "mfrec.server.cli", "serve",
        "--model-dir", str(model_dir), "--port", str(port), *flags,
    ]  # fmt: skip


def wait_serving(
    target: str, process: subprocess.Popen[bytes], timeout: float = START_TIMEOUT_SECONDS
) -> None:
    """Waits until the server's health check answers SERVING.

    Raises:
        RuntimeError: the process exited, or it did not serve within timeout seconds.
    """
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited early with code {process.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"the server did not become SERVING within {timeout:.0f} s")
