"""Quality benchmark: mfrec's models against peer libraries on the shared MovieLens splits.

Every model sees the same splits (mfrec.training.evaluation, shared EVALUATION.md): RMSE and MAE
on the rating split, the top-10 metrics on the ranking split, fit seconds the median of
--repeats fits. Peer hyper-parameters are chosen on validation splits of the train part only:
Surprise SVD on the 90/10 rating validation split (by RMSE), implicit's ALS on the per-user
ranking validation split (by NDCG@10).

The peers (scikit-surprise, implicit) are not mfrec dependencies. Rows for a missing peer are
skipped with a note; to run them, use a separate benchmark environment:

    python3 -m venv .bench-venv
    .bench-venv/bin/pip install -e ./client -e . scikit-surprise implicit
    .bench-venv/bin/python bench/quality.py

Results go to bench/results/quality.json and bench/results/quality.md.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mfrec.training import evaluation as ev
from mfrec.training.config import ALS_EXPLICIT, ALS_IMPLICIT, BPMF, TrainingConfig
from mfrec.training.factors import Factors
from mfrec.training.foldin import fold_in, implicit_gram, mean_user
from mfrec.training.interactions import Interactions
from mfrec.training.models import fit_model
from mfrec.training.popularity import (
    COUNT,
    DAMPED_MEAN,
    MEAN_THEN_COUNT,
    METHODS,
    item_popularity,
)

RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = ("ml-100k", "ml-latest-small")
COLUMNS = ("rmse", "mae", *ev.RANKING_METRICS)
HEADERS = ("RMSE", "MAE", "P@10", "R@10", "NDCG@10", "MAP@10", "coverage")

# Surprise SVD grid (rating validation split): factors x (epochs, learning rate) x reg.
SVD_GRID = {
    "n_factors": (100, 200, 400),
    "epochs_lr": ((20, 0.005), (60, 0.01), (100, 0.005)),
    "reg_all": (0.05, 0.1),
}
SVD_GRID_QUICK = {
    "n_factors": (100, 200),
    "epochs_lr": ((20, 0.005), (60, 0.01)),
    "reg_all": (0.02, 0.1),
}
# implicit ALS grid (ranking validation split).
IMPLICIT_GRID = {
    "factors": (64, 128),
    "regularization": (0.01, 1.0, 10.0, 20.0, 50.0, 100.0),
    "alpha": (1.0, 2.0, 5.0),
}
IMPLICIT_GRID_QUICK = {"factors": (128,), "regularization": (0.01, 20.0), "alpha": (2.0,)}
# Fold-in: this share of users is held out of training; each gets its first n interactions.
FOLD_IN_SHARE = 0.1
FOLD_IN_SIZES = (1, 3, 10)
FOLD_IN_MIN_ROWS = 20
# Targets the ratios are read against.
TARGETS = {
    "als_explicit_rmse_vs_svd_default": ("<=", 0.97),
    "bpmf_rmse_vs_best_peer": ("<=", 0.99),
    "als_implicit_ndcg_vs_implicit_best": (">=", 1.0),
    "fold_in_at_3_ndcg_vs_popularity": (">=", 1.3),
}

T = TypeVar("T")


@dataclass
class Bench:
    """One dataset's splits, shared by every model, and the rows measured so far."""

    name: str
    frame: pd.DataFrame
    rating: ev.Split
    rating_validation: ev.Split
    ranking: ev.Split
    ranking_validation: ev.Split
    repeats: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, model: str, configuration: str, **figures: Any) -> dict[str, Any]:
        row = {"model": model, "configuration": configuration, **figures}
        self.rows.append(row)
        print(f"  {model:<34} {configuration:<44} {_short(row)}", flush=True)
        return row

    def row(self, model: str) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["model"] == model), None)


def build_bench(name: str, repeats: int) -> Bench:
    """Loads a dataset and cuts its four splits."""
    frame = ev.load_movielens(name)
    train, test = ev.rating_split(len(frame))
    fit, validation = ev.validation_split(train)
    ranking_train, ranking_test = ev.ranking_split(frame)
    ranking_fit, ranking_validation = ev.ranking_validation_split(frame, ranking_train)
    return Bench(
        name=name,
        frame=frame,
        rating=ev.split_frame(frame, train, test),
        rating_validation=ev.split_frame(frame, fit, validation),
        ranking=ev.split_frame(frame, ranking_train, ranking_test),
        ranking_validation=ev.split_frame(frame, ranking_fit, ranking_validation),
        repeats=repeats,
    )


