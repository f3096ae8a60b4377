"""Benchmark catalogs: versions written from synthetic factors, or trained on ML-100K.

The synthetic models skip training: the factors come from mfrec.training.synthetic, the ids
are "u0".. and "i0".., every user has a few seen items, and popularity follows the item bias.
Models are cached under bench/results/models (git-ignored), keyed by their shape.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mfrec.training.artifact import ModelArtifact, list_versions, write_artifact
from mfrec.training.config import TrainingConfig
from mfrec.training.factors import Factors
from mfrec.training.ids import IdIndex
from mfrec.training.popularity import Popularity

CACHE = Path(__file__).resolve().parent / "results" / "models"
SEEN_PER_USER = 20


def synthetic_model_dir(
    n_users: int, n_items: int, factors: int = 64, seed: int = 0, index: str = "exact"
) -> Path:
    """Returns a model dir holding one synthetic version of the given shape (cached).

    index "hnsw" adds the approximate item index (built once, then cached like the rest).
    """
    from mfrec.training.pipeline import with_index
    from mfrec.training.synthetic import synthetic_factor_model

    suffix = "" if index == "exact" else f"-{index}"
    directory = CACHE / f"synthetic-{n_users}x{n_items}x{factors}-{seed}{suffix}"
    if list_versions(directory):
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    user_factors, item_factors, item_bias = synthetic_factor_model(n_users, n_items, factors, seed)
    rng = np.random.default_rng(seed + 1)
    seen = np.sort(rng.integers(0, n_items, size=(n_users, SEEN_PER_USER)), axis=1)
    order = np.lexsort((np.arange(n_items), -item_bias)).astype(np.int32)
    artifact = ModelArtifact(
        factors=Factors(
            user_factors=user_factors,
            item_factors=item_factors,
            user_bias=(0.1 * rng.standard_normal(n_users)).astype(np.float32),
            item_bias=item_bias,
            global_mean=3.5,
        ),
        user_ids=IdIndex.build([f"u{i}" for i in range(n_users)]),
        item_ids=IdIndex.build([f"i{i}" for i in range(n_items)]),
        seen_indptr=np.arange(0, n_users * SEEN_PER_USER + 1, SEEN_PER_USER, dtype=np.int64),
        seen_indices=seen.astype(np.int32).ravel(),
        popularity=Popularity(order=order, scores=(3.5 + item_bias).astype(np.float32)),
        metadata={
            "trained_at": datetime.now(UTC).isoformat(),
            "config": TrainingConfig(factors=factors, validation_fraction=0.0).to_dict(),
            "metrics": {},
            "user_count": n_users,
            "item_count": n_items,
            "rating_count": n_users * SEEN_PER_USER,
            "global_mean": 3.5,
        },
    )
    temporary = directory.with_name(directory.name + f".tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    if index != "exact":
        artifact = with_index(artifact, index)
    write_artifact(artifact, temporary)
    os.rename(temporary, directory)
    return directory


def movielens_model_dir(ratings_file: Path) -> Path:
    """Returns a model dir holding mfrec's default explicit ALS fit on ML-100K (cached)."""
    from mfrec.training.loaders import load_ratings
    from mfrec.training.pipeline import train_and_save

    directory = CACHE / "ml-100k"
    if list_versions(directory):
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    frame = load_ratings(ratings_file, "ml-100k")
    train_and_save(frame, TrainingConfig(validation_fraction=0.0), directory)
    return directory
