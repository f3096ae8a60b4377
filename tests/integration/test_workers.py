"""`mfrec serve --workers 2`: two processes on one port, shared training jobs, one version."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc
import pandas as pd
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mfrec.client import JobState, RecommenderClient, RecommenderError, TrainingConfig

pytestmark = pytest.mark.integration

WAIT_SECONDS = 30.0
FAST = TrainingConfig(factors=4, iterations=3, validation_fraction=0.0)
T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], what: str, seconds: float = WAIT_SECONDS) -> T:
    """Polls condition until it returns a value other than None (at most `seconds`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value is not None:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


class Served:
    """A `mfrec serve --workers 2` subprocess and what the tests need to reach it."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> set[int]:
        found = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                    found.add(int(entry))
        return found

    def connection_owners(self) -> set[int]:
        """Returns the child processes holding an established connection on the port."""
        inodes = _established_inodes(self.port)
        owners = set()
        for pid in self.children():
            try:
                links = [
                    os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")
                ]
            except OSError:
                continue
            if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
                owners.add(pid)
        return owners


def _established_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
                inodes.add(fields[9])
    return inodes


@pytest.fixture
def served(model_dir: Path, tmp_path: Path) -> Iterator[Served]:
    # Hold the port with SO_REUSEPORT (bound, never listening) until the workers bind it too.
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    log = tmp_path / "server.log"
    command = [
        sys.executable,
        "-m",
        "mfrec.server.cli",
        "serve",
        "--model-dir",
        str(model_dir),
        "--port",
        str(port),
        "--workers",
        "2",
        "--grace-seconds",
        "2",
    ]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    running = Served(process, port, log)
    try:
        wait_for(lambda: _serving(running.target) or None, "a worker to serve")
        holder.close()
        yield running
    finally:
        holder.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _serving(target: str) -> bool:
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1.0
            )
        except grpc.RpcError:
            return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def _clients_on_both_workers(served: Served) -> list[RecommenderClient]:
    """Opens connections (one per client) until both workers hold at least one."""
    clients: list[RecommenderClient] = []

    def both() -> list[RecommenderClient] | None:
        client = RecommenderClient(
            served.target, timeout=10.0, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        client.model_info()  # connects
        clients.append(client)
        return clients if len(served.connection_owners()) == 2 or len(clients) > 60 else None

    wait_for(both, "connections on both workers")
    assert len(served.connection_owners()) == 2, "every connection went to one worker"
    return clients


def test_two_workers_answer_and_switch_versions_after_a_train(
    served: Served, ratings: pd.DataFrame
) -> None:
    clients = _clients_on_both_workers(served)
    try:
        before = {client.model_info().model_version for client in clients}
        assert len(before) == 1
        answers = {str(client.recommend("u0", k=5)) for client in clients}
        assert len(answers) == 1  # the same model answers the same everywhere

        rows = list(ratings.itertuples(index=False))
        inline = [(r.user_id, r.item_id, float(r.rating)) for r in rows]
        job = clients[0].train(ratings=inline, config=FAST, wait=False)
        assert job.state is JobState.RUNNING
        with pytest.raises(RecommenderError) as raised:  # one job at a time, on any worker
            clients[-1].train(ratings=inline, config=FAST, wait=False)
        assert raised.value.code is grpc.StatusCode.ABORTED
        done = clients[-1].wait_for_job(job.job_id, poll_seconds=0.1, wait_timeout=WAIT_SECONDS)
        assert done.state is JobState.SUCCEEDED, done.error
        assert done.model_version not in before
        # SUCCEEDED means the model serves on every worker, as with one process.
        assert {c.training_job(job.job_id).model_version for c in clients} == {done.model_version}
        assert {c.model_info().model_version for c in clients} == {done.model_version}
        assert {c.recommend("u1").model_version for c in clients} == {done.model_version}
    finally:
        for client in clients:
            client.close()

    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=WAIT_SECONDS) == 0, served.text()
    assert "draining" in served.text()


def test_workers_die_with_the_supervisor(served: Served) -> None:
    workers = wait_for(lambda: served.children() or None, "the workers")
    served.process.kill()
    served.process.wait(timeout=WAIT_SECONDS)

    def gone() -> bool | None:
        return True if not any(Path(f"/proc/{pid}").exists() for pid in workers) else None

    wait_for(gone, "the workers to exit after the supervisor")