def timed(fit: Callable[[], T], repeats: int = 1) -> tuple[T, float]:
    """Runs fit `repeats` times; returns the last result and the median seconds."""
    seconds, result = [], None
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        result = fit()
        seconds.append(time.perf_counter() - started)
    return result, statistics.median(seconds)  # type: ignore[return-value]


# --- mfrec --------------------------------------------------------------------------------


def mfrec_available(algorithm: str) -> bool:
    """True when models.fit_model knows the algorithm (others may still be landing)."""
    tiny = Interactions(
        ["a", "b"],
        ["x", "y"],
        np.array([0, 1], np.int32),
        np.array([0, 1], np.int32),
        np.array([1.0, 2.0], np.float32),
    )
    try:
        fit_model(tiny, TrainingConfig(algorithm=algorithm, factors=1, iterations=1))
    except ValueError as error:
        if "not available" in str(error):
            return False
        raise
    return True


def _ranking_values(train: Interactions, algorithm: str) -> Interactions:
    """als-implicit sees every rating as 1; the explicit models fit the ratings."""
    return ev.with_unit_values(train) if algorithm == ALS_IMPLICIT else train


def bench_mfrec(bench: Bench, config: TrainingConfig) -> None:
    """mfrec's model: ratings (explicit models) and ranking, timed on the protocol it serves."""
    config = config.resolved()
    label = f"mfrec {config.algorithm}"
    described = _describe_config(config)
    if not mfrec_available(config.algorithm):
        bench.notes.append(f"{label}: not in models.fit_model yet; row skipped")
        print(f"  {label}: not available yet, skipped")
        return
    implicit = config.algorithm == ALS_IMPLICIT
    figures: dict[str, Any] = {}
    seconds = 0.0
    if not implicit:
        factors, seconds = timed(lambda: fit_model(bench.rating.train, config), bench.repeats)
        figures.update(ev.rating_metrics(factors, bench.rating))
    train = _ranking_values(bench.ranking.train, config.algorithm)
    factors, ranking_seconds = timed(
        lambda: fit_model(train, config), bench.repeats if implicit else 1
    )
    figures.update(_ranking_figures(factors, bench.ranking))
    bench.add(label, described, **figures, fit_seconds=ranking_seconds if implicit else seconds)


def _describe_config(config: TrainingConfig) -> str:
    text = (
        f"defaults: {config.factors} factors, {config.iterations} it, reg {config.regularization:g}"
    )
    return text + (f", alpha {config.alpha:g}" if config.algorithm == ALS_IMPLICIT else "")


def _ranking_figures(model: ev.Model, split: ev.Split) -> dict[str, Any]:
    report = ev.ranking_report(model, split)
    return {name: report[name] for name in ev.RANKING_METRICS}


def bench_baselines(bench: Bench) -> None:
    """The global mean (ratings) and the three popularity rankings (ranking)."""
    values = bench.rating.train.values.astype(np.float64)
    predicted = np.full(bench.rating.test_values.shape[0], values.mean())
    errors = ev.rating_errors(predicted, bench.rating.test_values, (values.min(), values.max()))
    bench.add("global mean", "train mean rating", **errors)
    train = bench.ranking.train
    default = inspect.signature(item_popularity).parameters["method"].default
    for method in (COUNT, DAMPED_MEAN, MEAN_THEN_COUNT):
        label = "most popular (count)" if method == COUNT else f"mfrec popularity {method}"
        described = f"{method}, the serving fallback" if method == default else method
        popularity, seconds = timed(
            partial(item_popularity, train.item_index, train.values, train.n_items, method)
        )
        figures = _ranking_figures(popularity, bench.ranking)
        bench.add(label, described, **figures, fit_seconds=seconds)


# --- Surprise -----------------------------------------------------------------------------


def _surprise_trainset(surprise: Any, train: Interactions) -> Any:
    frame = pd.DataFrame(
        {
            "user": np.asarray(train.user_ids, dtype=object)[train.user_index],
            "item": np.asarray(train.item_ids, dtype=object)[train.item_index],
            "rating": train.values.astype(np.float64),
        }
    )
    scale = (float(frame["rating"].min()), float(frame["rating"].max()))
    reader = surprise.Reader(rating_scale=scale)
    return surprise.Dataset.load_from_df(frame, reader).build_full_trainset()


