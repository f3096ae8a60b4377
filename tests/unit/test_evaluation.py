"""Evaluation protocols: splits, rating and ranking metrics against hand-worked figures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mfrec.training.config import TrainingConfig
from mfrec.training.evaluation import (
    Scorer,
    Split,
    as_scorer,
    evaluate,
    evaluate_popularity,
    format_table,
    index_in_id_order,
    rank_users,
    ranking_metrics,
    ranking_report,
    ranking_split,
    ranking_validation_split,
    rating_errors,
    rating_metrics,
    rating_split,
    top_k,
    validation_split,
)
from mfrec.training.factors import Factors
from mfrec.training.interactions import Interactions
from mfrec.training.popularity import Popularity

LOG2_3 = math.log2(3.0)


def _interactions(users: list[int], items: list[int], n_users: int, n_items: int) -> Interactions:
    return Interactions(
        user_ids=[f"u{u}" for u in range(n_users)],
        item_ids=[f"i{i}" for i in range(n_items)],
        user_index=np.asarray(users, dtype=np.int32),
        item_index=np.asarray(items, dtype=np.int32),
        values=np.ones(len(users), dtype=np.float32),
    )


def _fixed_scores(table: list[list[float]]) -> Scorer:
    scores = np.asarray(table, dtype=np.float64)
    return lambda users: scores[users]


def _split(
    train: Interactions, test_users: list[int], test_items: list[int], n_catalog: int
) -> Split:
    return Split(
        train=train,
        test_user_index=np.asarray(test_users, dtype=np.int64),
        test_item_index=np.asarray(test_items, dtype=np.int64),
        test_values=np.zeros(len(test_users)),
        n_catalog=n_catalog,
    )


def _ratings_frame(rows_per_user: dict[str, int]) -> pd.DataFrame:
    users, items = [], []
    for user, n_rows in rows_per_user.items():
        users += [user] * n_rows
        items += [f"m{j}" for j in range(n_rows)]
    n = len(users)
    return pd.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "rating": (np.arange(n) % 5 + 1).astype(np.float64),
            "timestamp": np.arange(n),
        }
    )


# --- splits -------------------------------------------------------------------------------


def test_rating_split_follows_the_recipe() -> None:
    train, test = rating_split(1001)
    perm = np.random.default_rng(42).permutation(1001)
    # round(0.2 * 1001) = round(200.2) = 200 test rows.
    assert test.tolist() == sorted(perm[:200].tolist())
    assert train.tolist() == sorted(perm[200:].tolist())
    assert np.array_equal(rating_split(1001)[1], test)


def test_validation_split_is_ninety_ten_inside_train() -> None:
    train, _ = rating_split(1000)
    fit, held_out = validation_split(train)
    assert (fit.size, held_out.size) == (720, 80)
    assert set(fit) | set(held_out) == set(train) and not set(fit) & set(held_out)
    perm = np.random.default_rng(42).permutation(800)
    assert held_out.tolist() == train[np.sort(perm[:80])].tolist()


def test_ranking_split_holds_out_a_fifth_of_users_with_five_rows() -> None:
    # "a" has 4 rows (kept whole), "b" 5 rows (1 test), "c" 12 rows (12 // 5 = 2 test).
    frame = _ratings_frame({"c": 12, "a": 4, "b": 5})
    train, test = ranking_split(frame)
    assert test.size == 3 and train.size == 18
    users = frame["user_id"].to_numpy()
    assert sorted(users[test].tolist()) == ["b", "c", "c"]
    assert np.array_equal(ranking_split(frame)[1], test)


def test_ranking_split_visits_numeric_ids_in_numeric_order() -> None:
    # Numeric order 2, 9, 10 (lexicographic would be 10, 2, 9); the rng draws once per user.
    frame = _ratings_frame({"10": 6, "9": 7, "2": 5})
    rng = np.random.default_rng(42)
    expected = []
    for start, n_rows in ((13, 5), (6, 7), (0, 6)):  # users "2", "9", "10"
        expected += (start + rng.choice(n_rows, n_rows // 5, replace=False)).tolist()
    assert ranking_split(frame)[1].tolist() == sorted(expected)


def test_ranking_split_visits_string_ids_in_lexicographic_order() -> None:
    frame = _ratings_frame({"b": 6, "a10": 7, "a9": 5})
    rng = np.random.default_rng(42)
    expected = []
    for start, n_rows in ((6, 7), (13, 5), (0, 6)):  # "a10" < "a9" < "b"
        expected += (start + rng.choice(n_rows, n_rows // 5, replace=False)).tolist()
    assert ranking_split(frame)[1].tolist() == sorted(expected)


def test_ranking_validation_split_stays_inside_train() -> None:
    frame = _ratings_frame({"1": 30, "2": 25})
    train, _ = ranking_split(frame)
    fit, held_out = ranking_validation_split(frame, train)
    # Train keeps 24 and 20 rows; validation takes 24 // 5 + 20 // 5 = 8 of them.
    assert held_out.size == 8 and fit.size == 36
    assert set(fit) | set(held_out) == set(train)


def test_index_in_id_order_sorts_numeric_ids_numerically() -> None:
    frame = pd.DataFrame({"user_id": ["10", "2"], "item_id": ["7", "30"], "rating": [1.0, 2.0]})
    data = index_in_id_order(frame)
    assert data.user_ids == ["2", "10"] and data.item_ids == ["7", "30"]
    assert data.user_index.tolist() == [1, 0] and data.item_index.tolist() == [0, 1]


# --- rating metrics -----------------------------------------------------------------------


def test_rating_errors_by_hand() -> None:
    # Errors 0.5, -1, 0 (the 7 is clipped to 5): RMSE sqrt(1.25 / 3) = 0.6455, MAE 0.5.
    result = rating_errors(np.array([3.5, 2.0, 7.0]), np.array([3.0, 3.0, 5.0]), (1.0, 5.0))
    assert result["rmse"] == pytest.approx(math.sqrt(1.25 / 3))
    assert result["mae"] == pytest.approx(0.5)


def test_rating_metrics_use_the_fallback_and_clip() -> None:
    factors = Factors(
        user_factors=np.array([[2.0]], dtype=np.float32),
        item_factors=np.array([[2.0]], dtype=np.float32),
        user_bias=np.array([0.5], dtype=np.float32),
        item_bias=np.array([0.25], dtype=np.float32),
        global_mean=3.0,
    )
    # Train ratings span 1..4, so predictions are clipped to [1, 4].
    train = Interactions(
        ["u"],
        ["i"],
        np.array([0, 0], np.int32),
        np.array([0, 0], np.int32),
        np.array([1.0, 4.0], np.float32),
    )
    split = Split(train, np.array([0, 0, -1]), np.array([0, -1, 0]), np.array([4.0, 3.0, 3.0]), 1)
    # Known pair 3 + 0.5 + 0.25 + 4 = 7.75, clipped to the train maximum 4: error 0.
    # Unseen item: 3 + 0.5 = 3.5, error 0.5. Unseen user: 3 + 0.25 = 3.25, error 0.25.
    result = rating_metrics(factors, split)
    assert result["mae"] == pytest.approx(0.75 / 3)
    assert result["rmse"] == pytest.approx(math.sqrt((0.25 + 0.0625) / 3))


# --- ranking metrics ----------------------------------------------------------------------


def test_ranking_metrics_by_hand_at_k3() -> None:
    # User 0: item 0 in train, so its list is 1, 2, 3; test {2, 4, 5} -> one hit at rank 2.
    #   P = 1/3, R = 1/3, NDCG = (1/log2 3) / (1 + 1/log2 3 + 1/2), AP = (1/2) / 3.
    # User 1: item 5 in train; list 0, 1, 2; test {0} -> hit at rank 1: P 1/3, R 1, NDCG 1, AP 1.
    train = _interactions([0, 1], [0, 5], 2, 6)
    scores = _fixed_scores([[9, 8, 7, 6, 5, 1], [9, 8, 7, 6, 5, 10]])
    metrics = rank_users(
        scores,
        train.user_item_matrix(),
        np.ones(6, bool),
        np.array([0, 0, 0, 1]),
        np.array([2, 4, 5, 0]),
        k=3,
    )
    assert metrics.top.tolist() == [[1, 2, 3], [0, 1, 2]]
    assert metrics.precision.tolist() == pytest.approx([1 / 3, 1 / 3])
    assert metrics.recall.tolist() == pytest.approx([1 / 3, 1.0])
    ndcg_0 = (1 / LOG2_3) / (1 + 1 / LOG2_3 + 0.5)
    assert ndcg_0 == pytest.approx(0.29608, abs=1e-5)
    assert metrics.ndcg.tolist() == pytest.approx([ndcg_0, 1.0])
    assert metrics.average_precision.tolist() == pytest.approx([1 / 6, 1.0])


def test_ranking_metrics_by_hand_at_k10() -> None:
    # 12 items; user 1 has all of them in train, user 0 only item 11. User 0's scores 12..1
    # give the list 0..9; test {0, 2}: hits at ranks 1 and 3 of 10.
    # P = 2/10; R = 1; DCG = 1 + 1/2; ideal = 1 + 1/log2 3 -> NDCG 0.91972; AP = (1 + 2/3) / 2;
    # coverage = 10 listed items / 12.
    train = _interactions([0] + [1] * 12, [11, *range(12)], 2, 12)
    scores = _fixed_scores([list(range(12, 0, -1)), [0] * 12])
    report = ranking_report(scores, _split(train, [0, 0], [0, 2], 12))
    assert report["precision_at_k"] == pytest.approx(0.2)
    assert report["recall_at_k"] == pytest.approx(1.0)
    assert report["ndcg_at_k"] == pytest.approx(1.5 / (1 + 1 / LOG2_3))
    assert report["ndcg_at_k"] == pytest.approx(0.91972, abs=1e-5)
    assert report["map_at_k"] == pytest.approx((1 + 2 / 3) / 2)
    assert report["coverage"] == pytest.approx(10 / 12)


def test_candidates_are_the_items_occurring_in_train() -> None:
    # Items 0..3 occur in train (user 1); item 4 never does, so it is never listed.
    train = _interactions([1, 1, 1, 1, 0], [0, 1, 2, 3, 0], 2, 5)
    scores = _fixed_scores([[1, 2, 3, 4, 99], [0, 0, 0, 0, 0]])
    split = _split(train, [0], [3], 5)
    metrics = rank_users(
        scores,
        train.user_item_matrix(),
        np.array([1, 1, 1, 1, 0], bool),
        split.test_user_index,
        split.test_item_index,
        k=10,
    )
    # User 0 saw item 0: its list is 3, 2, 1 then padding (-1); hit at rank 1.
    assert metrics.top[0].tolist() == [3, 2, 1] + [-1] * 7
    assert metrics.ndcg[0] == pytest.approx(1.0)
    report = ranking_report(scores, split)
    assert report["ndcg_at_k"] == pytest.approx(1.0)
    assert report["coverage"] == pytest.approx(3 / 5)


def test_unseen_test_items_count_in_recall_but_never_hit() -> None:
    # Test {1, unseen}: hit at rank 1, |T| = 2 -> R = 1/2, ideal over 2 ranks.
    train = _interactions([0, 1, 1], [0, 1, 2], 2, 3)
    split = _split(train, [0, 0], [1, -1], 3)
    report = ranking_report(_fixed_scores([[0, 5, 1], [0, 0, 0]]), split)
    assert report["recall_at_k"] == pytest.approx(0.5)
    assert report["ndcg_at_k"] == pytest.approx(1 / (1 + 1 / LOG2_3))
    assert report["map_at_k"] == pytest.approx(0.5)


def test_ties_go_to_the_lower_item_index() -> None:
    scores = np.array([[1.0, 2.0, 2.0, 2.0, 0.0], [5.0, 5.0, 5.0, 5.0, 5.0]])
    assert top_k(scores, 2).tolist() == [[1, 2], [0, 1]]
    assert top_k(scores, 4).tolist() == [[1, 2, 3, 0], [0, 1, 2, 3]]
    assert top_k(np.array([[3.0, -np.inf, 3.0]]), 4).tolist() == [[0, 2, -1, -1]]


def test_top_k_matches_a_stable_sort_on_random_ties() -> None:
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 4, size=(50, 30)).astype(np.float64)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    assert np.array_equal(top_k(scores, 10), expected)


def test_popularity_gives_every_user_the_same_list_minus_its_own() -> None:
    # Popularity order 2, 0, 3, 1; user 0 saw item 2, user 1 saw item 3.
    popularity = Popularity(order=np.array([2, 0, 3, 1], np.int32), scores=np.zeros(4, np.float32))
    train = _interactions([0, 1, 1, 1], [2, 3, 0, 1], 2, 4)
    metrics = rank_users(
        popularity,
        train.user_item_matrix(),
        np.ones(4, bool),
        np.array([0, 1]),
        np.array([0, 2]),
        k=2,
    )
    assert metrics.top.tolist() == [[0, 3], [2, -1]]


def test_factors_scorer_ranks_by_dot_product_plus_item_bias() -> None:
    factors = Factors(
        user_factors=np.array([[1.0, 0.0]], np.float32),
        item_factors=np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.0]], np.float32),
        user_bias=np.array([100.0], np.float32),
        item_bias=np.array([0.0, 2.0, 0.0], np.float32),
        global_mean=3.0,
    )
    # Scores 1, 2, 0.5 (the user's bias and the global mean do not change the order).
    assert as_scorer(factors)(np.array([0])).tolist() == [[1.0, 2.0, 0.5]]


def test_cold_slice_holds_users_with_at_most_five_train_items() -> None:
    # User 0 has 6 train items, user 1 has 2; both have test item 9 (scored highest).
    users = [0] * 6 + [1] * 2 + [2] * 10
    items = list(range(6)) + [0, 1] + list(range(10))
    train = _interactions(users, items, 3, 10)
    scores = _fixed_scores([[0] * 9 + [1], [0] * 9 + [1], [0] * 10])
    split = _split(train, [0, 1], [9, 9], 10)
    report = ranking_report(scores, split)
    assert report["cold"]["users"] == 1 and report["evaluated_users"] == 2
    # User 1's list: 9, then its unseen items 2..8 by index (8 items in all, then padding).
    assert report["cold"]["ndcg_at_k"] == pytest.approx(1.0)
    assert report["cold"]["coverage"] == pytest.approx(8 / 10)


def test_cold_slice_is_none_without_cold_users() -> None:
    train = _interactions([0] * 6 + [1], list(range(6)) + [0], 2, 8)
    report = ranking_report(_fixed_scores([[0] * 8, [0] * 8]), _split(train, [0], [6], 8))
    assert report["cold"]["users"] == 0
    assert report["cold"]["ndcg_at_k"] is None
    assert "no users" in format_table(
        {**report, "protocol": "ranking", "train_rows": 7, "test_rows": 1, "fit_seconds": 0.0}
    )


def test_coverage_counts_distinct_listed_items_over_the_catalog() -> None:
    # Two users, k = 2 by hand: lists {0, 1} and {1, 2} -> 3 distinct items of a catalog of 6.
    train = _interactions([0, 1, 2, 2, 2], [3, 0, 0, 1, 2], 3, 4)
    scores = _fixed_scores([[3, 2, 1, 0], [3, 2, 1, 0], [0, 0, 0, 0]])
    metrics = rank_users(
        scores, train.user_item_matrix(), np.ones(4, bool), np.array([0, 1]), np.array([1, 2]), k=2
    )
    assert metrics.top.tolist() == [[0, 1], [1, 2]]
    split = _split(train, [0, 1], [1, 2], 6)
    assert ranking_report(scores, split, k=2)["coverage"] == pytest.approx(3 / 6)


def test_ranking_metrics_for_the_pipeline_uses_at_k_keys() -> None:
    factors = Factors(
        user_factors=np.eye(3, dtype=np.float32),
        item_factors=np.eye(3, dtype=np.float32),
        user_bias=np.zeros(3, np.float32),
        item_bias=np.zeros(3, np.float32),
        global_mean=0.0,
    )
    train = _interactions([0, 1, 2], [1, 2, 0], 3, 3)
    # Each user u scores item u highest and has not seen it: every list starts with a hit.
    result = ranking_metrics(factors, train, np.array([0, 1, 2]), np.array([0, 1, 2]))
    assert set(result) == {"precision@10", "recall@10", "ndcg@10", "map@10", "coverage"}
    assert result["ndcg@10"] == pytest.approx(1.0)
    assert result["precision@10"] == pytest.approx(0.1)
    empty = ranking_metrics(factors, train, np.array([], np.int64), np.array([], np.int64))
    assert math.isnan(empty["ndcg@10"])


# --- protocols ----------------------------------------------------------------------------


def _synthetic_frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    users, items = np.meshgrid(np.arange(30), np.arange(20), indexing="ij")
    keep = rng.random(users.shape) < 0.5
    users, items = users[keep], items[keep]
    ratings = 1.0 + ((users % 3 == items % 3) * 3.0) + rng.integers(0, 2, users.size)
    return pd.DataFrame(
        {
            "user_id": users.astype(str),
            "item_id": items.astype(str),
            "rating": ratings,
            "timestamp": np.arange(users.size, dtype=np.int64),
        }
    )


def test_evaluate_rating_protocol() -> None:
    frame = _synthetic_frame()
    result = evaluate(frame, "rating", TrainingConfig(factors=4, iterations=3))
    assert result["protocol"] == "rating"
    assert result["train_rows"] + result["test_rows"] == len(frame)
    assert 0 < result["mae"] <= result["rmse"] < 2
    assert result["config"]["factors"] == 4
    assert "RMSE" in format_table(result)


def test_evaluate_ranking_protocol_with_popularity() -> None:
    frame = _synthetic_frame()
    result = evaluate(
        frame, "ranking", TrainingConfig(factors=4, iterations=3), popularity_method="count"
    )
    assert result["k"] == 10 and result["protocol"] == "ranking"
    assert 0 <= result["ndcg_at_k"] <= 1 and 0 < result["coverage"] <= 1
    assert result["popularity"]["method"] == "count"
    assert "NDCG@10" in format_table(result)


def test_evaluate_refuses_bad_requests() -> None:
    frame = _synthetic_frame()
    with pytest.raises(ValueError, match="protocol"):
        evaluate(frame, "bogus", TrainingConfig())
    with pytest.raises(ValueError, match="ranking"):
        evaluate(frame, "rating", TrainingConfig(), popularity_method="count")


def test_evaluate_popularity_scores_each_method() -> None:
    frame = _synthetic_frame()
    for method in ("count", "mean-then-count", "damped-mean"):
        result = evaluate_popularity(frame, method)
        assert result["method"] == method and 0 <= result["precision_at_k"] <= 1


def test_evaluate_popularity_refuses_an_unknown_method() -> None:
    with pytest.raises(ValueError, match="popularity method"):
        evaluate_popularity(_synthetic_frame(), "loudest")


def test_rank_users_accepts_any_seen_matrix_shape() -> None:
    seen = sp.csr_matrix((2, 3), dtype=np.float32)
    metrics = rank_users(
        _fixed_scores([[1, 2, 3], [3, 2, 1]]),
        seen,
        np.ones(3, bool),
        np.array([1]),
        np.array([0]),
        k=1,
    )
    assert metrics.users.tolist() == [1] and metrics.top.tolist() == [[0]]
