"""The evaluation protocols on MovieLens reproduce the reference splits and popularity figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mfrec.training.evaluation import (
    evaluate_popularity,
    ranking_split,
    rating_split,
    split_frame,
)

pytestmark = pytest.mark.realdata

# The reference figures of shared EVALUATION.md, measured by other libraries on these splits.
REFERENCE_TOLERANCE = 0.002


def test_ml100k_reads_in_file_order(ml100k: pd.DataFrame) -> None:
    assert len(ml100k) == 100_000
    assert ml100k["user_id"].nunique() == 943 and ml100k["item_id"].nunique() == 1682
    assert ml100k.iloc[0][["user_id", "item_id"]].tolist() == ["196", "242"]


def test_ml100k_rating_split(ml100k: pd.DataFrame) -> None:
    train, test = rating_split(len(ml100k))
    assert (train.size, test.size) == (80_000, 20_000)
    split = split_frame(ml100k, train, test)
    assert int((split.test_item_index < 0).sum()) == 36


def test_latest_small_rating_split(latest_small: pd.DataFrame) -> None:
    train, test = rating_split(len(latest_small))
    assert (train.size, test.size) == (80_669, 20_167)
    split = split_frame(latest_small, train, test)
    assert int((split.test_item_index < 0).sum()) == 798


def test_ml100k_ranking_split(ml100k: pd.DataFrame) -> None:
    train, test = ranking_split(ml100k)
    assert (train.size, test.size) == (80_367, 19_633)
    assert np.unique(ml100k["user_id"].to_numpy()[test]).size == 943


@pytest.mark.parametrize(
    ("method", "ndcg", "precision"),
    [("count", 0.2223, 0.1928), ("mean-then-count", 0.0007, None)],
)
def test_ml100k_popularity_matches_the_reference(
    ml100k: pd.DataFrame, method: str, ndcg: float, precision: float | None
) -> None:
    result = evaluate_popularity(ml100k, method)
    assert result["evaluated_users"] == 943
    assert result["ndcg_at_k"] == pytest.approx(ndcg, abs=REFERENCE_TOLERANCE)
    if precision is not None:
        assert result["precision_at_k"] == pytest.approx(precision, abs=REFERENCE_TOLERANCE)


def test_latest_small_most_popular_matches_the_reference(latest_small: pd.DataFrame) -> None:
    result = evaluate_popularity(latest_small, "count")
    assert result["ndcg_at_k"] == pytest.approx(0.1873, abs=REFERENCE_TOLERANCE)
