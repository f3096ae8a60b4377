"""MovieLens 100K end to end: trained through the Train RPC from the data home, then served."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfrec.client import JobState, RecommenderClient, Source
from mfrec.server.app import ServerConfig, build_server
from mfrec.training.datasets import get_data_home
from mfrec.training.loaders import load_ratings

pytestmark = [pytest.mark.realdata, pytest.mark.integration]


def test_train_rpc_on_movielens_then_recommend(tmp_path: Path) -> None:
    home = get_data_home()
    ratings_path = home / "ml-100k" / "u.data"
    if not ratings_path.is_file():
        pytest.skip(f"{ratings_path} is missing: set MFREC_DATA_HOME to a folder with ml-100k/")
    running = build_server(ServerConfig(model_dir=tmp_path / "models", port=0, data_dir=home))
    try:
        with RecommenderClient(f"127.0.0.1:{running.port}", timeout=30) as client:
            job = client.train("ml-100k/u.data", "ml-100k", wait_timeout=300)
            assert job.state is JobState.SUCCEEDED, job.error
            assert (job.user_count, job.item_count, job.rating_count) == (943, 1682, 100_000)
            assert job.validation_rmse is not None and job.validation_rmse < 0.95
            frame = load_ratings(ratings_path, "ml-100k")
            seen = set(frame.loc[frame["user_id"] == "196", "item_id"])
            answer = client.recommend("196", k=10)
            assert answer.source is Source.PERSONALIZED and len(answer.items) == 10
            assert not seen & set(answer.item_ids)
            assert client.recommend("not-a-movielens-user").source is Source.POPULAR
    finally:
        running.stop(grace=2.0)
