"""Approximate personalized ranking: candidates from the item index, rescored exactly."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from mfrec.server.model import ServingModel
from mfrec.training.ann import import_faiss

# Candidates asked of the index for one request: k plus the items it must drop (seen and
# excluded ones), but never more than this many per k (nor fewer than the floor), so a user
# with a long history costs a bounded search; too few survivors fall back to exact search.
CANDIDATES_PER_K = 8
MIN_CANDIDATE_BOUND = 256


def candidate_count(k: int, hidden: int, n_items: int) -> int:
    """Returns how many neighbours to ask the index for."""
    bound = max(CANDIDATES_PER_K * k, MIN_CANDIDATE_BOUND)
    return min(k + hidden, bound, n_items)


def approximate_top_k(
    model: ServingModel,
    user: int,
    k: int,
    include_seen: bool,
    excluded: npt.NDArray[np.integer],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None:
    """Returns the user's top k found through the item index, or None when too few survive.

    The survivors (not seen unless include_seen, not excluded) are rescored with
    model.exact_scores and ordered by (score descending, item index ascending), so the items
    returned carry exactly the scores exact search gives them.
    """
    index = model.artifact.item_index
    hidden = excluded if include_seen else np.concatenate([excluded, model.seen_items(user)])
    count = candidate_count(k, int(hidden.size), model.n_items)
    if count < k:
        return None
    user_vector = model.artifact.factors.user_factors[user]
    query = np.empty((1, user_vector.shape[0] + 1), dtype=np.float32)
    query[0, :-1] = user_vector
    query[0, -1] = 1.0  # multiplies the item bias, the last component of each item vector
    params = import_faiss().SearchParametersHNSW()
    params.efSearch = max(model.ef_search, count)
    _, labels = index.search(query, count, params=params)
    found = labels[0][labels[0] >= 0].astype(np.int64)
    if hidden.size:
        found = found[~np.isin(found, hidden)]
    if found.size < k:
        return None
    exact = model.exact_scores(np.asarray(user, dtype=np.int64), found)
    best = np.lexsort((found, -exact))[:k]
    return found[best], exact[best]
