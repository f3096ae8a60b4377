"""Fold-in: the vector of a user the model has never seen, from a few of their ratings.

One regularized least-squares solve against the fixed item factors, the same equations a
training half-sweep solves for a known user, so a folded-in user is scored like a trained one:

    explicit (als-explicit, bpmf): (Q_u^T Q_u + diag(lambda m_u, ..., lambda m_u, lambda_b))
        [p_u; b_u] = Q_u^T (r_u - mu - b_I), where Q_u stacks [q_i, 1] for the user's items
        and m_u = max(n_u, MIN_REGULARIZATION_COUNT) counts them (ALS-WR with a floor)
    implicit (als-implicit): (Y^T Y + Y_u^T (C_u - I) Y_u + lambda I) x_u = Y_u^T C_u 1,
        C_u = diag(1 + alpha r_u s(n_u)) with the activity scale s of implicit.py

The server imports this module on the request path: numpy only, no pandas or scipy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mfrec.training.config import (
    ALS_IMPLICIT,
    CONFIDENCE_ACTIVITY_EXPONENT,
    CONFIDENCE_REFERENCE_COUNT,
    MIN_REGULARIZATION_COUNT,
    TrainingConfig,
)
from mfrec.training.factors import Factors


@dataclass(frozen=True)
class FoldedUser:
    """A folded-in user: the factor vector (float64) and the bias (0 for implicit models)."""

    vector: npt.NDArray[np.float64]
    bias: float


def activity_scale(counts: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Returns s(n) = (n / n_ref) ^ -beta, the implicit model's factor on alpha * r_ui for a
    user with n interactions (n_ref, beta: CONFIDENCE_REFERENCE_COUNT, _ACTIVITY_EXPONENT)."""
    ratio = np.maximum(np.asarray(counts, dtype=np.float64), 1.0) / CONFIDENCE_REFERENCE_COUNT
    return np.asarray(ratio**-CONFIDENCE_ACTIVITY_EXPONENT, dtype=np.float64)


def implicit_gram(factors: Factors) -> npt.NDArray[np.float64]:
    """Returns Y^T Y over all items, the part of every implicit fold-in shared by all users."""
    items = factors.item_factors.astype(np.float64)
    return items.T @ items


def mean_user(factors: Factors) -> FoldedUser:
    """Returns the average trained user (vector and bias), the prior of every fold-in."""
    if factors.user_factors.shape[0] == 0:
        return FoldedUser(np.zeros(factors.item_factors.shape[1]), 0.0)
    vector = np.asarray(factors.user_factors, dtype=np.float64).mean(axis=0)
    return FoldedUser(vector=vector, bias=float(np.mean(factors.user_bias, dtype=np.float64)))


def fold_in(
    factors: Factors,
    item_indices: npt.ArrayLike,
    values: npt.ArrayLike,
    config: TrainingConfig,
    gram: npt.NDArray[np.float64] | None = None,
    prior: FoldedUser | None = None,
) -> FoldedUser | None:
    """Solves for a new user's vector (and bias, for explicit models) from their ratings.

    Args:
        factors: the trained model; its item side stays fixed.
        item_indices: the rated items' indices. Indices outside the model, non-finite values
            and repeats (the last value wins) are dropped.
        values: the ratings (implicit models: the interaction strengths), aligned.
        config: the model's training configuration (algorithm, regularization, alpha, ...).
        gram: implicit_gram(factors), computed once per model; None computes it here.
        prior: the vector (and bias) the penalty shrinks towards; None means zero, the
            training equations, which a trained user's own vector satisfies. The server
            passes mean_user(factors), computed once per model.

    Returns:
        The folded-in user, or None when no usable item remains.
    """
    config = config.resolved()
    usable = _usable(factors, item_indices, values)
    if usable is None:
        return None
    items, ratings = usable
    width = factors.item_factors.shape[1]
    start = FoldedUser(np.zeros(width), 0.0) if prior is None else prior
    if config.algorithm == ALS_IMPLICIT:
        shared = implicit_gram(factors) if gram is None else gram
        return _implicit(factors, items, ratings, config, shared, start)
    return _explicit(factors, items, ratings, config, start)


def _usable(
    factors: Factors, item_indices: npt.ArrayLike, values: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]] | None:
    items = np.asarray(item_indices, dtype=np.int64).ravel()
    ratings = np.asarray(values, dtype=np.float64).ravel()
    if items.shape != ratings.shape:
        raise ValueError("item_indices and values must have the same length")
    keep = (items >= 0) & (items < factors.item_factors.shape[0]) & np.isfinite(ratings)
    items, ratings = items[keep], ratings[keep]
    if items.size == 0:
        return None
    # np.unique keeps the first occurrence; on the reversed arrays that is the last one.
    _, last = np.unique(items[::-1], return_index=True)
    chosen = items.size - 1 - last
    return items[chosen], ratings[chosen]


def _explicit(
    factors: Factors,
    items: npt.NDArray[np.int64],
    ratings: npt.NDArray[np.float64],
    config: TrainingConfig,
    prior: FoldedUser,
) -> FoldedUser:
    width = factors.item_factors.shape[1]
    stacked = np.empty((items.size, width + 1))
    stacked[:, :width] = factors.item_factors[items]
    stacked[:, width] = 1.0
    residual = ratings - factors.global_mean - factors.item_bias[items]
    # D = diag(lambda m_u, ..., lambda m_u, lambda_b): the count-scaled reg of training.
    diagonal = np.full(width + 1, config.regularization * max(items.size, MIN_REGULARIZATION_COUNT))
    diagonal[width] = config.bias_regularization
    # Shrinking towards x0 instead of 0: x = x0 + z with (A^T A + D) z = A^T (t - A x0).
    start = np.append(prior.vector, prior.bias)
    solution = start + _ridge(stacked, residual - stacked @ start, diagonal)
    return FoldedUser(vector=solution[:width], bias=float(solution[width]))


def _ridge(
    rows: npt.NDArray[np.float64],
    targets: npt.NDArray[np.float64],
    diagonal: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Solves (A^T A + D) x = A^T t for a positive diagonal D, in the smaller dimension.

    With fewer rows n than columns, the push-through identity
    (A^T A + D)^-1 A^T = D^-1 A^T (A D^-1 A^T + I)^-1 turns the (d x d) system into an
    (n x n) one: the usual case of a handful of recent items against 64+ factors.
    """
    if rows.shape[0] >= rows.shape[1]:
        gram = rows.T @ rows
        gram[np.diag_indices_from(gram)] += diagonal
        return np.asarray(np.linalg.solve(gram, rows.T @ targets), dtype=np.float64)
    scaled = rows / diagonal  # A D^-1
    small = scaled @ rows.T
    small[np.diag_indices_from(small)] += 1.0
    return np.asarray(scaled.T @ np.linalg.solve(small, targets), dtype=np.float64)


def _implicit(
    factors: Factors,
    items: npt.NDArray[np.int64],
    ratings: npt.NDArray[np.float64],
    config: TrainingConfig,
    shared: npt.NDArray[np.float64],
    prior: FoldedUser,
) -> FoldedUser:
    chosen = factors.item_factors[items].astype(np.float64)
    extra = config.alpha * ratings * activity_scale(items.size)
    gram = shared + chosen.T @ (chosen * extra[:, None])
    gram[np.diag_indices_from(gram)] += config.regularization
    rhs = chosen.T @ (1.0 + extra) + config.regularization * prior.vector
    solution = np.linalg.solve(gram, rhs)
    return FoldedUser(vector=solution.astype(np.float64, copy=False), bias=0.0)
