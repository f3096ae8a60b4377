"""Popularity rankings: the damped-mean formula and its resistance to single top ratings."""

from __future__ import annotations

import numpy as np
import pytest

from mfrec.training.popularity import (
    COUNT,
    DAMPED_MEAN,
    MEAN_THEN_COUNT,
    item_popularity,
    prior_weight,
)


def _data() -> tuple[np.ndarray, np.ndarray]:
    # item 0: one 5-star rating; item 1: ten ratings of 4.5 on average; item 2: four 3s.
    items = np.array([0] + [1] * 10 + [2] * 4, dtype=np.int32)
    values = np.array([5.0] + [4.0, 5.0] * 5 + [3.0] * 4, dtype=np.float32)
    return items, values


def test_damped_mean_matches_the_formula() -> None:
    items, values = _data()
    result = item_popularity(items, values, 3, DAMPED_MEAN)
    m = prior_weight(np.array([1, 10, 4]))
    assert m == 4.0  # median of the per-item counts
    mean = values.mean()
    expected = [(5.0 + m * mean) / (1 + m), (45.0 + m * mean) / (10 + m), (12 + m * mean) / (4 + m)]
    assert result.scores.tolist() == pytest.approx(expected, rel=1e-6)
    assert result.order.tolist() == [1, 0, 2]


def test_single_top_rating_does_not_head_the_damped_list_but_heads_the_naive_one() -> None:
    items, values = _data()
    assert item_popularity(items, values, 3, DAMPED_MEAN).order[0] != 0
    assert item_popularity(items, values, 3, MEAN_THEN_COUNT).order[0] == 0


def test_count_ranking_breaks_ties_by_index() -> None:
    items = np.array([2, 2, 1, 1, 0], dtype=np.int32)
    result = item_popularity(items, np.ones(5, dtype=np.float32), 4, COUNT)
    assert result.order.tolist() == [1, 2, 0, 3]


def test_unknown_method_is_rejected() -> None:
    with pytest.raises(ValueError, match="popularity method"):
        item_popularity(np.zeros(1, dtype=np.int32), np.ones(1, dtype=np.float32), 1, "best")


def test_the_default_count_ranking_never_heads_with_a_single_rating() -> None:
    items, values = _data()
    assert item_popularity(items, values, 3).order.tolist() == [1, 2, 0]
