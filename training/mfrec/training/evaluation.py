"""Offline evaluation: the rating and top-k ranking protocols of shared EVALUATION.md.

Splits are deterministic (numpy's default_rng, seed 42) and defined on row positions in file
order, so every model, peer library and benchmark sees the same train and test rows. Ranking
metrics are vectorized: users are scored in chunks with one matrix product, train items are
masked to -inf, and `argpartition` picks the top k; ties go to the lower item index.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from mfrec.training.config import ALS_IMPLICIT, TrainingConfig
from mfrec.training.factors import Factors
from mfrec.training.interactions import Interactions, index_ratings
from mfrec.training.loaders import load_ratings
from mfrec.training.models import fit_model
from mfrec.training.popularity import Popularity, item_popularity

SEED = 42
TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.1
K = 10
# Ranking split: users with at least this many rows hold out n_u // RANKING_TEST_DIVISOR.
RANKING_MIN_ROWS = 5
RANKING_TEST_DIVISOR = 5
# The cold slice: users with at most this many training interactions.
COLD_MAX_TRAIN = 5
RANKING_METRICS = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k", "coverage")
# Dataset name -> (ratings file under the data home, loaders format).
DATASETS = {
    "ml-100k": ("ml-100k/u.data", "ml-100k"),
    "ml-latest-small": ("ml-latest-small/ratings.csv", "ml-csv"),
}
_INTEGER_ID = re.compile(r"^[+-]?\d+$")
_CHUNK_CELLS = 1 << 23

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
# A scoring function: user indices (m,) in, a score for every item (m x n_items) out.
Scorer = Callable[[IntArray], FloatArray]
Model = Factors | Popularity | Scorer


# --- splits -------------------------------------------------------------------------------


def rating_split(
    n_rows: int, seed: int = SEED, test_fraction: float = TEST_FRACTION
) -> tuple[IntArray, IntArray]:
    """Splits row positions 0..n_rows-1 at random into sorted (train_rows, test_rows).

    perm = default_rng(seed).permutation(n_rows); the first round(test_fraction * n_rows)
    positions of perm are the test rows.
    """
    perm = np.random.default_rng(seed).permutation(n_rows)
    n_test = round(test_fraction * n_rows)
    return np.sort(perm[n_test:]).astype(np.int64), np.sort(perm[:n_test]).astype(np.int64)


def validation_split(
    train_rows: IntArray, seed: int = SEED, fraction: float = VALIDATION_FRACTION
) -> tuple[IntArray, IntArray]:
    """Splits the train rows again by the rating recipe, on positions inside train_rows.

    Returns (fit_rows, validation_rows) as row numbers of the original frame.
    """
    fit, held_out = rating_split(len(train_rows), seed, fraction)
    return train_rows[fit], train_rows[held_out]


def ranking_split(frame: pd.DataFrame, seed: int = SEED) -> tuple[IntArray, IntArray]:
    """Holds out n_u // 5 of each user's rows (users with >= 5 rows) as test.

    One rng serves every user, in ascending order of the user id as read: numeric order when
    every id is an integer (MovieLens: 1, 2, ..., 943), else lexicographic order of the
    strings. A user's rows are taken in file order and rng.choice(n_u, n_u // 5,
    replace=False) picks the test positions among them. MovieLens 100K: 80,367 / 19,633.

    Returns:
        (train_rows, test_rows), sorted row positions of the frame.
    """
    codes, uniques = pd.factorize(frame["user_id"].astype(str), sort=False)
    grouped = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=len(uniques))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rng = np.random.default_rng(seed)
    test_parts = [np.empty(0, dtype=np.int64)]
    for code in _ascending_ids(list(uniques)):
        n_rows = int(counts[code])
        if n_rows >= RANKING_MIN_ROWS:
            picked = rng.choice(n_rows, n_rows // RANKING_TEST_DIVISOR, replace=False)
            test_parts.append(grouped[starts[code] + picked])
    test = np.sort(np.concatenate(test_parts)).astype(np.int64)
    return np.setdiff1d(np.arange(len(frame), dtype=np.int64), test), test


def ranking_validation_split(
    frame: pd.DataFrame, train_rows: IntArray, seed: int = SEED
) -> tuple[IntArray, IntArray]:
    """Applies the ranking recipe to the train rows only; returns (fit_rows, validation_rows)."""
    fit, held_out = ranking_split(frame.iloc[train_rows], seed)
    return train_rows[fit], train_rows[held_out]


def _ascending_ids(ids: list[str]) -> list[int]:
    """Returns the positions of ids in ascending id order (numeric if all are integers)."""
    if all(_INTEGER_ID.match(value) for value in ids):
        return sorted(range(len(ids)), key=lambda j: int(ids[j]))
    return sorted(range(len(ids)), key=lambda j: ids[j])


# --- held-out data ------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Train interactions plus test rows mapped into the train vocabulary (-1 = unseen).

    Attributes:
        train: the train rows, indexed by first appearance, values = the ratings.
        test_user_index, test_item_index: each test row's indices (int64; -1 when unseen).
        test_values: each test row's rating (float64).
        n_catalog: distinct items in the whole frame (the coverage denominator).
    """

    train: Interactions
    test_user_index: IntArray
    test_item_index: IntArray
    test_values: FloatArray
    n_catalog: int


