"""Weighted ALS for implicit feedback (Hu, Koren and Volinsky 2008), activity-normalized.

Every stored interaction is a preference p_ui = 1 held with confidence

    c_ui = 1 + alpha * r_ui * (n_u / n_ref) ^ -beta                      (beta = 0: the paper)

and every other pair a preference 0 with confidence 1. n_u is the user's interaction count,
n_ref = CONFIDENCE_REFERENCE_COUNT and beta = CONFIDENCE_ACTIVITY_EXPONENT (config.py; the
scale is foldin.activity_scale, so a folded-in user is weighted alike). With beta = 1/2 a
user's total confidence grows like sqrt(n_u) instead of n_u, so the heaviest users no longer
dominate the item factors: on the ranking validation splits this raised NDCG@10 by 3.8% on
MovieLens latest-small and cost 0.6% on 100K (test: +4.7% and +0.9%). Biases and the global
mean stay 0: the scores rank items and are not ratings.
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from mfrec.training.als import IterationReport, ProgressCallback, Validator
from mfrec.training.config import TrainingConfig
from mfrec.training.factors import Factors
from mfrec.training.foldin import activity_scale
from mfrec.training.interactions import Interactions
from mfrec.training.linalg import WeightedRows, solve_weighted_rows

FloatArray = npt.NDArray[np.float64]

_INIT_SCALE = 0.01
# Conjugate-gradient steps per half-sweep, warm-started (as implicit's default solver): 8 steps
# or 30 sweeps gave the same validation NDCG@10 (0.2716, 0.2715 against 0.2721).
CG_STEPS = 3


def fit_implicit_als(
    data: Interactions,
    config: TrainingConfig,
    progress: ProgressCallback | None = None,
    validator: Validator | None = None,
) -> Factors:
    """Minimizes sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (sum_u |x_u|^2 + sum_i |y_i|^2).

    Deterministic for a given seed. Each half-sweep solves, for every user at once (items
    alike), (Y^T Y + Y_u^T (C_u - I) Y_u + lambda I) x_u = Y_u^T C_u p_u (eq. 4 of the paper).
    """
    config = config.resolved()
    rng = np.random.default_rng(config.seed)
    by_user, by_item = data.user_item_matrix(), data.item_user_matrix()
    users = rng.random((data.n_users, config.factors)) * _INIT_SCALE
    items = rng.random((data.n_items, config.factors)) * _INIT_SCALE
    scale = activity_scale(np.diff(by_user.indptr))
    user_confidence = 1.0 + config.alpha * by_user.data * np.repeat(scale, np.diff(by_user.indptr))
    item_confidence = 1.0 + config.alpha * by_item.data * scale[by_item.indices]
    for iteration in range(1, config.iterations + 1):
        started = time.perf_counter()
        users = _half_sweep(by_user, user_confidence, items, users, config.regularization)
        items = _half_sweep(by_item, item_confidence, users, items, config.regularization)
        if progress is not None:
            held_out = validator(_factors(users, items)) if validator is not None else None
            seconds = time.perf_counter() - started
            progress(IterationReport(iteration, float("nan"), held_out, seconds))
    return _factors(users, items)


def _half_sweep(
    matrix: sp.csr_matrix,
    confidence: FloatArray,
    fixed: FloatArray,
    current: FloatArray,
    regularization: float,
) -> FloatArray:
    """Re-solves every row of one side against the other side's factors `fixed`."""
    fixed32 = fixed.astype(np.float32)
    system = WeightedRows(
        indptr=matrix.indptr.astype(np.int64),
        indices=matrix.indices,
        confidence=confidence.astype(np.float32),
        fixed=fixed32,
        base_gram=fixed32.T @ fixed32,
        regularization=np.float32(regularization),
    )
    return solve_weighted_rows(system, current, CG_STEPS)


def _factors(users: FloatArray, items: FloatArray) -> Factors:
    return Factors(
        user_factors=np.ascontiguousarray(users, dtype=np.float32),
        item_factors=np.ascontiguousarray(items, dtype=np.float32),
        user_bias=np.zeros(users.shape[0], dtype=np.float32),
        item_bias=np.zeros(items.shape[0], dtype=np.float32),
        global_mean=0.0,
    )
