"""A model trained with the approximate index, served over a real server through the client."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfrec.client import RecommenderClient
from mfrec.server.model import ServingModel
from mfrec.server.recommender import Limits, RecommendQuery, recommend
from mfrec.training import ann
from mfrec.training.artifact import list_versions, write_artifact
from mfrec.training.config import TrainingConfig
from mfrec.training.pipeline import train_and_save, with_index
from mfrec.training.synthetic import synthetic_ratings
from tests.integration.conftest import ServerFactory
from tests.unit.test_ann import N_USERS, synthetic_artifact

pytest.importorskip("faiss", reason="faiss-cpu (the ann extra) is not installed")
pytestmark = pytest.mark.integration


def test_an_index_model_answers_over_grpc_as_in_process(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    path = write_artifact(with_index(synthetic_artifact(seed=4), ann.HNSW), model_dir)
    model = ServingModel.load(path)
    running = start_server(model_dir)
    requests: list[dict[str, object]] = [
        {"user_id": f"u{user}", "k": 10, "exclude": [f"i{user}"], "include_seen": user % 2 == 0}
        for user in range(0, N_USERS, 25)
    ]
    with RecommenderClient(f"127.0.0.1:{running.port}", timeout=10.0) as client:
        singles = [client.recommend(**request) for request in requests]  # type: ignore[arg-type]
        assert client.recommend_batch(requests) == singles
    for request, answer in zip(requests, singles, strict=True):
        query = RecommendQuery(
            str(request["user_id"]),
            k=10,
            exclude_item_ids=tuple(request["exclude"]),  # type: ignore[arg-type]
            include_seen=bool(request["include_seen"]),
        )
        expected = recommend(model, query, Limits(max_k=100))
        assert answer.model_version == path.name
        assert [(item.item_id, item.score) for item in answer.items] == expected.items
        assert len(answer.items) == 10 and request["exclude"][0] not in {  # type: ignore[index]
            item.item_id for item in answer.items
        }


def test_train_and_save_with_the_index_serves_it(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    model_dir = tmp_path / "trained"
    frame = synthetic_ratings(80, 120, 2400, seed=5)
    config = TrainingConfig(factors=8, iterations=3, validation_fraction=0.0)
    summary = train_and_save(frame, config, model_dir, index=ann.HNSW)
    assert list_versions(model_dir) == [summary.model_version]
    assert (summary.path / ann.INDEX_FILE).is_file()
    model = ServingModel.load(summary.path)
    assert model.approximate
    running = start_server(model_dir)
    with RecommenderClient(f"127.0.0.1:{running.port}", timeout=10.0) as client:
        answer = client.recommend("u1", k=5)
    seen = set(model.item_ids_at(model.seen_items(model.user_index("u1"))))
    ids = [item.item_id for item in answer.items]
    assert len(ids) == 5 and not set(ids) & seen
    expected = recommend(model, RecommendQuery("u1", k=5), Limits()).items
    assert [(item.item_id, item.score) for item in answer.items] == expected
