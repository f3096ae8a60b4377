"""Integration fixtures: a real server on a loopback port and the real generated client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mfrec.client import RecommenderClient
from mfrec.server.app import RunningServer, ServerConfig, build_server
from mfrec.server.recommender import Limits

pytestmark = pytest.mark.integration

ServerFactory = Callable[..., RunningServer]


@pytest.fixture
def start_server() -> Iterator[ServerFactory]:
    """Builds servers on 127.0.0.1:0 and stops every one of them at teardown."""
    started: list[RunningServer] = []

    def start(model_dir: Path, **overrides: object) -> RunningServer:
        overrides.setdefault("limits", Limits(max_k=100))
        config = ServerConfig(model_dir=model_dir, host="127.0.0.1", port=0, **overrides)  # type: ignore[arg-type]
        running = build_server(config)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop(grace=2.0)


@pytest.fixture
def server(start_server: ServerFactory, model_dir: Path, tmp_path: Path) -> RunningServer:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return start_server(model_dir, data_dir=data_dir)


@pytest.fixture
def client(server: RunningServer) -> Iterator[RecommenderClient]:
    with RecommenderClient(f"127.0.0.1:{server.port}", timeout=10.0) as connected:
        yield connected
