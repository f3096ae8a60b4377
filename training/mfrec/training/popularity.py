"""Popularity rankings for users the model has never seen (cold start).

Three rankings are available, compared on the ranking protocol (README, "Training and quality"):

- count (the default): the number of ratings an item has. NDCG@10 0.222 on MovieLens 100K
  and 0.187 on latest-small, the best of the three on both.
- damped mean: the Bayesian mean rating
  ``(sum of item i's ratings + m * global_mean) / (n_i + m)``, with the prior weight m the
  median number of ratings per item (at least 1), read from the data. An item with one 5-star
  rating is pulled back to the global mean instead of heading the list, but the list still
  favours well-rated niche items over what most users go on to watch: NDCG@10 0.103 / 0.030.
- mean then count: the naive sort by mean rating, ties by count. Items with a single top
  rating head it, and it ranks almost nothing users watch: NDCG@10 0.0007 / 0.0025.

Under count an item with a single rating can never head the list while any item has two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DAMPED_MEAN = "damped-mean"
COUNT = "count"
MEAN_THEN_COUNT = "mean-then-count"
METHODS = (DAMPED_MEAN, COUNT, MEAN_THEN_COUNT)


@dataclass(frozen=True)
class Popularity:
    """Item popularity: order[j] is the j-th most popular item index; scores per item index."""

    order: npt.NDArray[np.int32]
    scores: npt.NDArray[np.float32]


def prior_weight(counts: npt.NDArray[np.int64]) -> float:
    """Returns the damping weight m: the median ratings per rated item, at least 1."""
    rated = counts[counts > 0]
    return max(1.0, float(np.median(rated))) if rated.size else 1.0


def item_popularity(
    item_index: npt.NDArray[np.int32],
    values: npt.NDArray[np.float32],
    n_items: int,
    method: str = COUNT,
) -> Popularity:
    """Ranks every item by the chosen method; ties go to the lower item index."""
    counts = np.bincount(item_index, minlength=n_items).astype(np.int64)
    sums = np.bincount(item_index, weights=values.astype(np.float64), minlength=n_items)
    if method == COUNT:
        scores = counts.astype(np.float64)
        order = _rank(scores)
    elif method == MEAN_THEN_COUNT:
        scores = np.divide(sums, counts, out=np.zeros(n_items), where=counts > 0)
        order = np.lexsort((np.arange(n_items), -counts, -scores)).astype(np.int32)
    elif method == DAMPED_MEAN:
        weight = prior_weight(counts)
        mean = float(sums.sum() / counts.sum()) if counts.sum() else 0.0
        scores = (sums + weight * mean) / (counts + weight)
        order = _rank(scores)
    else:
        raise ValueError(f"popularity method must be one of {', '.join(METHODS)}")
    return Popularity(order=order, scores=scores.astype(np.float32))


def _rank(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.int32]:
    return np.lexsort((np.arange(scores.shape[0]), -scores)).astype(np.int32)
