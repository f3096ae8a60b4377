"""Graceful shutdown: health goes NOT_SERVING, calls in flight finish, new ones are refused.

One test holds a call inside the server while it drains; the other runs `mfrec serve` as a
real process under load and sends it SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import mfrec.server.recommender as recommender
from mfrec.client import RecommenderClient, RecommenderError
from tests.integration.conftest import ServerFactory

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_LISTENING = re.compile(r"listening on \S+?:(\d+)")


@dataclass
class ServeProcess:
    """A `mfrec serve` subprocess, its port, and the log lines it has written so far."""

    process: subprocess.Popen[str]
    port: int
    log: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def text(self) -> str:
        return "".join(self.log)

    def close(self) -> None:
        """Kills the process if it still runs, and closes its log pipe."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        if self.reader is not None:
            self.reader.join(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()


def start_serve(args: list[str], env: dict[str, str] | None = None) -> ServeProcess:
    """Starts `python -m mfrec.server.cli serve --port 0 ARGS` and waits for its port."""
    command = [sys.executable, "-m", "mfrec.server.cli", "serve", "--port", "0", *args]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = ServeProcess(process, 0)
    found = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            served.log.append(line)
            match = _LISTENING.search(line)
            if match and not found.is_set():
                served.port = int(match.group(1))
                found.set()
        found.set()

    served.reader = threading.Thread(target=read, daemon=True, name="serve-log")
    served.reader.start()
    if not found.wait(timeout=30) or not served.port:
        served.close()
        raise AssertionError(f"mfrec serve did not start:\n{served.text()}")
    return served


@contextmanager
def closing_all() -> Iterator[list[ServeProcess]]:
    """Collects started server processes and kills any still running on exit."""
    started: list[ServeProcess] = []
    try:
        yield started
    finally:
        for served in started:
            served.close()


@pytest.fixture
def serve_processes() -> Iterator[list[ServeProcess]]:
    with closing_all() as started:
        yield started


class HealthWatch:
    """Records every status a Health.Watch stream delivers until the stream ends."""

    def __init__(self, target: str) -> None:
        self.statuses: list[int] = []
        self.ended = threading.Event()
        self._channel = grpc.insecure_channel(target)
        stub = health_pb2_grpc.HealthStub(self._channel)
        self._stream = stub.Watch(health_pb2.HealthCheckRequest(), timeout=60)
        self._thread = threading.Thread(target=self._read, daemon=True, name="health-watch")
        self._thread.start()

    def _read(self) -> None:
        try:
            for answer in self._stream:
                self.statuses.append(answer.status)
        except grpc.RpcError:
            pass  # the server going away ends the stream
        finally:
            self.ended.set()

    def wait_for(self, status: int, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if status in self.statuses:
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        self._stream.cancel()
        self._channel.close()


def test_stop_drains_a_call_in_flight_and_refuses_new_ones(
    start_server: ServerFactory, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = start_server(model_dir)
    entered, release = threading.Event(), threading.Event()
    real = recommender.recommend

    def held(*args: Any, **kwargs: Any) -> Any:
        if kwargs.pop("hold", None) is None and args[1].user_id == "held":
            entered.set()
            assert release.wait(timeout=30), "the test never released the call"
        return real(*args, **kwargs)

    monkeypatch.setattr(recommender, "recommend", held)
    target = f"127.0.0.1:{running.port}"
    watch = HealthWatch(target)
    assert watch.wait_for(SERVING)
    results: list[Any] = []
    with RecommenderClient(target, timeout=30) as client:
        caller = threading.Thread(target=lambda: results.append(client.recommend("held", k=3)))
        caller.start()
        assert entered.wait(timeout=30)
        stopper = threading.Thread(target=running.shutdown, args=(20.0,))
        stopper.start()
        assert watch.wait_for(NOT_SERVING), watch.statuses
        with RecommenderClient(target, timeout=10) as late:
            with pytest.raises(RecommenderError) as refused:
                late.recommend("u1")
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE
        running.store.swap(running.store.require())  # a model swapped in while draining ...
        release.set()
        caller.join(timeout=30)
        stopper.join(timeout=30)
    watch.close()
    assert not stopper.is_alive() and not caller.is_alive()
    assert len(results) == 1 and len(results[0].items) == 3  # the held call completed
    assert watch.statuses[0] == SERVING and NOT_SERVING in watch.statuses
    assert watch.statuses[-1] == NOT_SERVING  # ... never flips health back to SERVING


def _load(
    target: str,
    stop: threading.Event,
    signalled: threading.Event,
    outcomes: Counter[str],
    lock: threading.Lock,
) -> None:
    with RecommenderClient(target, timeout=10) as client:
        for number in range(100_000):
            if stop.is_set():
                return
            try:
                client.recommend(f"u{number % 40}", k=5)
                outcome = "ok"
            except RecommenderError as error:
                outcome = error.code.name
            after = signalled.is_set()  # when the answer came: a refusal must come after
            with lock:
                outcomes[f"{outcome} {'after' if after else 'before'}"] += 1
            if outcome != "ok" and after:
                return  # refused once the server is going: that is the clean answer


def test_sigterm_under_load_drains_and_exits_zero(
    model_dir: Path, serve_processes: list[ServeProcess]
) -> None:
    served = start_serve(["--model-dir", str(model_dir), "--grace-seconds", "3"])
    serve_processes.append(served)
    watch = HealthWatch(served.target)
    assert watch.wait_for(SERVING), served.text()
    stop, signalled, lock = threading.Event(), threading.Event(), threading.Lock()
    outcomes: Counter[str] = Counter()
    workers = [
        threading.Thread(target=_load, args=(served.target, stop, signalled, outcomes, lock))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 20
    while sum(outcomes.values()) < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    signalled.set()
    served.process.send_signal(signal.SIGTERM)
    code = served.process.wait(timeout=30)
    stop.set()
    for worker in workers:
        worker.join(timeout=30)
    watch.close()
    print(f"shutdown test outcomes: {dict(outcomes)}")
    assert code == 0, served.text()
    assert "received SIGTERM" in served.text() and "stopped" in served.text()
    assert outcomes["ok before"] >= 200
    assert set(outcomes) <= {"ok before", "ok after", "UNAVAILABLE after"}, outcomes
    assert NOT_SERVING in watch.statuses, watch.statuses
    assert watch.statuses.index(NOT_SERVING) > watch.statuses.index(SERVING)
