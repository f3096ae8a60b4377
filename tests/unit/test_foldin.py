"""Fold-in: a new user's vector from their ratings, against the fixed item factors."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from mfrec.training.config import ALS_IMPLICIT, MIN_REGULARIZATION_COUNT, TrainingConfig
from mfrec.training.factors import Factors
from mfrec.training.foldin import fold_in, implicit_gram, mean_user
from mfrec.training.interactions import Interactions
from mfrec.training.models import fit_model


def _low_rank(seed: int = 0) -> Interactions:
    """60 users x 40 items, 60% observed, from a noiseless rank-3 model plus biases."""
    rng = np.random.default_rng(seed)
    full = 3.0 + rng.normal(0, 0.3, (60, 1)) + rng.normal(0, 0.3, (1, 40))
    full += rng.normal(0, 0.6, (60, 3)) @ rng.normal(0, 0.6, (3, 40))
    rows, cols = np.nonzero(rng.random((60, 40)) < 0.6)
    return _interactions(rows, cols, full[rows, cols], 60, 40)


def _interactions(
    rows: npt.NDArray[np.int64],
    cols: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    n_users: int,
    n_items: int,
) -> Interactions:
    return Interactions(
        user_ids=[f"u{u}" for u in range(n_users)],
        item_ids=[f"i{i}" for i in range(n_items)],
        user_index=rows.astype(np.int32),
        item_index=cols.astype(np.int32),
        values=values.astype(np.float32),
    )


def _user_rows(
    data: Interactions, user: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    mask = data.user_index == user
    return data.item_index[mask], data.values[mask]


def test_explicit_fold_in_recovers_a_trained_user() -> None:
    data = _low_rank()
    config = TrainingConfig(factors=3, iterations=80, regularization=0.05).resolved()
    factors = fit_model(data, config)
    for user in (0, 17, 42):
        folded = fold_in(factors, *_user_rows(data, user), config)
        assert folded is not None
        np.testing.assert_allclose(folded.vector, factors.user_factors[user], atol=2e-3)
        assert abs(folded.bias - float(factors.user_bias[user])) < 2e-3


def test_implicit_fold_in_recovers_a_trained_user() -> None:
    data = _low_rank()
    ones = _interactions(
        data.user_index.astype(np.int64),
        data.item_index.astype(np.int64),
        np.ones(data.n_ratings),
        data.n_users,
        data.n_items,
    )
    config = TrainingConfig(
        algorithm=ALS_IMPLICIT, factors=4, iterations=60, regularization=2.0, alpha=2.0
    ).resolved()
    factors = fit_model(ones, config)
    gram = implicit_gram(factors)
    for user in (3, 30):
        folded = fold_in(factors, *_user_rows(ones, user), config, gram=gram)
        assert folded is not None and folded.bias == 0.0
        np.testing.assert_allclose(folded.vector, factors.user_factors[user], atol=5e-3)


def test_precomputed_gram_gives_the_same_vector() -> None:
    factors = _random_factors()
    config = TrainingConfig(algorithm=ALS_IMPLICIT)
    items, values = np.array([1, 4, 7]), np.ones(3)
    direct = fold_in(factors, items, values, config)
    shared = fold_in(factors, items, values, config, gram=implicit_gram(factors))
    assert direct is not None and shared is not None
    np.testing.assert_allclose(direct.vector, shared.vector, rtol=1e-10)


def test_no_usable_item_gives_none() -> None:
    factors = _random_factors()
    config = TrainingConfig()
    assert fold_in(factors, [], [], config) is None
    assert fold_in(factors, [-1, 10_000], [4.0, 4.0], config) is None
    assert fold_in(factors, [2], [float("nan")], config) is None


def test_a_repeated_item_keeps_its_last_value() -> None:
    factors = _random_factors()
    config = TrainingConfig()
    repeated = fold_in(factors, [3, 5, 3], [1.0, 4.0, 5.0], config)
    last = fold_in(factors, [5, 3], [4.0, 5.0], config)
    assert repeated is not None and last is not None
    np.testing.assert_allclose(repeated.vector, last.vector)


def test_folded_in_users_rank_their_held_out_items_above_popularity() -> None:
    """Two tastes: users like their own half of the items. Fold-in finds a user's half."""
    rng = np.random.default_rng(3)
    n_users, n_items = 80, 40
    group = np.arange(n_users) % 2
    own = (np.arange(n_items)[None, :] < n_items // 2) == (group[:, None] == 0)
    # Everyone rates the popular first items of the other half too, so counts mislead.
    observed = (rng.random((n_users, n_items)) < np.where(own, 0.5, 0.1)) | (
        np.arange(n_items)[None, :] % (n_items // 2) < 3
    )
    ratings = np.where(own, 5.0, 1.0)
    rows, cols = np.nonzero(observed)
    data = _interactions(rows, cols, ratings[rows, cols], n_users, n_items)
    known = data.subset(np.flatnonzero(data.user_index < 60).astype(np.int64))
    config = TrainingConfig(factors=4, iterations=20).resolved()
    factors = fit_model(known, config)
    popular = np.argsort(-np.bincount(known.item_index, minlength=n_items), kind="stable")
    model_hits = popularity_hits = 0
    for user in range(60, n_users):
        items, values = _user_rows(data, user)
        shown, hidden = items[::2], set(np.flatnonzero(own[user] & ~observed[user]).tolist())
        folded = fold_in(factors, shown, values[::2], config)
        assert folded is not None
        scores = factors.item_factors @ folded.vector + factors.item_bias
        scores[items] = -np.inf
        model_hits += len(hidden & set(np.argsort(-scores)[:5].tolist()))
        candidates = [i for i in popular.tolist() if i not in set(items.tolist())][:5]
        popularity_hits += len(hidden & set(candidates))
    assert model_hits > popularity_hits
    assert model_hits >= 0.8 * 5 * (n_users - 60)


def _random_factors() -> Factors:
    rng = np.random.default_rng(9)
    return Factors(
        user_factors=rng.normal(size=(5, 4)).astype(np.float32),
        item_factors=rng.normal(size=(12, 4)).astype(np.float32),
        user_bias=np.zeros(5, dtype=np.float32),
        item_bias=rng.normal(size=12).astype(np.float32),
        global_mean=3.5,
    )


def test_few_items_solve_the_same_normal_equations() -> None:
    """Fewer items than factors takes the small (n x n) form; it must equal the full system."""
    factors = _random_factors()
    config = TrainingConfig(regularization=0.2, bias_regularization=3.0).resolved()
    items, values = np.array([2, 9, 4]), np.array([5.0, 1.0, 3.0])
    folded = fold_in(factors, items, values, config)
    assert folded is not None
    stacked = np.hstack([factors.item_factors[items], np.ones((3, 1))]).astype(np.float64)
    diagonal = np.r_[np.full(4, 0.2 * MIN_REGULARIZATION_COUNT), 3.0]
    residual = values - factors.global_mean - factors.item_bias[items]
    expected = np.linalg.solve(stacked.T @ stacked + np.diag(diagonal), stacked.T @ residual)
    np.testing.assert_allclose(np.r_[folded.vector, folded.bias], expected, atol=1e-10)


def test_a_prior_is_the_point_the_penalty_shrinks_towards() -> None:
    factors = _random_factors()
    config = TrainingConfig(regularization=0.2, bias_regularization=3.0).resolved()
    items, values = np.array([2, 9, 4]), np.array([5.0, 1.0, 3.0])
    prior = mean_user(factors)
    np.testing.assert_allclose(prior.vector, factors.user_factors.mean(axis=0), rtol=1e-6)
    folded = fold_in(factors, items, values, config, prior=prior)
    assert folded is not None
    stacked = np.hstack([factors.item_factors[items], np.ones((3, 1))]).astype(np.float64)
    diagonal = np.r_[np.full(4, 0.2 * MIN_REGULARIZATION_COUNT), 3.0]
    residual = values - factors.global_mean - factors.item_bias[items]
    start = np.r_[prior.vector, prior.bias]
    expected = np.linalg.solve(
        stacked.T @ stacked + np.diag(diagonal), stacked.T @ residual + diagonal * start
    )
    np.testing.assert_allclose(np.r_[folded.vector, folded.bias], expected, atol=1e-10)
    # With an overwhelming penalty the new user is the average user.
    heavy = TrainingConfig(algorithm=ALS_IMPLICIT, regularization=1e6, alpha=1.0).resolved()
    implicit = fold_in(factors, items, np.ones(3), heavy, prior=prior)
    assert implicit is not None
    np.testing.assert_allclose(implicit.vector, prior.vector, atol=1e-4)
