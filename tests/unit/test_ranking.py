"""Top-k selection: order, ties by index, masked items, and k beyond the eligible count."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfrec.server.ranking import score_buffer, top_k


def test_returns_best_first() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.7], dtype=np.float32)
    indices, values = top_k(scores, 3)
    assert indices.tolist() == [1, 3, 2]
    assert values.tolist() == pytest.approx([0.9, 0.7, 0.5])


def test_ties_are_ordered_by_index_even_outside_the_partition() -> None:
    scores = np.zeros(50, dtype=np.float32)
    scores[[40, 3, 17]] = 1.0
    indices, _ = top_k(scores, 5)
    assert indices.tolist() == [3, 17, 40, 0, 1]


def test_masked_items_are_never_returned_and_k_may_exceed_eligible() -> None:
    scores = np.array([3.0, 2.0, 1.0, 0.5], dtype=np.float32)
    scores[[0, 2]] = -np.inf
    indices, values = top_k(scores, 10)
    assert indices.tolist() == [1, 3]
    assert np.isfinite(values).all()


def test_zero_k_and_empty_catalog() -> None:
    assert top_k(np.ones(3, dtype=np.float32), 0)[0].size == 0
    assert top_k(np.empty(0, dtype=np.float32), 5)[0].size == 0


def test_score_buffer_is_reused_per_size() -> None:
    first = score_buffer(8)
    assert score_buffer(8) is first
    assert score_buffer(9).shape == (9,)


@given(
    st.lists(st.integers(min_value=-3, max_value=3), min_size=1, max_size=60),
    st.integers(min_value=1, max_value=70),
)
def test_matches_a_full_stable_sort(raw: list[int], k: int) -> None:
    scores = np.array(raw, dtype=np.float32)
    expected = sorted(range(len(raw)), key=lambda i: (-raw[i], i))[:k]
    assert top_k(scores, k)[0].tolist() == expected
