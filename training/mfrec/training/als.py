"""Explicit biased matrix factorization by alternating least squares with count-scaled
regularization (ALS-WR, Zhou et al. 2008) and a separate bias penalty."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mfrec.training.config import TrainingConfig
from mfrec.training.factors import Factors
from mfrec.training.interactions import Interactions
from mfrec.training.linalg import solve_explicit_rows

_INIT_SCALE = 0.1


@dataclass(frozen=True)
class IterationReport:
    """Progress after one sweep: training RMSE, validation RMSE (if any) and seconds taken."""

    iteration: int
    train_rmse: float
    validation_rmse: float | None
    seconds: float


ProgressCallback = Callable[[IterationReport], None]
Validator = Callable[[Factors], float]


def rmse(predicted: npt.NDArray[np.float64], actual: npt.NDArray[np.floating]) -> float:
    """Root mean squared error of two aligned arrays."""
    diff = predicted - actual.astype(np.float64)
    return float(np.sqrt(np.mean(diff * diff))) if diff.size else float("nan")


def fit_explicit_als(
    data: Interactions,
    config: TrainingConfig,
    progress: ProgressCallback | None = None,
    validator: Validator | None = None,
) -> Factors:
    """Fits r_ui ~ mu + b_u + b_i + p_u . q_i by ALS; deterministic for a given seed.

    Each half-sweep solves, for every user u at once (items likewise),
        (Q_u^T Q_u + diag(lambda * n_u, ..., lambda * n_u, lambda_b)) [p_u; b_u]
            = Q_u^T (r_u - mu - b_I)
    where Q_u stacks [q_i, 1] for the items u rated and n_u is how many there are.
    """
    config = config.resolved()
    rng = np.random.default_rng(config.seed)
    f = config.factors
    by_user = data.user_item_matrix()
    by_item = data.item_user_matrix()
    mu = float(np.mean(data.values, dtype=np.float64)) if data.n_ratings else 0.0
    users = rng.normal(0.0, _INIT_SCALE, (data.n_users, f))
    items = rng.normal(0.0, _INIT_SCALE, (data.n_items, f))
    user_bias = np.zeros(data.n_users)
    item_bias = np.zeros(data.n_items)
    user_reg = _regularization(by_user, config)
    item_reg = _regularization(by_item, config)
    for iteration in range(1, config.iterations + 1):
        started = time.perf_counter()
        targets = by_user.data.astype(np.float64) - mu - item_bias[by_user.indices]
        solved = solve_explicit_rows(
            by_user.indptr, by_user.indices, targets, _with_ones(items), user_reg
        )
        users, user_bias = solved[:, :f], solved[:, f]
        targets = by_item.data.astype(np.float64) - mu - user_bias[by_item.indices]
        solved = solve_explicit_rows(
            by_item.indptr, by_item.indices, targets, _with_ones(users), item_reg
        )
        items, item_bias = solved[:, :f], solved[:, f]
        factors = _factors(users, items, user_bias, item_bias, mu)
        if progress is not None:
            train = rmse(
                factors.predict(data.user_index.astype(np.int64), data.item_index), data.values
            )
            held_out = validator(factors) if validator is not None else None
            progress(IterationReport(iteration, train, held_out, time.perf_counter() - started))
    return _factors(users, items, user_bias, item_bias, mu)


def _with_ones(factors: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.hstack([factors, np.ones((factors.shape[0], 1))])


def _regularization(matrix: object, config: TrainingConfig) -> npt.NDArray[np.float64]:
    counts = np.diff(matrix.indptr).astype(np.float64)  # type: ignore[attr-defined]
    reg = np.empty((counts.shape[0], config.factors + 1))
    reg[:, : config.factors] = config.regularization * counts[:, None]
    reg[:, config.factors] = config.bias_regularization
    return reg


def _factors(
    users: npt.NDArray[np.float64],
    items: npt.NDArray[np.float64],
    user_bias: npt.NDArray[np.float64],
    item_bias: npt.NDArray[np.float64],
    mu: float,
) -> Factors:
    return Factors(
        user_factors=np.ascontiguousarray(users, dtype=np.float32),
        item_factors=np.ascontiguousarray(items, dtype=np.float32),
        user_bias=user_bias.astype(np.float32),
        item_bias=item_bias.astype(np.float32),
        global_mean=mu,
    )