def _svd_factors(algo: Any, train: Interactions) -> Factors:
    """Surprise SVD's parameters in mfrec's vocabulary: est = mu + b_u + b_i + q_i . p_u."""
    trainset = algo.trainset
    users = np.array([trainset.to_inner_uid(u) for u in train.user_ids], dtype=np.int64)
    items = np.array([trainset.to_inner_iid(i) for i in train.item_ids], dtype=np.int64)
    return Factors(
        user_factors=np.ascontiguousarray(algo.pu[users], dtype=np.float32),
        item_factors=np.ascontiguousarray(algo.qi[items], dtype=np.float32),
        user_bias=algo.bu[users].astype(np.float32),
        item_bias=algo.bi[items].astype(np.float32),
        global_mean=float(trainset.global_mean),
    )


def _fit_svd(surprise: Any, train: Interactions, params: dict[str, Any]) -> Factors:
    algo = surprise.SVD(random_state=42, **params)
    algo.fit(_surprise_trainset(surprise, train))
    return _svd_factors(algo, train)


def _svd_params(n_factors: int, epochs_lr: tuple[int, float], reg_all: float) -> dict[str, Any]:
    epochs, lr = epochs_lr
    return {"n_factors": n_factors, "n_epochs": epochs, "lr_all": lr, "reg_all": reg_all}


def _describe_svd(params: dict[str, Any]) -> str:
    return (
        f"{params['n_factors']} factors, {params['n_epochs']} epochs, "
        f"lr {params['lr_all']:g}, reg {params['reg_all']:g}"
    )


def bench_svd(bench: Bench, surprise: Any, grid: dict[str, tuple[Any, ...]]) -> None:
    """SVD with defaults, then the grid's best by validation RMSE, refit on all train rows."""
    defaults = {"n_factors": 100, "n_epochs": 20, "lr_all": 0.005, "reg_all": 0.02}
    _svd_row(bench, surprise, "Surprise SVD defaults", defaults)
    trials = []
    for combo in itertools.product(*grid.values()):
        params = _svd_params(*combo)
        factors, seconds = timed(partial(_fit_svd, surprise, bench.rating_validation.train, params))
        rmse = ev.rating_metrics(factors, bench.rating_validation)["rmse"]
        trials.append({**params, "validation_rmse": rmse, "fit_seconds": seconds})
        print(
            f"    svd grid {_describe_svd(params):<44} validation RMSE {rmse:.4f} {seconds:.2f} s",
            flush=True,
        )
    bench.extra["svd_grid"] = trials
    best = min(trials, key=lambda t: t["validation_rmse"])
    params = {key: best[key] for key in defaults}
    _svd_row(bench, surprise, "Surprise SVD best of grid", params)


def _svd_row(bench: Bench, surprise: Any, label: str, params: dict[str, Any]) -> None:
    factors, seconds = timed(lambda: _fit_svd(surprise, bench.rating.train, params), bench.repeats)
    figures = ev.rating_metrics(factors, bench.rating)
    ranked = _fit_svd(surprise, bench.ranking.train, params)
    figures.update(_ranking_figures(ranked, bench.ranking))
    bench.add(label, _describe_svd(params), **figures, fit_seconds=seconds)


def bench_knn(bench: Bench, surprise: Any) -> None:
    """KNNBaseline, item-based pearson_baseline, k = 40 (ratings only: ranking every pair of
    users and items one prediction at a time would dominate the benchmark)."""
    options = {"name": "pearson_baseline", "user_based": False}

    def fit() -> Any:
        algo = surprise.KNNBaseline(k=40, sim_options=options, verbose=False)
        return algo.fit(_surprise_trainset(surprise, bench.rating.train))

    algo, seconds = timed(fit, bench.repeats)
    train = bench.rating.train
    users = _raw_ids(train.user_ids, bench.rating.test_user_index)
    items = _raw_ids(train.item_ids, bench.rating.test_item_index)
    predicted = np.array([algo.predict(u, i).est for u, i in zip(users, items, strict=True)])
    values = train.values
    errors = ev.rating_errors(predicted, bench.rating.test_values, (values.min(), values.max()))
    bench.add(
        "Surprise KNNBaseline", "item-based pearson_baseline, k=40", **errors, fit_seconds=seconds
    )