def split_frame(frame: pd.DataFrame, train_rows: IntArray, test_rows: IntArray) -> Split:
    """Indexes the train rows and maps the test rows onto their vocabulary.

    Users and items are indexed in ascending id order (as in ranking_split), so ranking ties
    broken by the lower item index are broken by the lower item id: this reproduces the
    reference popularity figures (NDCG@10 0.2221 by id against 0.2226 by first appearance for
    the count ranking on MovieLens 100K, reference 0.2223; 0.0007 for mean-then-count, exact).
    """
    train = index_in_id_order(frame.iloc[train_rows])
    test = frame.iloc[test_rows]
    users = pd.Index(train.user_ids).get_indexer(pd.Index(test["user_id"].astype(str)))
    items = pd.Index(train.item_ids).get_indexer(pd.Index(test["item_id"].astype(str)))
    return Split(
        train=train,
        test_user_index=users.astype(np.int64),
        test_item_index=items.astype(np.int64),
        test_values=test["rating"].to_numpy(dtype=np.float64),
        n_catalog=int(frame["item_id"].nunique()),
    )


def index_in_id_order(frame: pd.DataFrame) -> Interactions:
    """Like interactions.index_ratings, but indices follow ascending id order."""
    by_appearance = index_ratings(frame)
    user_order = _ascending_ids(by_appearance.user_ids)
    item_order = _ascending_ids(by_appearance.item_ids)
    return Interactions(
        user_ids=[by_appearance.user_ids[j] for j in user_order],
        item_ids=[by_appearance.item_ids[j] for j in item_order],
        user_index=_inverse(user_order)[by_appearance.user_index],
        item_index=_inverse(item_order)[by_appearance.item_index],
        values=by_appearance.values,
    )


def _inverse(order: list[int]) -> npt.NDArray[np.int32]:
    inverse = np.empty(len(order), dtype=np.int32)
    inverse[np.asarray(order, dtype=np.int64)] = np.arange(len(order), dtype=np.int32)
    return inverse


def with_unit_values(data: Interactions) -> Interactions:
    """Returns the same interactions with every value 1 (the implicit view of ratings)."""
    ones = np.ones(data.n_ratings, dtype=np.float32)
    return Interactions(data.user_ids, data.item_ids, data.user_index, data.item_index, ones)


# --- rating metrics -----------------------------------------------------------------------


def rating_errors(
    predicted: FloatArray, actual: FloatArray, rating_range: tuple[float, float]
) -> dict[str, float]:
    """Returns RMSE and MAE of predictions clipped to rating_range (low, high)."""
    diff = np.clip(predicted, rating_range[0], rating_range[1]) - actual
    return {"rmse": float(np.sqrt(np.mean(diff * diff))), "mae": float(np.mean(np.abs(diff)))}


def rating_metrics(factors: Factors, split: Split) -> dict[str, float]:
    """Scores every test row; unseen users or items get the model's fallback (mean + bias)."""
    predicted = factors.predict(split.test_user_index, split.test_item_index)
    values = split.train.values
    return rating_errors(predicted, split.test_values, (float(values.min()), float(values.max())))


# --- ranking ------------------------------------------------------------------------------


