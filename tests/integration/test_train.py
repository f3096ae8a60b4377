"""Train and GetTrainingJob over a real server: jobs, swaps, failures and their statuses."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import grpc
import pandas as pd
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import mfrec.training.pipeline as pipeline
from mfrec.client import JobState, RecommenderClient, RecommenderError, TrainingConfig
from mfrec.server.app import RunningServer
from mfrec.training.artifact import list_versions
from tests.integration.conftest import ServerFactory

pytestmark = pytest.mark.integration

FAST = TrainingConfig(factors=4, iterations=2, validation_fraction=0.0)


def _inline(ratings: pd.DataFrame) -> list[tuple[str, str, float, int]]:
    return list(ratings[["user_id", "item_id", "rating", "timestamp"]].itertuples(index=False))


def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(RecommenderError) as caught:
        call()
    return caught.value.code, caught.value.message


def test_inline_training_succeeds_and_its_model_serves(
    client: RecommenderClient, ratings: pd.DataFrame
) -> None:
    before = client.model_info().model_version
    extra = [("fresh-user", "i1", 5.0), ("fresh-user", "i2", 4.0)]
    job = client.train(ratings=[*_inline(ratings), *extra], config=FAST)
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.model_version > before
    assert job.user_count == 41 and job.item_count == 30
    assert job.rating_count == len(ratings) + 2
    assert job.iteration == job.total_iterations == 2
    answer = client.recommend("fresh-user")
    assert answer.model_version == job.model_version
    assert answer.source.value == "personalized"
    assert {"i1", "i2"}.isdisjoint(answer.item_ids)
    assert client.model_info().model_version == job.model_version


def test_validation_metrics_are_reported(client: RecommenderClient, ratings: pd.DataFrame) -> None:
    config = TrainingConfig(factors=4, iterations=2, validation_fraction=0.2)
    job = client.train(ratings=_inline(ratings), config=config)
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.validation_rmse is not None and job.validation_rmse > 0
    assert job.total_iterations == 4
    assert job.metrics["rmse"] == pytest.approx(job.validation_rmse)
    assert client.model_info().validation_rmse == pytest.approx(job.validation_rmse)


def test_training_from_a_file_in_the_data_dir(
    client: RecommenderClient, server: RunningServer, ratings: pd.DataFrame
) -> None:
    assert server.store  # the data dir is tmp_path/data, see conftest
    data_dir = server.store.model_dir.parent / "data"
    ratings.to_csv(data_dir / "r.csv", index=False, sep="\t")
    job = client.train(
        "r.csv",
        "csv",
        csv_options={"separator": "\t", "timestamp_column": "timestamp"},
        config=FAST,
    )
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.rating_count == len(ratings)


def test_a_failing_job_leaves_the_old_model_serving(
    client: RecommenderClient, server: RunningServer
) -> None:
    before = client.model_info().model_version
    data_dir = server.store.model_dir.parent / "data"
    (data_dir / "bad.csv").write_text("user_id,item_id,rating\na,b,5\nc,d,not-a-number\n")
    job = client.train("bad.csv", "csv", config=FAST)
    assert job.state is JobState.FAILED
    assert "bad.csv" in job.error and "line 3" in job.error
    assert str(data_dir) not in job.error  # never the server's own paths
    assert client.model_info().model_version == before
    assert client.recommend("u1").model_version == before


@pytest.mark.parametrize(
    ("kwargs", "code", "text"),
    [
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "exactly one of"),
        (
            {"dataset_path": "x.csv", "ratings": [("a", "b", 1.0)]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "exactly one of",
        ),
        ({"dataset_path": "x.csv"}, grpc.StatusCode.INVALID_ARGUMENT, "dataset_format"),
        (
            {"dataset_path": "missing.csv", "dataset_format": "csv"},
            grpc.StatusCode.NOT_FOUND,
            "does not exist",
        ),
        (
            {"dataset_path": "../escape.csv", "dataset_format": "csv"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "inside the server's data dir",
        ),
        (
            {"dataset_path": "/etc/passwd", "dataset_format": "csv"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "inside the server's data dir",
        ),
        ({"ratings": [("a", "b", float("nan"))]}, grpc.StatusCode.INVALID_ARGUMENT, "finite"),
        ({"ratings": [("a", "b", float("inf"))]}, grpc.StatusCode.INVALID_ARGUMENT, "finite"),
        ({"ratings": [("", "b", 1.0)]}, grpc.StatusCode.INVALID_ARGUMENT, "user_id"),
        (
            {"ratings": [("a", "b", 1.0)], "config": TrainingConfig(factors=-1)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "factors",
        ),
        (
            {"ratings": [("a", "b", 1.0)], "config": TrainingConfig(validation_fraction=0.9)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "validation_fraction",
        ),
        (
            {"ratings": [("a", "b", 1.0)], "config": TrainingConfig(iterations=5000)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "iterations",
        ),
    ],
)
def test_cheap_checks_fail_the_train_call_itself(
    client: RecommenderClient, kwargs: dict[str, Any], code: grpc.StatusCode, text: str
) -> None:
    before = client.model_info().model_version
    got, message = _code(lambda: client.train(**kwargs))
    assert got == code and text in message
    assert client.model_info().model_version == before


def test_a_link_pointing_out_of_the_data_dir_is_refused(
    client: RecommenderClient, server: RunningServer, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text("user_id,item_id,rating\na,b,1\n")
    data_dir = server.store.model_dir.parent / "data"
    (data_dir / "link.csv").symlink_to(outside)
    code, message = _code(lambda: client.train("link.csv", "csv", config=FAST))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "data dir" in message


def test_without_a_data_dir_any_path_is_refused(
    start_server: ServerFactory, model_dir: Path
) -> None:
    running = start_server(model_dir)
    with RecommenderClient(f"127.0.0.1:{running.port}") as client:
        code, message = _code(lambda: client.train("r.csv", "csv"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "--data-dir" in message


def test_unknown_job_is_not_found(client: RecommenderClient) -> None:
    code, _ = _code(lambda: client.training_job("no-such-job"))
    assert code == grpc.StatusCode.NOT_FOUND


@pytest.fixture
def held_training(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Makes training wait for the returned event, so a job stays RUNNING while tested."""
    release = threading.Event()
    real = pipeline.train_and_save

    def waiting(*args: Any, **kwargs: Any) -> Any:
        assert release.wait(timeout=30), "the test never released the training job"
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "train_and_save", waiting)
    return release