def _raw_ids(vocabulary: list[str], index: np.ndarray) -> list[str]:
    """Raw ids for indices; -1 becomes an id no train set holds (Surprise's unknown path)."""
    return [vocabulary[i] if i >= 0 else "\x00unseen" for i in index.tolist()]


# --- implicit -----------------------------------------------------------------------------


def _fit_implicit(implicit_als: Any, train: Interactions, params: dict[str, Any]) -> Factors:
    from threadpoolctl import threadpool_limits  # implicit's own dependency

    user_items = ev.with_unit_values(train).user_item_matrix()
    with threadpool_limits(1, "blas"):  # implicit warns about (and slows with) threaded BLAS
        model = implicit_als(random_state=42, iterations=15, **params)
        model.fit(user_items, show_progress=False)
    n_users, n_items = user_items.shape
    return Factors(
        user_factors=np.ascontiguousarray(model.user_factors, dtype=np.float32),
        item_factors=np.ascontiguousarray(model.item_factors, dtype=np.float32),
        user_bias=np.zeros(n_users, np.float32),
        item_bias=np.zeros(n_items, np.float32),
        global_mean=0.0,
    )


def _describe_implicit(params: dict[str, Any]) -> str:
    return (
        f"{params['factors']} factors, 15 it, reg {params['regularization']:g}, "
        f"alpha {params['alpha']:g}"
    )


def bench_implicit(bench: Bench, implicit_als: Any, grid: dict[str, tuple[Any, ...]]) -> None:
    """implicit's ALS: the grid's best by validation NDCG@10, refit on all ranking train rows."""
    trials = []
    for combo in itertools.product(*grid.values()):
        params = dict(zip(grid, combo, strict=True))
        factors, seconds = timed(
            partial(_fit_implicit, implicit_als, bench.ranking_validation.train, params)
        )
        ndcg = ev.ranking_report(factors, bench.ranking_validation)["ndcg_at_k"]
        trials.append({**params, "validation_ndcg": ndcg, "fit_seconds": seconds})
        print(
            f"    implicit grid {_describe_implicit(params):<40} validation NDCG@10 "
            f"{ndcg:.4f} {seconds:.2f} s",
            flush=True,
        )
    bench.extra["implicit_grid"] = trials
    best = max(trials, key=lambda t: t["validation_ndcg"])
    params = {key: best[key] for key in grid}
    factors, seconds = timed(
        lambda: _fit_implicit(implicit_als, bench.ranking.train, params), bench.repeats
    )
    bench.add(
        "implicit ALS best of grid",
        _describe_implicit(params),
        **_ranking_figures(factors, bench.ranking),
        fit_seconds=seconds,
    )


# --- fold-in ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoldInUsers:
    """Held-out users' rows, each user's in timestamp order (ties in file order)."""

    train: ev.Split
    user_rows: list[np.ndarray]


def fold_in_users(frame: pd.DataFrame) -> FoldInUsers:
    """Holds FOLD_IN_SHARE of the users with >= FOLD_IN_MIN_ROWS rows out of training.

    rng = default_rng(42) chooses them among all users in ascending id order.
    """
    users = frame["user_id"].to_numpy()
    counts = frame["user_id"].value_counts()
    order = ev._ascending_ids(list(counts.index))  # the same user order as the ranking split
    ordered = [counts.index[j] for j in order]
    rng = np.random.default_rng(ev.SEED)
    chosen_positions = rng.choice(len(ordered), round(FOLD_IN_SHARE * len(ordered)), replace=False)
    chosen = [
        ordered[j] for j in sorted(chosen_positions) if counts[ordered[j]] >= FOLD_IN_MIN_ROWS
    ]
    held = np.isin(users, chosen)
    stamps = frame["timestamp"].to_numpy()
    user_rows = []
    for user in chosen:
        rows = np.flatnonzero(users == user)
        user_rows.append(rows[np.argsort(stamps[rows], kind="stable")])
    train_rows = np.flatnonzero(~held)
    return FoldInUsers(ev.split_frame(frame, train_rows, np.empty(0, np.int64)), user_rows)