def as_scorer(model: Model) -> Scorer:
    """Turns Factors, a Popularity ranking or a scoring function into a scoring function.

    Factors score item_factors @ user_vector + item_bias (the user's own terms do not change
    its ranking). A popularity ranking gives every user the same list: its scores are ranks.
    """
    if isinstance(model, Factors):
        items = model.item_factors.astype(np.float64)
        bias = model.item_bias.astype(np.float64)
        users = model.user_factors
        return lambda index: users[index].astype(np.float64) @ items.T + bias
    if isinstance(model, Popularity):
        ranks = np.empty(model.order.shape[0], dtype=np.float64)
        ranks[model.order] = np.arange(model.order.shape[0], 0, -1)
        return lambda index: np.tile(ranks, (index.shape[0], 1))
    return model


def top_k(scores: FloatArray, k: int = K) -> IntArray:
    """Returns each row's k best columns, best first; ties go to the lower column; -inf is -1.

    argpartition finds k columns; rows whose k-th score is tied beyond the cut fall back to
    a stable full sort, so the result never depends on argpartition's arbitrary tie choice.
    """
    n_rows, n_cols = scores.shape
    width = min(k, n_cols)
    top = np.full((n_rows, k), -1, dtype=np.int64)
    if width == 0 or n_rows == 0:
        return top
    picked = np.argpartition(-scores, width - 1, axis=1)[:, :width]
    values = np.take_along_axis(scores, picked, axis=1)
    kth = values.min(axis=1, keepdims=True)
    tied = (scores > kth).sum(axis=1) + (scores == kth).sum(axis=1) > width
    if tied.any():
        picked[tied] = np.argsort(-scores[tied], axis=1, kind="stable")[:, :width]
        values[tied] = np.take_along_axis(scores[tied], picked[tied], axis=1)
    order = np.lexsort((picked, -values), axis=1)
    best = np.take_along_axis(picked, order, axis=1)
    top[:, :width] = np.where(np.take_along_axis(values, order, axis=1) > -np.inf, best, -1)
    return top


@dataclass(frozen=True)
class UserMetrics:
    """Per evaluated user (>= 1 test item): the top-k list and its four per-user metrics."""

    users: IntArray
    top: IntArray
    precision: FloatArray
    recall: FloatArray
    ndcg: FloatArray
    average_precision: FloatArray


