"""Weighted ALS for implicit feedback: determinism, and that it learns tastes popularity misses."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from mfrec.training.config import ALS_IMPLICIT, TrainingConfig
from mfrec.training.factors import Factors
from mfrec.training.implicit import fit_implicit_als
from mfrec.training.interactions import Interactions
from mfrec.training.models import fit_model

N_USERS, N_ITEMS, GROUPS = 90, 60, 3


def taste_groups(seed: int = 0) -> tuple[Interactions, npt.NDArray[np.bool_]]:
    """Three user groups, each mostly using its own third of the catalog.

    Every user also uses the first few items of the next group's third, so those are the most
    popular items overall while being wrong for two groups out of three. Returns the
    interactions (every value 1) and the boolean matrix of held-out own-group items.
    """
    rng = np.random.default_rng(seed)
    users, items = np.arange(N_USERS), np.arange(N_ITEMS)
    group_of_user, group_of_item = users % GROUPS, items // (N_ITEMS // GROUPS)
    own = group_of_item[None, :] == group_of_user[:, None]
    decoys = (group_of_item[None, :] == (group_of_user[:, None] + 1) % GROUPS) & (
        items[None, :] % (N_ITEMS // GROUPS) < 4
    )
    chosen = (own & (rng.random(own.shape) < 0.5)) | decoys
    held_out = own & ~chosen
    rows, cols = np.nonzero(chosen)
    data = Interactions(
        user_ids=[f"u{u}" for u in users],
        item_ids=[f"i{i}" for i in items],
        user_index=rows.astype(np.int32),
        item_index=cols.astype(np.int32),
        values=np.ones(rows.size, dtype=np.float32),
    )
    return data, held_out


def _precision_at_5(
    scores: npt.NDArray[np.float64], data: Interactions, held_out: npt.NDArray[np.bool_]
) -> float:
    scores = scores.copy()
    scores[data.user_index, data.item_index] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    return float(np.take_along_axis(held_out, top, axis=1).mean())


def _config(**changes: float) -> TrainingConfig:
    values = {"factors": 8, "iterations": 10, "regularization": 1.0, "alpha": 4.0, **changes}
    return TrainingConfig(algorithm=ALS_IMPLICIT, **values)  # type: ignore[arg-type]


def _scores(factors: Factors) -> npt.NDArray[np.float64]:
    return factors.user_factors.astype(np.float64) @ factors.item_factors.T.astype(np.float64)


def test_same_seed_gives_identical_arrays() -> None:
    data, _ = taste_groups()
    first, second = fit_implicit_als(data, _config()), fit_implicit_als(data, _config())
    np.testing.assert_array_equal(first.user_factors, second.user_factors)
    np.testing.assert_array_equal(first.item_factors, second.item_factors)


def test_different_seed_gives_different_arrays() -> None:
    data, _ = taste_groups()
    first = fit_implicit_als(data, _config(seed=1))
    second = fit_implicit_als(data, _config(seed=2))
    assert not np.array_equal(first.item_factors, second.item_factors)


def test_biases_and_global_mean_are_zero() -> None:
    data, _ = taste_groups()
    factors = fit_model(data, _config())
    assert factors.global_mean == 0.0
    assert not factors.user_bias.any() and not factors.item_bias.any()


def test_ranks_held_out_tastes_above_popularity() -> None:
    data, held_out = taste_groups()
    model = _precision_at_5(_scores(fit_model(data, _config())), data, held_out)
    counts = np.bincount(data.item_index, minlength=N_ITEMS).astype(np.float64)
    popularity = _precision_at_5(np.tile(counts, (N_USERS, 1)), data, held_out)
    assert model > 0.9
    assert model > popularity + 0.3


def test_progress_reports_every_sweep() -> None:
    data, _ = taste_groups()
    reports: list[int] = []
    fit_implicit_als(data, _config(iterations=3), lambda report: reports.append(report.iteration))
    assert reports == [1, 2, 3]