def _given_and_rest(frame: pd.DataFrame, held: FoldInUsers, n_given: int) -> tuple[Any, ...]:
    """Per held-out user u (0..m-1): its first n_given rows and the rest, in train indices."""
    item_lookup = pd.Index(held.train.train.item_ids)
    items = item_lookup.get_indexer(pd.Index(frame["item_id"].astype(str))).astype(np.int64)
    ratings = frame["rating"].to_numpy(dtype=np.float64)
    given: list[tuple[np.ndarray, np.ndarray]] = []
    rest: tuple[list[int], list[int]] = ([], [])
    for user, rows in enumerate(held.user_rows):
        first = rows[:n_given]
        given.append((items[first][items[first] >= 0], ratings[first][items[first] >= 0]))
        rest[0].extend([user] * (rows.size - n_given))
        rest[1].extend(items[rows[n_given:]].tolist())
    return given, np.array(rest[0], np.int64), np.array(rest[1], np.int64)


def _seen_matrix(given: list[tuple[np.ndarray, np.ndarray]], n_items: int) -> sp.csr_matrix:
    sizes = np.array([items.size for items, _ in given], dtype=np.int64)
    rows = np.repeat(np.arange(len(given), dtype=np.int64), sizes)
    cols = np.concatenate([items for items, _ in given]).astype(np.int64)
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(len(given), n_items))


def bench_fold_in(bench: Bench) -> None:
    """NDCG@10 for held-out users given their first 1, 3, 10 interactions: fold-in vs popularity."""
    held = fold_in_users(bench.frame)
    train = held.train.train
    models: dict[str, Callable[[list[tuple[np.ndarray, np.ndarray]]], ev.Model]] = {}
    for algorithm in (ALS_IMPLICIT, ALS_EXPLICIT, BPMF):
        if mfrec_available(algorithm):
            models[f"mfrec {algorithm} fold-in"] = _fold_in_model(train, algorithm)
    for method in METHODS:
        popularity = item_popularity(train.item_index, train.values, train.n_items, method)
        models[f"popularity {method}"] = partial(_same_for_all, popularity)
    candidates = np.bincount(train.item_index, minlength=train.n_items) > 0
    table = []
    for label, build in models.items():
        entry: dict[str, Any] = {"model": label}
        for n_given in FOLD_IN_SIZES:
            given, test_users, test_items = _given_and_rest(bench.frame, held, n_given)
            metrics = ev.rank_users(
                build(given), _seen_matrix(given, train.n_items), candidates, test_users, test_items
            )
            entry[f"ndcg@10 given {n_given}"] = float(metrics.ndcg.mean())
        table.append(entry)
        print(
            f"  fold-in {label:<34} "
            + "  ".join(
                f"{key.split()[-1]}: {value:.4f}" for key, value in entry.items() if key != "model"
            )
        )
    bench.extra["fold_in"] = {"held_out_users": len(held.user_rows), "table": table}


def _same_for_all(model: ev.Model, _given: list[tuple[np.ndarray, np.ndarray]]) -> ev.Model:
    return model


def _fold_in_model(
    train: Interactions, algorithm: str
) -> Callable[[list[tuple[np.ndarray, np.ndarray]]], ev.Model]:
    """Fits the model on the remaining users; folds each held-out user in with foldin.fold_in."""
    config = TrainingConfig(algorithm=algorithm).resolved()
    factors = fit_model(_ranking_values(train, algorithm), config)
    items = factors.item_factors.astype(np.float64)
    bias = factors.item_bias.astype(np.float64)
    gram = implicit_gram(factors) if algorithm == ALS_IMPLICIT else None
    prior = mean_user(factors)  # as the server folds in: shrink towards the average user
    implicit = algorithm == ALS_IMPLICIT

    def build(given: list[tuple[np.ndarray, np.ndarray]]) -> ev.Model:
        vectors = np.zeros((len(given), items.shape[1]))
        for user, (chosen, values) in enumerate(given):
            strengths = np.ones(chosen.size) if implicit else values
            folded = fold_in(factors, chosen, strengths, config, gram, prior)
            if folded is not None:  # no usable item: the item biases alone rank
                vectors[user] = folded.vector
        return lambda users: vectors[users] @ items.T + bias

    return build


# --- ratios, tables, output ---------------------------------------------------------------