def test_one_job_at_a_time_and_recommend_keeps_answering(
    client: RecommenderClient, ratings: pd.DataFrame, held_training: threading.Event
) -> None:
    before = client.model_info().model_version
    job = client.train(ratings=_inline(ratings), config=FAST, wait=False)
    assert job.state is JobState.RUNNING
    code, message = _code(lambda: client.train(ratings=_inline(ratings), config=FAST))
    assert code == grpc.StatusCode.ABORTED and "still running" in message

    failures: list[BaseException] = []
    versions: set[str] = set()

    def hammer() -> None:
        try:
            for _ in range(50):
                versions.add(client.recommend("u3", k=5).model_version)
        except BaseException as error:  # collected and asserted below
            failures.append(error)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not failures and versions == {before}
    held_training.set()
    finished = client.wait_for_job(job.job_id, wait_timeout=60)
    assert finished.state is JobState.SUCCEEDED
    assert client.recommend("u3").model_version == finished.model_version


def test_keep_versions_prunes_old_models(
    start_server: ServerFactory, model_dir: Path, ratings: pd.DataFrame
) -> None:
    running = start_server(model_dir, keep_versions=2)
    with RecommenderClient(f"127.0.0.1:{running.port}") as client:
        jobs = [client.train(ratings=_inline(ratings), config=FAST) for _ in range(3)]
    assert all(job.state is JobState.SUCCEEDED for job in jobs)
    assert list_versions(model_dir) == [jobs[1].model_version, jobs[2].model_version]


def _health(port: int, service: str = "") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_empty_model_dir_is_not_serving_until_a_train_succeeds(
    start_server: ServerFactory, tmp_path: Path, ratings: pd.DataFrame
) -> None:
    running = start_server(tmp_path / "empty-models")
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    assert _health(running.port) == not_serving
    assert _health(running.port, "mfrec.v1.Recommender") == not_serving
    with RecommenderClient(f"127.0.0.1:{running.port}") as client:
        code, message = _code(lambda: client.recommend("u1"))
        assert code == grpc.StatusCode.UNAVAILABLE and "no model loaded" in message
        code, _ = _code(client.model_info)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        job = client.train(ratings=_inline(ratings), config=FAST)
        assert job.state is JobState.SUCCEEDED
        assert client.recommend("u1").model_version == job.model_version
    serving = health_pb2.HealthCheckResponse.SERVING
    assert _health(running.port) == serving
    assert _health(running.port, "mfrec.v1.Recommender") == serving


def test_a_restart_serves_the_saved_model(
    start_server: ServerFactory, tmp_path: Path, ratings: pd.DataFrame
) -> None:
    directory = tmp_path / "restart-models"
    first = start_server(directory)
    with RecommenderClient(f"127.0.0.1:{first.port}") as client:
        job = client.train(ratings=_inline(ratings), config=FAST)
        answer = client.recommend("u5")
    first.stop(grace=1.0)
    second = start_server(directory)
    with RecommenderClient(f"127.0.0.1:{second.port}") as client:
        assert client.model_info().model_version == job.model_version
        assert client.recommend("u5") == answer
