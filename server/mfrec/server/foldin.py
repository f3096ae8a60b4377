"""Fold-in scoring: personalized scores for a user the model does not know, from recent items.

The user's vector comes from one regularized least-squares solve against the fixed item
matrix (mfrec.training.foldin), microseconds for a handful of items, so a brand-new user is
personalized on their first request without retraining.
"""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt

from mfrec.server.model import ServingModel
from mfrec.server.ranking import score_buffer
from mfrec.training.config import TrainingConfig
from mfrec.training.foldin import fold_in, implicit_gram


_GRAMS: dict[int, tuple[ServingModel, npt.NDArray[np.float64]]] = {}
_GRAMS_KEPT = 4
_grams_lock = threading.Lock()


def _gram(model: ServingModel) -> npt.NDArray[np.float64]:
    """Y^T Y, the same for every implicit fold-in on one model: computed once per model."""
    with _grams_lock:
        cached = _GRAMS.get(id(model))
        if cached is not None and cached[0] is model:
            return cached[1]
    gram = implicit_gram(model.artifact.factors)
    with _grams_lock:
        _GRAMS[id(model)] = (model, gram)
        while len(_GRAMS) > _GRAMS_KEPT:
            _GRAMS.pop(next(iter(_GRAMS)))
    return gram


def _config(model: ServingModel) -> TrainingConfig:
    return TrainingConfig.from_dict(model.metadata.get("config", {}))


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
    gram = _gram(model) if model.implicit else None
    folded = fold_in(model.artifact.factors, indices[known], strengths[known], _config(model), gram)
    if folded is None:
        return None
    factors = model.artifact.factors
    scores = score_buffer(model.n_items)
    np.matmul(factors.item_factors, folded.vector.astype(np.float32), out=scores)
    if not model.implicit:
        scores += factors.item_bias
        scores += np.float32(factors.global_mean + folded.bias)
    return scores