def ratios(bench: Bench) -> dict[str, Any]:
    """The ratios against TARGETS, None where a row is missing."""

    def figure(model: str, name: str) -> float | None:
        row = bench.row(model)
        return None if row is None else row.get(name)

    peers = [
        figure(m, "rmse")
        for m in ("Surprise SVD defaults", "Surprise SVD best of grid", "Surprise KNNBaseline")
    ]
    best_peer = min((p for p in peers if p is not None), default=None)
    fold_in = {e["model"]: e for e in bench.extra.get("fold_in", {}).get("table", [])}
    # The best mfrec ranking model folds in; most popular (count) is the baseline.
    folded = fold_in.get("mfrec als-implicit fold-in") or fold_in.get("mfrec als-explicit fold-in")
    popular = fold_in.get("popularity count")
    result: dict[str, Any] = {
        "als_explicit_rmse_vs_svd_default": _ratio(
            figure("mfrec als-explicit", "rmse"), figure("Surprise SVD defaults", "rmse")
        ),
        "bpmf_rmse_vs_best_peer": _ratio(figure("mfrec bpmf", "rmse"), best_peer),
        "als_implicit_ndcg_vs_implicit_best": _ratio(
            figure("mfrec als-implicit", "ndcg_at_k"),
            figure("implicit ALS best of grid", "ndcg_at_k"),
        ),
        "fold_in_at_3_ndcg_vs_popularity": _ratio(
            folded and folded["ndcg@10 given 3"], popular and popular["ndcg@10 given 3"]
        ),
    }
    result["fit_time_vs_matching_svd"] = _time_match(bench)
    return result


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def _time_match(bench: Bench) -> dict[str, Any] | None:
    """mfrec als-explicit's fit time over the cheapest SVD grid config that reaches its RMSE,
    both fit on the rating validation split's 90% and scored on its 10%."""
    trials = bench.extra.get("svd_grid")
    if not trials:
        return None
    config = TrainingConfig().resolved()
    factors, seconds = timed(
        lambda: fit_model(bench.rating_validation.train, config), bench.repeats
    )
    rmse = ev.rating_metrics(factors, bench.rating_validation)["rmse"]
    matching = [t for t in trials if t["validation_rmse"] <= rmse]
    chosen = (
        min(matching, key=lambda t: t["fit_seconds"])
        if matching
        else min(trials, key=lambda t: t["validation_rmse"])
    )
    return {
        "mfrec_validation_rmse": rmse,
        "mfrec_fit_seconds": seconds,
        "svd_config": _describe_svd(chosen),
        "svd_validation_rmse": chosen["validation_rmse"],
        "svd_fit_seconds": chosen["fit_seconds"],
        "svd_reaches_mfrec_rmse": bool(matching),
        "ratio": seconds / chosen["fit_seconds"],
    }