def rank_users(
    model: Model,
    seen: sp.csr_matrix,
    candidates: npt.NDArray[np.bool_],
    test_user_index: IntArray,
    test_item_index: IntArray,
    k: int = K,
) -> UserMetrics:
    """Ranks candidates minus each user's seen items and scores the lists against the test.

    Args:
        model: Factors, a Popularity ranking or a scoring function.
        seen: users x items matrix of each user's train items (excluded from its list).
        candidates: the items that may be recommended at all (those occurring in train).
        test_user_index, test_item_index: test pairs; an item of -1 (not in train) counts in
            |test_u| but can never be hit; rows with a user of -1 are dropped.
        k: the list length.
    """
    scorer = as_scorer(model)
    known = test_user_index >= 0
    users_all, items_all = test_user_index[known], test_item_index[known]
    n_users, n_items = seen.shape
    n_test = np.bincount(users_all, minlength=n_users)
    hittable = items_all >= 0
    ones = np.ones(int(hittable.sum()), dtype=bool)
    test = sp.csr_matrix(
        (ones, (users_all[hittable], items_all[hittable])), shape=(n_users, n_items), dtype=bool
    )
    users = np.flatnonzero(n_test > 0).astype(np.int64)
    top = np.full((users.shape[0], k), -1, dtype=np.int64)
    hits = np.zeros((users.shape[0], k), dtype=bool)
    chunk = max(1, _CHUNK_CELLS // max(1, n_items))
    for start in range(0, users.shape[0], chunk):
        block = users[start : start + chunk]
        scores = np.array(scorer(block), dtype=np.float64)
        scores[:, ~candidates] = -np.inf
        mask = seen[block].tocoo()
        scores[mask.row, mask.col] = -np.inf
        lists = top_k(scores, k)
        truth = test[block].toarray()
        top[start : start + chunk] = lists
        hits[start : start + chunk] = np.take_along_axis(truth, np.maximum(lists, 0), 1) & (
            lists >= 0
        )
    return _user_metrics(users, top, hits, n_test[users])


def _user_metrics(
    users: IntArray, top: IntArray, hits: npt.NDArray[np.bool_], n_test: IntArray
) -> UserMetrics:
    """precision = h/k; recall = h/|T|; NDCG = DCG / ideal DCG over min(k, |T|) ranks;
    AP = sum over hits at rank r of (hits so far / r), over min(k, |T|)."""
    k = top.shape[1]
    ranks = np.arange(1, k + 1, dtype=np.float64)
    discounts = 1.0 / np.log2(ranks + 1.0)
    depth = np.minimum(k, n_test)
    count = hits.sum(axis=1).astype(np.float64)
    ideal = np.cumsum(discounts)[np.maximum(depth, 1) - 1]
    precision_at_r = np.cumsum(hits, axis=1) / ranks
    return UserMetrics(
        users=users,
        top=top,
        precision=count / k,
        recall=count / np.maximum(n_test, 1),
        ndcg=(hits * discounts).sum(axis=1) / ideal,
        average_precision=(hits * precision_at_r).sum(axis=1) / np.maximum(depth, 1),
    )


def summarize(
    metrics: UserMetrics, selected: npt.NDArray[np.bool_], n_catalog: int
) -> dict[str, float | None]:
    """Averages the selected users' metrics; coverage is their distinct listed items / catalog.

    Every figure is None when no user is selected.
    """
    if not selected.any():
        return dict.fromkeys(RANKING_METRICS)
    listed = metrics.top[selected]
    return {
        "precision_at_k": float(metrics.precision[selected].mean()),
        "recall_at_k": float(metrics.recall[selected].mean()),
        "ndcg_at_k": float(metrics.ndcg[selected].mean()),
        "map_at_k": float(metrics.average_precision[selected].mean()),
        "coverage": float(np.unique(listed[listed >= 0]).shape[0] / max(1, n_catalog)),
    }


def ranking_report(model: Model, split: Split, k: int = K) -> dict[str, Any]:
    """The five ranking metrics over all evaluated users and over the cold slice."""
    train = split.train
    seen = with_unit_values(train).user_item_matrix()
    candidates = np.bincount(train.item_index, minlength=train.n_items) > 0
    metrics = rank_users(model, seen, candidates, split.test_user_index, split.test_item_index, k)
    train_counts = np.diff(seen.indptr)[metrics.users]
    cold = train_counts <= COLD_MAX_TRAIN
    everyone = np.ones(metrics.users.shape[0], dtype=bool)
    report: dict[str, Any] = summarize(metrics, everyone, split.n_catalog)
    report["cold"] = {**summarize(metrics, cold, split.n_catalog), "users": int(cold.sum())}
    report["k"] = k
    report["evaluated_users"] = int(metrics.users.shape[0])
    return report


def ranking_metrics(
    factors: Factors,
    train: Interactions,
    test_user_index: npt.NDArray[np.integer],
    test_item_index: npt.NDArray[np.integer],
    k: int = K,
) -> dict[str, float]:
    """Top-k metrics of a model on held-out pairs already indexed in train's vocabulary.

    Candidates are the items occurring in train minus each user's train items; coverage is
    over train's whole item vocabulary. Keys: "precision@k", "recall@k", "ndcg@k", "map@k",
    "coverage" (with k written out, e.g. "ndcg@10"); NaN when no user has a test item.
    """
    split = Split(
        train=train,
        test_user_index=np.asarray(test_user_index, dtype=np.int64),
        test_item_index=np.asarray(test_item_index, dtype=np.int64),
        test_values=np.zeros(len(test_user_index)),
        n_catalog=train.n_items,
    )
    report = ranking_report(factors, split, k)
    names = ("precision", "recall", "ndcg", "map")
    result = {f"{name}@{k}": report[f"{name}_at_k"] for name in names}
    result["coverage"] = report["coverage"]
    return {key: math.nan if value is None else float(value) for key, value in result.items()}


# --- protocols ----------------------------------------------------------------------------


def evaluate(
    frame: pd.DataFrame,
    protocol: str,
    config: TrainingConfig,
    popularity_method: str | None = None,
) -> dict[str, Any]:
    """Fits config's model on the protocol's train rows and scores it on the test rows.

    In the ranking protocol als-implicit sees every rating as 1; the explicit models fit the
    ratings and rank by predicted score. popularity_method (ranking only) adds that
    popularity ranking's figures on the same split under "popularity".

    Raises:
        ValueError: unknown protocol, a rating protocol for als-implicit, or
            popularity_method with the rating protocol.
    """
    config = config.resolved()
    if protocol == "rating":
        if config.algorithm == ALS_IMPLICIT:
            raise ValueError("als-implicit scores rankings, not ratings: use protocol ranking")
        if popularity_method is not None:
            raise ValueError("popularity_method applies to the ranking protocol only")
        split = split_frame(frame, *rating_split(len(frame)))
        factors, seconds = _timed_fit(split.train, config)
        result: dict[str, Any] = rating_metrics(factors, split)
    elif protocol == "ranking":
        split = split_frame(frame, *ranking_split(frame))
        train = split.train if config.algorithm != ALS_IMPLICIT else with_unit_values(split.train)
        factors, seconds = _timed_fit(train, config)
        result = ranking_report(factors, split)
        if popularity_method is not None:
            result["popularity"] = _popularity_report(split, popularity_method)
    else:
        raise ValueError("protocol must be rating or ranking")
    return {
        **result,
        **_counts(protocol, split),
        "fit_seconds": seconds,
        "config": config.to_dict(),
    }


def evaluate_popularity(frame: pd.DataFrame, method: str) -> dict[str, Any]:
    """Scores one popularity method (see popularity.METHODS) on the ranking protocol."""
    split = split_frame(frame, *ranking_split(frame))
    started = time.perf_counter()
    popularity_report = _popularity_report(split, method)
    seconds = time.perf_counter() - started
    return {**popularity_report, **_counts("ranking", split), "fit_seconds": seconds}


def _popularity_report(split: Split, method: str) -> dict[str, Any]:
    train = split.train
    popularity = item_popularity(train.item_index, train.values, train.n_items, method)
    return {**ranking_report(popularity, split), "method": method}


def _timed_fit(data: Interactions, config: TrainingConfig) -> tuple[Factors, float]:
    started = time.perf_counter()
    factors = fit_model(data, config)
    return factors, time.perf_counter() - started


def _counts(protocol: str, split: Split) -> dict[str, Any]:
    return {
        "protocol": protocol,
        "train_rows": split.train.n_ratings,
        "test_rows": int(split.test_user_index.shape[0]),
    }


def format_table(result: dict[str, Any]) -> str:
    """Renders an evaluate / evaluate_popularity result as a small text table."""
    name = result.get("method") or result.get("config", {}).get("algorithm", "model")
    head = (
        f"{name}, {result['protocol']} protocol: {result['train_rows']:,} train / "
        f"{result['test_rows']:,} test rows, fit {result['fit_seconds']:.2f} s"
    )
    if result["protocol"] == "rating":
        return f"{head}\n  RMSE {result['rmse']:.4f}  MAE {result['mae']:.4f}"
    k = result["k"]
    lines = [
        head,
        f"  {'users':<22}"
        + "".join(
            f"{label:>12}" for label in (f"P@{k}", f"R@{k}", f"NDCG@{k}", f"MAP@{k}", "coverage")
        ),
    ]
    lines.append(_table_row(f"all ({result['evaluated_users']})", result))
    cold = result["cold"]
    if cold["users"]:
        lines.append(_table_row(f"cold <= {COLD_MAX_TRAIN} ({cold['users']})", cold))
    else:
        lines.append(f"  no users with <= {COLD_MAX_TRAIN} training interactions (cold: n/a)")
    return "\n".join(lines)


def _table_row(label: str, figures: dict[str, Any]) -> str:
    return f"  {label:<22}" + "".join(f"{figures[name]:>12.4f}" for name in RANKING_METRICS)


# --- data ---------------------------------------------------------------------------------


def data_home() -> Path:
    """Returns MFREC_DATA_HOME, or ~/.cache/mfrec when it is unset."""
    return Path(os.environ.get("MFREC_DATA_HOME") or Path.home() / ".cache" / "mfrec")


def dataset_path(name: str, home: Path | None = None) -> Path:
    """Returns the ratings file of a MovieLens dataset (see DATASETS) under the data home."""
    return (home or data_home()) / DATASETS[name][0]


def load_movielens(name: str, home: Path | None = None) -> pd.DataFrame:
    """Reads a MovieLens ratings file in file order: user_id, item_id (str), rating, timestamp."""
    return load_ratings(dataset_path(name, home), DATASETS[name][1])
