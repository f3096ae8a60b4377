"""RecommendBatch over a real server: the same answers as Recommend, one status for bad input."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from mfrec.client import RecommenderClient, RecommenderError
from mfrec.server.recommender import Limits
from mfrec.training.artifact import write_artifact
from tests.integration.conftest import ServerFactory
from tests.unit.test_batch_core import grid_artifact

pytestmark = pytest.mark.integration


@pytest.fixture
def grid_client(start_server: ServerFactory, tmp_path: Path) -> RecommenderClient:
    model_dir = tmp_path / "grid-models"
    write_artifact(grid_artifact(12, 60, seed=11), model_dir)
    running = start_server(model_dir, limits=Limits(max_k=100, max_batch=40))
    return RecommenderClient(f"127.0.0.1:{running.port}", timeout=10.0)


REQUESTS: list[dict[str, object]] = [
    {"user_id": "u0", "k": 60, "include_seen": True},  # every item: the grid ties many scores
    {"user_id": "u1", "k": 5},
    {"user_id": "u2", "k": 8, "exclude": ["i0", "i1", "i2", "unknown"]},
    {"user_id": "u3", "k": 4, "recent": ["i5", "gone"]},
    {"user_id": "u4", "k": 6, "allowed": ["i3", "i9", "i27", "i44", "i50"]},
    {"user_id": "nobody", "k": 3},
    {"user_id": "nobody", "k": 3, "exclude": ["i7"], "allowed": ["i7", "i8", "i9", "i10"]},
    {"user_id": "u5", "k": 0},
]


def test_batch_equals_one_recommend_per_request(grid_client: RecommenderClient) -> None:
    with grid_client:
        batch = grid_client.recommend_batch(REQUESTS)
        singles = [grid_client.recommend(**request) for request in REQUESTS]  # type: ignore[arg-type]
    assert batch == singles
    everything = batch[0].items
    assert len(everything) == 60
    assert [(-item.score, int(item.item_id[1:])) for item in everything] == sorted(
        (-item.score, int(item.item_id[1:])) for item in everything
    )
    assert batch[3].ignored_item_ids == ["gone"]


def test_many_users_in_one_call(grid_client: RecommenderClient) -> None:
    requests = [f"u{user % 12}" for user in range(40)]
    with grid_client:
        batch = grid_client.recommend_batch(requests)
        assert batch == [grid_client.recommend(user) for user in requests]


def test_an_invalid_sub_request_fails_the_call_naming_its_index(
    grid_client: RecommenderClient,
) -> None:
    with grid_client, pytest.raises(RecommenderError) as raised:
        grid_client.recommend_batch(["u1", {"user_id": "u2", "k": -3}])
    assert raised.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "requests[1]" in raised.value.message


def test_more_than_max_batch_is_invalid(grid_client: RecommenderClient) -> None:
    with grid_client, pytest.raises(RecommenderError) as raised:
        grid_client.recommend_batch(["u1"] * 41)
    assert raised.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 40" in raised.value.message


def test_cli_users_file_writes_one_csv_row_per_item(
    start_server: ServerFactory, model_dir: Path, tmp_path: Path
) -> None:
    running = start_server(model_dir)
    users = tmp_path / "users.txt"
    users.write_text("u0\n\nu1\nstranger\n")
    command = [
        sys.executable,
        "-m",
        "mfrec.server.cli",
        "recommend",
        "--target",
        f"127.0.0.1:{running.port}",
        "--users-file",
        str(users),
        "-k",
        "3",
        "--batch-size",
        "2",
    ]
    output = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    rows = list(csv.reader(io.StringIO(output.stdout)))
    assert rows[0] == ["user_id", "rank", "item_id", "score", "source"]
    assert [(r[0], r[1], r[4]) for r in rows[1:]] == [
        (user, str(rank), source)
        for user, source in (
            ("u0", "personalized"),
            ("u1", "personalized"),
            ("stranger", "popular"),
        )
        for rank in (1, 2, 3)
    ]
    with RecommenderClient(f"127.0.0.1:{running.port}") as client:
        expected = client.recommend("u1", k=3)
    assert [r[2] for r in rows[4:7]] == [item.item_id for item in expected.items]
