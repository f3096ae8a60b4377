"""Fold-in scoring: personalized scores for a user the model does not know, from recent items.

The user's vector comes from one regularized least-squares solve against the fixed item
matrix (mfrec.training.foldin), microseconds for a handful of items, so a brand-new user is
personalized on their first request without retraining.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mfrec.server.model import ServingModel
from mfrec.server.ranking import score_buffer
from mfrec.training.config import TrainingConfig
from mfrec.training.foldin import FoldedUser, fold_in, implicit_gram, mean_user


@dataclass(frozen=True)
class _Shared:
    """What every fold-in on one model shares: Y^T Y (implicit only) and the average user."""

    gram: npt.NDArray[np.float64] | None
    prior: FoldedUser
    config: TrainingConfig


_SHARED: dict[int, tuple[ServingModel, _Shared]] = {}
_SHARED_KEPT = 4
_shared_lock = threading.Lock()


def _shared(model: ServingModel) -> _Shared:
    """Computes the shared parts once per model (a few models are kept, for swaps)."""
    with _shared_lock:
        cached = _SHARED.get(id(model))
        if cached is not None and cached[0] is model:
            return cached[1]
    factors = model.artifact.factors
    shared = _Shared(
        gram=implicit_gram(factors) if model.implicit else None,
        prior=mean_user(factors),
        config=TrainingConfig.from_dict(model.metadata.get("config", {})),
    )
    with _shared_lock:
        _SHARED[id(model)] = (model, shared)
        while len(_SHARED) > _SHARED_KEPT:
            _SHARED.pop(next(iter(_SHARED)))
    return shared


def default_value(model: ServingModel) -> float:
    """The strength of a recent item given without a value: the top rating seen in training
    for explicit models, one interaction for the implicit model."""
    if model.implicit:
        return 1.0
    return float(model.metadata.get("rating_max", 1.0))


def fold_in_scores(
    model: ServingModel, item_ids: tuple[str, ...], values: tuple[float, ...]
) -> npt.NDArray[np.float32] | None:
    """Fills this thread's score buffer for a user folded in from (item, value) pairs.

    Unknown items are skipped; returns None when none is left.
    """
    indices = model.artifact.item_ids.indices_of(item_ids)
    strengths = np.asarray(values if values else [default_value(model)] * len(item_ids))
    known = indices >= 0
    if not known.any():
        return None
    shared = _shared(model)
    folded = fold_in(
        model.artifact.factors,
        indices[known],
        strengths[known],
        shared.config,
        shared.gram,
        shared.prior,
    )
    if folded is None:
        return None
    factors = model.artifact.factors
    scores = score_buffer(model.n_items)
    np.matmul(factors.item_factors, folded.vector.astype(np.float32), out=scores)
    if not model.implicit:
        scores += factors.item_bias
        scores += np.float32(factors.global_mean + folded.bias)
    return scores
