"""BPMF by Gibbs sampling: determinism, the exact sample average, and that it learns."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from mfrec.training.bpmf import compress, fit_bpmf
from mfrec.training.config import BPMF, TrainingConfig
from mfrec.training.interactions import Interactions
from mfrec.training.models import fit_model


def _low_rank(seed: int = 0) -> tuple[Interactions, Interactions]:
    """A rank-2 matrix plus biases and noise of sd 0.3: 70% of the cells train, 30% test."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 80, 60
    full = 3.0 + rng.normal(0, 0.4, (n_users, 1)) + rng.normal(0, 0.4, (1, n_items))
    full += rng.normal(0, 0.8, (n_users, 2)) @ rng.normal(0, 0.8, (2, n_items))
    full += rng.normal(0, 0.3, full.shape)
    observed = rng.random(full.shape) < 0.7
    return _cells(full, observed), _cells(full, ~observed)


def _cells(full: npt.NDArray[np.float64], mask: npt.NDArray[np.bool_]) -> Interactions:
    rows, cols = np.nonzero(mask)
    return Interactions(
        user_ids=[f"u{u}" for u in range(full.shape[0])],
        item_ids=[f"i{i}" for i in range(full.shape[1])],
        user_index=rows.astype(np.int32),
        item_index=cols.astype(np.int32),
        values=full[rows, cols].astype(np.float32),
    )


def _config(**changes: int | float) -> TrainingConfig:
    values = {"factors": 4, "iterations": 30, "burn_in": 10, "alpha": 10.0, **changes}
    return TrainingConfig(algorithm=BPMF, **values)  # type: ignore[arg-type]


def _rmse(factors: object, data: Interactions) -> float:
    predicted = factors.predict(data.user_index, data.item_index)  # type: ignore[attr-defined]
    return float(np.sqrt(np.mean((predicted - data.values) ** 2)))


def test_same_seed_gives_identical_arrays() -> None:
    train, _ = _low_rank()
    first, second = fit_bpmf(train, _config()), fit_bpmf(train, _config())
    np.testing.assert_array_equal(first.user_factors, second.user_factors)
    np.testing.assert_array_equal(first.item_bias, second.item_bias)


def test_different_seed_gives_different_arrays() -> None:
    train, _ = _low_rank()
    first, second = fit_bpmf(train, _config(seed=1)), fit_bpmf(train, _config(seed=2))
    assert not np.array_equal(first.user_factors, second.user_factors)


def test_beats_the_item_mean_on_held_out_cells() -> None:
    train, test = _low_rank()
    factors = fit_model(train, _config())
    sums = np.bincount(train.item_index, weights=train.values, minlength=train.n_items)
    item_mean = sums / np.bincount(train.item_index, minlength=train.n_items)
    baseline = float(np.sqrt(np.mean((item_mean[test.item_index] - test.values) ** 2)))
    assert _rmse(factors, test) < 0.6 * baseline
    assert _rmse(factors, test) < 0.45


def test_concatenated_samples_predict_the_sample_mean() -> None:
    """The factors' dot product is the mean of the samples' dot products, not of the means."""
    train, _ = _low_rank()
    one = fit_bpmf(train, _config(iterations=1, factors=3))
    three = fit_bpmf(train, _config(iterations=3, factors=3))
    assert one.user_factors.shape[1] == 3 and three.user_factors.shape[1] == 9
    users, items = three.user_factors.reshape(80, 3, 3), three.item_factors.reshape(60, 3, 3)
    per_sample = np.einsum("usd,isd->uis", users, items) * 3  # undo the 1/sqrt(S) scaling
    np.testing.assert_allclose(
        three.user_factors @ three.item_factors.T, per_sample.mean(axis=2), atol=1e-5
    )


def test_compress_keeps_the_product_when_the_rank_allows() -> None:
    rng = np.random.default_rng(1)
    users = rng.normal(size=(30, 12)).astype(np.float32)
    items = rng.normal(size=(20, 12)).astype(np.float32)
    # Rank 12 fits in 12 columns exactly, even after compression from a wider form.
    wide_users, wide_items = np.hstack([users, users]) / np.sqrt(2), np.hstack([items, items])
    wide_items /= np.sqrt(2)
    small_users, small_items = compress(wide_users, wide_items, 12, np.random.default_rng(0))
    np.testing.assert_allclose(small_users @ small_items.T, users @ items.T, atol=1e-4)


def test_progress_reports_every_kept_sample() -> None:
    train, test = _low_rank()
    reports: list[tuple[int, float | None]] = []
    fit_bpmf(
        train,
        _config(iterations=4, burn_in=2),
        lambda report: reports.append((report.iteration, report.validation_rmse)),
        lambda factors: _rmse(factors, test),
    )
    assert [iteration for iteration, _ in reports] == [1, 2, 3, 4]
    assert all(value is not None for _, value in reports)
