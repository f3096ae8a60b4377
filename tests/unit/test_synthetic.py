"""Tests of the synthetic ratings and factor models: shape, uniqueness, coverage, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mfrec.training.loaders import COLUMNS, ratings_from_records
from mfrec.training.synthetic import synthetic_factor_model, synthetic_ratings


def _indices(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    users = frame["user_id"].str.removeprefix("u").astype(np.int64).to_numpy()
    items = frame["item_id"].str.removeprefix("i").astype(np.int64).to_numpy()
    return users, items


@pytest.mark.parametrize(
    ("n_users", "n_items", "n_ratings"),
    [(943, 1682, 20_000), (300, 40, 3_000), (30, 20, 600), (7, 5, 9), (1, 1, 1), (50, 50, 0)],
)
def test_pairs_are_unique_and_cover_everyone(n_users: int, n_items: int, n_ratings: int) -> None:
    frame = synthetic_ratings(n_users, n_items, n_ratings)
    assert tuple(frame.columns) == COLUMNS
    assert frame["rating"].dtype == np.float64 and frame["timestamp"].dtype == np.int64
    assert pd.api.types.is_string_dtype(frame["user_id"].dtype)
    assert len(frame) == n_ratings
    users, items = _indices(frame)
    keys = users * n_items + items
    assert np.all(np.diff(keys) > 0)  # unique, and sorted by user then item
    if n_ratings >= max(n_users, n_items):
        assert set(users) == set(range(n_users)) and set(items) == set(range(n_items))


def test_too_few_ratings_still_give_unique_pairs() -> None:
    frame = synthetic_ratings(100, 60, 40)
    users, items = _indices(frame)
    assert len(set(zip(users, items, strict=True))) == 40
    assert len(set(users)) == 40 and len(set(items)) == 40


def test_same_seed_same_frame_and_other_seed_differs() -> None:
    first = synthetic_ratings(200, 100, 4_000, seed=7)
    pd.testing.assert_frame_equal(first, synthetic_ratings(200, 100, 4_000, seed=7))
    assert not first.equals(synthetic_ratings(200, 100, 4_000, seed=8))


def test_ratings_lie_on_the_scale_grid() -> None:
    frame = synthetic_ratings(100, 80, 2_000, rating_scale=(0.5, 5.0), rating_step=0.5)
    values = frame["rating"].to_numpy()
    assert values.min() >= 0.5 and values.max() <= 5.0
    assert np.allclose(values * 2, np.round(values * 2))
    assert len(np.unique(values)) >= 6


def test_continuous_ratings() -> None:
    values = synthetic_ratings(100, 80, 2_000, rating_step=None)["rating"].to_numpy()
    assert values.min() >= 1.0 and values.max() <= 5.0
    assert np.mean(values != np.round(values)) > 0.9


def test_popularity_skew_concentrates_ratings_on_few_items() -> None:
    def top_share(skew: float) -> float:
        counts = synthetic_ratings(500, 1_000, 20_000, popularity_skew=skew)["item_id"]
        ordered = counts.value_counts().to_numpy()
        return float(ordered[:100].sum() / ordered.sum())

    uniform, skewed = top_share(0.0), top_share(1.2)
    assert uniform < 0.2
    assert skewed > 2 * uniform


def test_ratings_follow_a_low_rank_model() -> None:
    # A full 60 x 50 matrix from 3 factors: biases and factors leave 5 strong directions.
    frame = synthetic_ratings(60, 50, 3_000, factors=3, rating_step=None, seed=3)
    users, items = _indices(frame)
    matrix = np.zeros((60, 50))
    matrix[users, items] = frame["rating"].to_numpy()
    singular = np.linalg.svd(matrix - matrix.mean(), compute_uv=False)
    energy = singular**2
    assert energy[:5].sum() / energy.sum() > 0.7
    noise = np.random.default_rng(0).permuted(matrix.ravel()).reshape(60, 50)
    noise_energy = np.linalg.svd(noise - noise.mean(), compute_uv=False) ** 2
    assert noise_energy[:5].sum() / noise_energy.sum() < 0.4


def test_dense_and_sparse_sampling_both_complete() -> None:
    dense = synthetic_ratings(40, 30, 1_100, popularity_skew=4.0)
    sparse = synthetic_ratings(400, 300, 20_000, popularity_skew=4.0)
    for frame, n_items in ((dense, 30), (sparse, 300)):
        users, items = _indices(frame)
        assert np.all(np.diff(users * n_items + items) > 0)
    assert len(dense) == 1_100 and len(sparse) == 20_000


def test_the_frame_passes_the_loader_checks() -> None:
    frame = synthetic_ratings(50, 40, 500)
    again = ratings_from_records(
        frame["user_id"].tolist(),
        frame["item_id"].tolist(),
        frame["rating"].tolist(),
        frame["timestamp"].tolist(),
        rating_range=(1.0, 5.0),
    )
    pd.testing.assert_frame_equal(again, frame)


@pytest.mark.parametrize(
    ("arguments", "options", "fragment"),
    [
        ((0, 5, 1), {}, "at least 1"),
        ((3, 3, 10), {}, "n_ratings"),
        ((3, 3, -1), {}, "n_ratings"),
        ((3, 3, 3), {"factors": 0}, "factors"),
        ((3, 3, 3), {"rating_scale": (5.0, 1.0)}, "rating_scale"),
        ((3, 3, 3), {"popularity_skew": -1.0}, "popularity_skew"),
        ((3, 3, 3), {"rating_step": 0.0}, "rating_step"),
    ],
)
def test_bad_arguments(
    arguments: tuple[int, int, int], options: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        synthetic_ratings(*arguments, **options)  # type: ignore[arg-type]


def test_factor_model_shapes_and_determinism() -> None:
    users, items, bias = synthetic_factor_model(20, 5_000, factors=8, seed=1)
    assert users.shape == (20, 8) and items.shape == (5_000, 8) and bias.shape == (5_000,)
    assert users.dtype == items.dtype == bias.dtype == np.float32
    assert all(np.isfinite(array).all() for array in (users, items, bias))
    again = synthetic_factor_model(20, 5_000, factors=8, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((users, items, bias), again, strict=True))
    assert not np.array_equal(items, synthetic_factor_model(20, 5_000, factors=8, seed=2)[1])


def test_factor_model_item_norms_are_skewed() -> None:
    _, items, bias = synthetic_factor_model(1, 20_000, factors=16)
    norms = np.linalg.norm(items, axis=1)
    assert np.quantile(norms, 0.99) > 2.5 * np.median(norms)
    assert np.corrcoef(norms, bias)[0, 1] > 0.5
