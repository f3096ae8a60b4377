"""Explicit biased matrix factorization by alternating least squares with count-scaled
regularization (ALS-WR, Zhou et al. 2008) and a separate bias penalty."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from mfrec.training.config import MIN_REGULARIZATION_COUNT, TrainingConfig
from mfrec.training.factors import Factors
from mfrec.training.interactions import Interactions
from mfrec.training.linalg import solve_explicit_rows

FloatArray = npt.NDArray[np.float64]

_INIT_SCALE = 0.1
# Conjugate-gradient steps per row and half-sweep, warm-started from the previous sweep: the
# same validation RMSE as exact solves (MovieLens 100K, 10 sweeps: 0.9082 against 0.9083; 25
# sweeps: 0.9080 both) for about half the cost of a sweep.
CG_STEPS = 3


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
        (Q_u^T Q_u + diag(lambda * m_u, ..., lambda * m_u, lambda_b)) [p_u; b_u]
            = Q_u^T (r_u - mu - b_I)
    where Q_u stacks [q_i, 1] for the items u rated, n_u is how many there are and
    m_u = max(n_u, MIN_REGULARIZATION_COUNT). The solves are conjugate-gradient steps warm-started
    from the previous sweep (CG_STEPS); the first sweep starts from small random factors.
    """
    config = config.resolved()
    rng = np.random.default_rng(config.seed)
    by_user, by_item = data.user_item_matrix(), data.item_user_matrix()
    mu = float(np.mean(data.values, dtype=np.float64))
    # Rows are [factors, bias]: the bias is one more coordinate of the same solve.
    users = np.hstack(
        [rng.normal(0.0, _INIT_SCALE, (data.n_users, config.factors)), np.zeros((data.n_users, 1))]
    )
    items = np.hstack(
        [rng.normal(0.0, _INIT_SCALE, (data.n_items, config.factors)), np.zeros((data.n_items, 1))]
    )
    user_reg, item_reg = _regularization(by_user, config), _regularization(by_item, config)
    for iteration in range(1, config.iterations + 1):
        started = time.perf_counter()
        users = _half_sweep(by_user, users, items, user_reg, mu)
        items = _half_sweep(by_item, items, users, item_reg, mu)
        if progress is not None:
            factors = _factors(users, items, mu)
            users_at, items_at = data.user_index.astype(np.int64), data.item_index.astype(np.int64)
            predicted = factors.predict(users_at, items_at)
            train = rmse(predicted, data.values)
            held_out = validator(factors) if validator is not None else None
            progress(IterationReport(iteration, train, held_out, time.perf_counter() - started))
    return _factors(users, items, mu)


def _half_sweep(
    matrix: sp.csr_matrix, own: FloatArray, other: FloatArray, reg: FloatArray, mu: float
) -> FloatArray:
    """Re-solves every row [x, b] of one side against the other side's rows [y, c].

    The other side enters as [y, 1] with its bias moved into the targets r - mu - c.
    """
    targets = matrix.data.astype(np.float64) - mu - other[matrix.indices, -1]
    fixed = np.hstack([other[:, :-1], np.ones((other.shape[0], 1))])
    return solve_explicit_rows(matrix.indptr, matrix.indices, targets, fixed, reg, own, CG_STEPS)


def _regularization(matrix: sp.csr_matrix, config: TrainingConfig) -> FloatArray:
    """The diagonal of every row's system: lambda * max(n_r, n_min) on factors, lambda_b on bias.

    Count scaling (ALS-WR) alone leaves a row with one rating almost unpenalized; the floor
    n_min keeps rare items (and folded-in users) from fitting their few ratings exactly.
    """
    counts = np.maximum(np.diff(matrix.indptr), MIN_REGULARIZATION_COUNT).astype(np.float64)
    reg = np.empty((counts.shape[0], config.factors + 1))
    reg[:, : config.factors] = config.regularization * counts[:, None]
    reg[:, config.factors] = config.bias_regularization
    return reg


def _factors(users: FloatArray, items: FloatArray, mu: float) -> Factors:
    return Factors(
        user_factors=np.ascontiguousarray(users[:, :-1], dtype=np.float32),
        item_factors=np.ascontiguousarray(items[:, :-1], dtype=np.float32),
        user_bias=users[:, -1].astype(np.float32),
        item_bias=items[:, -1].astype(np.float32),
        global_mean=mu,
    )