def _cell(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _short(row: dict[str, Any]) -> str:
    parts = [
        f"{h} {_cell(row.get(c))}"
        for h, c in zip(HEADERS, COLUMNS, strict=True)
        if row.get(c) is not None
    ]
    if row.get("fit_seconds") is not None:
        parts.append(f"fit {row['fit_seconds']:.2f} s")
    return "  ".join(parts)


def markdown_table(bench: Bench) -> str:
    """One markdown table of every row of a dataset."""
    head = ("model", "configuration", *HEADERS, "fit s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in bench.rows:
        cells = [
            row["model"],
            row["configuration"],
            *(_cell(row.get(c)) for c in COLUMNS),
            _cell(row.get("fit_seconds"), 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fold_in_table(bench: Bench) -> str:
    """The fold-in table: NDCG@10 on each held-out user's remaining interactions."""
    fold_in = bench.extra.get("fold_in")
    if not fold_in:
        return ""
    head = ["model", *(f"NDCG@10 given {n}" for n in FOLD_IN_SIZES)]
    lines = [
        f"Fold-in: {fold_in['held_out_users']} users held out of training, given their "
        "first interactions by timestamp, scored on the rest.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for entry in fold_in["table"]:
        lines.append(
            "| "
            + " | ".join(
                [entry["model"], *(_cell(entry[f"ndcg@10 given {n}"]) for n in FOLD_IN_SIZES)]
            )
            + " |"
        )
    return "\n".join(lines)


def ratio_lines(found: dict[str, Any]) -> list[str]:
    """Human lines for the ratios, each with its target and whether it is met."""
    lines = []
    for name, (sense, target) in TARGETS.items():
        value = found.get(name)
        if value is None:
            lines.append(f"- {name}: n/a (a row is missing), target {sense} {target}")
            continue
        met = value <= target if sense == "<=" else value >= target
        lines.append(
            f"- {name}: {value:.4f} (target {sense} {target}: {'met' if met else 'NOT met'})"
        )
    match = found.get("fit_time_vs_matching_svd")
    if match:
        reach = "" if match["svd_reaches_mfrec_rmse"] else " (no SVD config reaches it; best)"
        lines.append(
            f"- fit time vs matching Surprise SVD{reach}: mfrec {match['mfrec_fit_seconds']:.2f} s "
            f"(validation RMSE {match['mfrec_validation_rmse']:.4f}) / {match['svd_config']} "
            f"{match['svd_fit_seconds']:.2f} s (RMSE {match['svd_validation_rmse']:.4f}) = "
            f"{match['ratio']:.2f}"
        )
    return lines


def _peer(module: str, hint: list[str]) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        hint.append(module)
        return None


def run_dataset(name: str, options: argparse.Namespace, peers: dict[str, Any]) -> Bench:
    """Every row, the fold-in table and the ratios for one dataset."""
    print(f"\n== {name} ==", flush=True)
    bench = build_bench(name, options.repeats)
    bench_baselines(bench)
    for algorithm in (ALS_EXPLICIT, BPMF, ALS_IMPLICIT):
        bench_mfrec(bench, TrainingConfig(algorithm=algorithm))
    if peers.get("surprise") is not None:
        bench_svd(bench, peers["surprise"], SVD_GRID_QUICK if options.quick else SVD_GRID)
        bench_knn(bench, peers["surprise"])
    if peers.get("implicit") is not None:
        grid = IMPLICIT_GRID_QUICK if options.quick else IMPLICIT_GRID
        bench_implicit(bench, peers["implicit"].cpu.als.AlternatingLeastSquares, grid)
    bench_fold_in(bench)
    bench.extra["ratios"] = ratios(bench)
    return bench


def _environment(peers: dict[str, Any]) -> dict[str, Any]:
    versions = {
        name: getattr(module, "__version__", "?")
        for name, module in peers.items()
        if module is not None
    }
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "cpus": os.cpu_count(),
        "peers": versions,
    }


def write_results(benches: Iterable[Bench], environment: dict[str, Any], out: Path) -> None:
    """Writes quality.json and quality.md under out."""
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "environment": environment,
        "datasets": {b.name: {"rows": b.rows, "notes": b.notes, **b.extra} for b in benches},
    }
    (out / "quality.json").write_text(json.dumps(payload, indent=2) + "\n")
    parts = [
        "# mfrec quality benchmark",
        "",
        f"Environment: {json.dumps(environment)}. Fit seconds: median of repeated fits.",
        "",
    ]
    for bench in benches:
        parts += [
            f"## {bench.name}",
            "",
            markdown_table(bench),
            "",
            fold_in_table(bench),
            "",
            "Ratios:",
            *ratio_lines(bench.extra["ratios"]),
            "",
        ]
        parts += [f"Note: {note}" for note in bench.notes]
    (out / "quality.md").write_text("\n".join(parts) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--repeats", type=int, default=3, help="fits per timing (median)")
    parser.add_argument("--quick", action="store_true", help="small grids, for a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    options = parser.parse_args(argv)
    missing: list[str] = []
    peers = {"surprise": _peer("surprise", missing), "implicit": _peer("implicit", missing)}
    if peers["implicit"] is not None:
        importlib.import_module("implicit.cpu.als")
    if missing:
        print(
            f"peer libraries not installed: {', '.join(missing)}; their rows are skipped.\n"
            "Install them into a separate benchmark environment (not mfrec's):\n"
            "  python3 -m venv .bench-venv\n"
            "  .bench-venv/bin/pip install -e ./client -e . scikit-surprise implicit\n"
            "  .bench-venv/bin/python bench/quality.py"
        )
    available = [n for n in options.datasets if ev.dataset_path(n).is_file()]
    for name in sorted(set(options.datasets) - set(available)):
        print(f"{ev.dataset_path(name)} is missing (set MFREC_DATA_HOME): {name} skipped")
    benches = [run_dataset(name, options, peers) for name in available]
    for bench in benches:
        print(f"\n## {bench.name}\n\n{markdown_table(bench)}\n\n{fold_in_table(bench)}\n")
        print("\n".join(ratio_lines(bench.extra["ratios"])))
    write_results(benches, _environment(peers), options.out)
    print(f"\nwrote {options.out / 'quality.json'} and {options.out / 'quality.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
