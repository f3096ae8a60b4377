"""Shared fixtures: small ratings with a known structure, and trained model directories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mfrec.training.config import TrainingConfig
from mfrec.training.pipeline import TrainingSummary, train_and_save

FAST_CONFIG = TrainingConfig(factors=4, iterations=3, validation_fraction=0.0)


def block_ratings(n_users: int = 40, n_items: int = 30, seed: int = 7) -> pd.DataFrame:
    """Two user groups, each rating its own half of the items high and the other half low.

    Every user rates about half the items, so each has unseen items of both halves: a model
    that learned anything recommends a user's own half first.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        group = user % 2
        for item in rng.choice(n_items, n_items // 2, replace=False):
            liked = (item < n_items // 2) == (group == 0)
            rating = 5.0 if liked else 1.0
            rows.append((f"u{user}", f"i{item}", rating, 1_000 + user * 100 + int(item)))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    frame["timestamp"] = frame["timestamp"].astype(np.int64)
    return frame


@pytest.fixture(scope="session")
def ratings() -> pd.DataFrame:
    return block_ratings()


@pytest.fixture
def model_dir(tmp_path: Path, ratings: pd.DataFrame) -> Path:
    """A model directory holding one version trained on block_ratings."""
    directory = tmp_path / "models"
    train_and_save(ratings, FAST_CONFIG, directory)
    return directory


@pytest.fixture(scope="session")
def shared_model(tmp_path_factory: pytest.TempPathFactory) -> TrainingSummary:
    """One trained version, shared read-only by tests that only read it."""
    directory = tmp_path_factory.mktemp("shared-models")
    return train_and_save(block_ratings(), FAST_CONFIG, directory)
