"""Faults survived with nothing lost: crashes mid-save, failing training, broken model dirs,
overload. Each checks that the model that was serving (or the last one fully saved) serves.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import mfrec.server.recommender as recommender
import mfrec.training.pipeline as pipeline
from mfrec.client import JobState, RecommenderClient, RecommenderError, TrainingConfig
from mfrec.server.model import ServingModel
from mfrec.training.artifact import (
    CRASH_AFTER_STEP,
    METADATA_FILE,
    TEMP_PREFIX,
    list_versions,
    new_version,
)
from mfrec.training.pipeline import TrainingSummary
from mfrec.v1.recommender_pb2 import RecommendRequest
from mfrec.v1.recommender_pb2_grpc import RecommenderStub
from tests.integration.conftest import ServerFactory
from tests.integration.test_shutdown import ServeProcess, closing_all, start_serve
from tests.unit.test_artifact import CORRUPTIONS

pytestmark = pytest.mark.integration

FAST = TrainingConfig(factors=2, iterations=2, validation_fraction=0.0)
FILES_PER_SAVE = 17  # 16 arrays and metadata.json: steps 1-17; step 18 is the rename
RENAME_STEP = FILES_PER_SAVE + 1
# The first file, the last file (metadata) before the rename, just after the rename, and two
# seeded points in between.
KILL_STEPS = sorted(
    {1, FILES_PER_SAVE, RENAME_STEP, *random.Random(20261203).sample(range(2, FILES_PER_SAVE), 2)}
)
SAVE_IN_CHILD = """
import sys
from pathlib import Path
from mfrec.training.artifact import read_artifact, write_artifact
write_artifact(read_artifact(Path(sys.argv[1]), mmap=False), Path(sys.argv[2]))
"""


@pytest.fixture
def serve_processes() -> Iterator[list[ServeProcess]]:
    with closing_all() as started:
        yield started


def _copy_model(summary: TrainingSummary, model_dir: Path) -> str:
    shutil.copytree(summary.path, model_dir / summary.model_version)
    return summary.model_version


def _health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status


@pytest.mark.parametrize("step", KILL_STEPS)
def test_sigkill_while_saving_keeps_every_saved_model(
    step: int, shared_model: TrainingSummary, tmp_path: Path, start_server: ServerFactory
) -> None:
    model_dir = tmp_path / "models"
    previous = _copy_model(shared_model, model_dir)
    env = {**os.environ, CRASH_AFTER_STEP: str(step)}
    source = str(model_dir / previous)
    done = subprocess.run(
        [sys.executable, "-c", SAVE_IN_CHILD, source, str(model_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -9, done.stderr  # it really was killed mid-save
    temporaries = [p for p in model_dir.iterdir() if p.name.startswith(TEMP_PREFIX)]
    versions = list_versions(model_dir)
    if step < RENAME_STEP:
        assert versions == [previous]
        assert len(temporaries) == 1 and len(list(temporaries[0].iterdir())) == step
    else:
        assert len(versions) == 2 and versions[0] == previous and not temporaries
    running = start_server(model_dir)  # the next start
    expected = versions[-1]
    assert running.store.require().version == expected
    assert not [p for p in model_dir.iterdir() if p.name.startswith(TEMP_PREFIX)]
    with RecommenderClient(f"127.0.0.1:{running.port}", timeout=20) as client:
        assert client.recommend("u1", k=3).model_version == expected
        assert client.model_info().model_version == expected


def test_a_server_killed_mid_train_restarts_with_the_last_saved_model(
    shared_model: TrainingSummary, tmp_path: Path, serve_processes: list[ServeProcess]
) -> None:
    model_dir = tmp_path / "models"
    previous = _copy_model(shared_model, model_dir)
    args = ["--model-dir", str(model_dir)]
    crashing = start_serve(args, env={CRASH_AFTER_STEP: "9"})
    serve_processes.append(crashing)
    with RecommenderClient(crashing.target, timeout=20) as client:
        before = client.recommend("u3", k=5)
        ratings = [(f"n{n % 7}", f"i{n % 11}", float(1 + n % 5)) for n in range(70)]
        job = client.train(ratings=ratings, config=FAST, wait=False)
        assert job.state is JobState.RUNNING
    assert crashing.process.wait(timeout=60) == -9
    assert list_versions(model_dir) == [previous]
    restarted = start_serve(args)
    serve_processes.append(restarted)
    with RecommenderClient(restarted.target, timeout=20) as client:
        assert client.model_info().model_version == previous
        assert client.recommend("u3", k=5) == before
    assert not [p for p in model_dir.iterdir() if p.name.startswith(TEMP_PREFIX)]


def _raise(error: Exception) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    return fail


TRAINING_FAULTS: dict[str, tuple[str, Exception, str]] = {
    "the solver raises": ("fit_model", np.linalg.LinAlgError("Singular matrix"), "Singular matrix"),
    "the fit runs out of memory": (
        "fit_model",
        MemoryError("cannot allocate 8 GiB"),
        "cannot allocate",
    ),
    "the disk is full": (
        "write_artifact",
        OSError(28, os.strerror(28), "/srv/models/.tmp-x"),
        "saving the model failed: No space left on device",
    ),
    "an unexpected bug": ("build_artifact", KeyError("rating"), "rating"),
}


@pytest.mark.parametrize("case", sorted(TRAINING_FAULTS))
def test_a_training_fault_reports_its_cause_and_keeps_the_model(
    case: str,
    start_server: ServerFactory,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    ratings: Any,
) -> None:
    name, error, text = TRAINING_FAULTS[case]
    monkeypatch.setattr(pipeline, name, _raise(error))
    running = start_server(model_dir)
    rows = list(ratings[["user_id", "item_id", "rating"]].itertuples(index=False))
    with RecommenderClient(f"127.0.0.1:{running.port}", timeout=20) as client:
        before = client.recommend("u2", k=5)
        job = client.train(ratings=rows, config=FAST, poll_seconds=0.02, wait_timeout=30)
        assert job.state is JobState.FAILED
        assert text in job.error and "/srv/models" not in job.error
        assert client.recommend("u2", k=5) == before
        monkeypatch.undo()
        retried = client.train(ratings=rows, config=FAST, poll_seconds=0.02, wait_timeout=30)
        assert retried.state is JobState.SUCCEEDED, retried.error
        assert client.recommend("u2").model_version == retried.model_version
    versions = list_versions(model_dir)
    assert versions == [before.model_version, retried.model_version]
    assert not [p for p in model_dir.iterdir() if p.name.startswith(TEMP_PREFIX)]


def _broken_copy(summary: TrainingSummary, model_dir: Path, case: str) -> str:
    """Adds a newer version damaged as CORRUPTIONS[case] describes; returns its name."""
    name = new_version(model_dir)
    target = model_dir / name
    shutil.copytree(summary.path, target)
    metadata = (target / METADATA_FILE).read_text().replace(summary.model_version, name)
    (target / METADATA_FILE).write_text(metadata)
    CORRUPTIONS[case][0](target)
    return name


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_a_broken_newest_model_is_skipped_at_start(
    case: str, shared_model: TrainingSummary, tmp_path: Path, start_server: ServerFactory
) -> None:
    model_dir = tmp_path / "models"
    previous = _copy_model(shared_model, model_dir)
    broken = _broken_copy(shared_model, model_dir, case)
    assert list_versions(model_dir) == [previous, broken]
    running = start_server(model_dir)
    assert running.store.require().version == previous
    assert _health(running.port) == health_pb2.HealthCheckResponse.SERVING
    with RecommenderClient(f"127.0.0.1:{running.port}", timeout=20) as client:
        assert client.recommend("u1", k=2).model_version == previous


@pytest.mark.parametrize(
    "case",
    [
        "empty directory",
        "truncated npy",
        "mismatched shapes",
        "future format",
        "directory instead of file",
        "dangling link",
    ],
)
def test_only_a_broken_model_means_not_serving_until_a_train(
    case: str,
    shared_model: TrainingSummary,
    tmp_path: Path,
    start_server: ServerFactory,
    ratings: Any,
) -> None:
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    _broken_copy(shared_model, model_dir, case)
    running = start_server(model_dir)
    assert running.store.current is None
    assert _health(running.port) == health_pb2.HealthCheckResponse.NOT_SERVING
    rows = list(ratings[["user_id", "item_id", "rating"]].itertuples(index=False))
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:  # no retries
        with pytest.raises(grpc.RpcError) as caught:
            RecommenderStub(channel).Recommend(RecommendRequest(user_id="u1"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    with RecommenderClient(f"127.0.0.1:{running.port}", timeout=20) as client:
        job = client.train(ratings=rows, config=FAST, poll_seconds=0.02, wait_timeout=30)
        assert job.state is JobState.SUCCEEDED, job.error
        assert client.recommend("u1").model_version == job.model_version
    assert _health(running.port) == health_pb2.HealthCheckResponse.SERVING


def test_overload_is_refused_at_once_and_the_held_call_still_completes(
    start_server: ServerFactory, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = start_server(model_dir, threads=1, max_concurrent_rpcs=1)
    entered, release = threading.Event(), threading.Event()
    real = recommender.recommend

    def slow(model: ServingModel, query: Any, limits: Any) -> Any:
        if query.user_id == "slow":
            entered.set()
            assert release.wait(timeout=30), "the test never released the call"
        return real(model, query, limits)

    monkeypatch.setattr(recommender, "recommend", slow)
    target = f"127.0.0.1:{running.port}"
    results: list[Any] = []
    with RecommenderClient(target, timeout=30) as client:
        holder = threading.Thread(target=lambda: results.append(client.recommend("slow", k=2)))
        holder.start()
        try:
            assert entered.wait(timeout=30)
            refused = []
            for call in (
                lambda: client.recommend("u1"),
                client.model_info,
                lambda: client.recommend_batch(["u1"]),
            ):
                with pytest.raises(RecommenderError) as caught:
                    call()
                refused.append(caught.value.code)
            assert refused == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3
        finally:
            release.set()
            holder.join(timeout=30)
        assert len(results) == 1 and len(results[0].items) == 2
        assert client.recommend("u1", k=2).items  # capacity is back
