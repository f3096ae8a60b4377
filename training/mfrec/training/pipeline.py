"""Training pipeline: ratings frame in, checked model artifact out, saved as a new version."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from mfrec.training import ann
from mfrec.training.als import IterationReport, rmse
from mfrec.training.artifact import ModelArtifact, write_artifact
from mfrec.training.config import ALS_IMPLICIT, TrainingConfig
from mfrec.training.factors import Factors
from mfrec.training.ids import IdIndex
from mfrec.training.interactions import Interactions, index_ratings
from mfrec.training.models import fit_model
from mfrec.training.popularity import COUNT, item_popularity


@dataclass(frozen=True)
class Progress:
    """Where a training run is: sweeps done out of the total, with the latest report."""

    iteration: int
    total_iterations: int
    report: IterationReport | None


ProgressSink = Callable[[Progress], None]


@dataclass(frozen=True)
class TrainingSummary:
    """What a finished training run produced."""

    model_version: str
    path: Path
    user_count: int
    item_count: int
    rating_count: int
    validation_rmse: float | None
    metrics: dict[str, float]
    train_seconds: float
    config: TrainingConfig


def total_iterations(config: TrainingConfig) -> int:
    """Sweeps a run will make: the validation fit (if any) plus the final fit on all rows."""
    return config.resolved().total_sweeps()


def validation_rows(
    n_rows: int, fraction: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Splits row positions into (fit rows, held-out rows), seeded, both sorted."""
    permutation = np.random.default_rng(seed).permutation(n_rows)
    n_held = int(round(fraction * n_rows))
    held = np.sort(permutation[:n_held])
    kept = np.sort(permutation[n_held:])
    return kept.astype(np.int64), held.astype(np.int64)


def build_artifact(
    frame: pd.DataFrame,
    config: TrainingConfig,
    progress: ProgressSink | None = None,
    popularity_method: str = COUNT,
    index: str = ann.EXACT,
) -> ModelArtifact:
    """Fits a model on a ratings frame and packs it with everything serving needs.

    With a validation fraction, a first fit on the other rows measures validation metrics;
    the model returned is then fit on all rows, so every user and item is known. index
    ann.HNSW also builds the approximate item index (it needs the `ann` extra, faiss-cpu).
    """
    if index not in ann.INDEX_KINDS:
        raise ValueError(f"index must be one of {', '.join(ann.INDEX_KINDS)}, got {index!r}")
    if index == ann.HNSW:
        ann.import_faiss()  # fail before fitting, not after
    config = config.resolved()
    data = index_ratings(frame)
    if data.n_ratings == 0:
        raise ValueError("no ratings to train on")
    total = total_iterations(config)
    done = 0

    def report(item: IterationReport) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(Progress(done, total, item))

    metrics: dict[str, float] = {}
    if config.validation_fraction:
        metrics = _validate(data, config, report)
    factors = fit_model(data, config, report)
    return with_index(_pack(data, factors, config, metrics, popularity_method), index)


def with_index(artifact: ModelArtifact, index: str) -> ModelArtifact:
    """Returns the artifact with index recorded in its metadata, and built if approximate."""
    metadata = dict(artifact.metadata, index=index)
    if index == ann.EXACT:
        return replace(artifact, metadata=metadata, item_index=None)
    f = artifact.factors
    metadata["index_params"] = {
        "m": ann.DEFAULT_M,
        "ef_construction": ann.DEFAULT_EF_CONSTRUCTION,
        "ef_search": ann.DEFAULT_EF_SEARCH,
    }
    started = time.perf_counter()
    built = ann.build_hnsw(np.asarray(f.item_factors), np.asarray(f.item_bias))
    metadata["index_build_seconds"] = round(time.perf_counter() - started, 3)
    return replace(artifact, metadata=metadata, item_index=built)


def _validate(
    data: Interactions, config: TrainingConfig, report: Callable[[IterationReport], None]
) -> dict[str, float]:
    assert config.validation_fraction is not None
    kept, held = validation_rows(data.n_ratings, config.validation_fraction, config.seed)
    fit_part, held_part = data.subset(kept), data.subset(held)
    explicit = config.algorithm != ALS_IMPLICIT
    low, high = float(data.values.min()), float(data.values.max())

    def held_out_rmse(factors: Factors) -> float:
        predicted = np.clip(factors.predict(held_part.user_index, held_part.item_index), low, high)
        return rmse(predicted, held_part.values)

    factors = fit_model(fit_part, config, report, held_out_rmse if explicit else None)
    metrics: dict[str, float] = {}
    if held.size == 0:
        return metrics
    if explicit:
        predicted = np.clip(factors.predict(held_part.user_index, held_part.item_index), low, high)
        metrics["rmse"] = rmse(predicted, held_part.values)
        metrics["mae"] = float(np.mean(np.abs(predicted - held_part.values)))
    metrics.update(_ranking(factors, fit_part, held_part))
    return metrics


def _ranking(factors: Factors, fit_part: Interactions, held: Interactions) -> dict[str, float]:
    try:
        from mfrec.training.evaluation import ranking_metrics
    except ImportError:  # pragma: no cover - evaluation is part of the package
        return {}
    return ranking_metrics(factors, fit_part, held.user_index, held.item_index, k=10)


def _pack(
    data: Interactions,
    factors: Factors,
    config: TrainingConfig,
    metrics: dict[str, float],
    popularity_method: str,
) -> ModelArtifact:
    seen = data.user_item_matrix()
    popularity = item_popularity(data.item_index, data.values, data.n_items, popularity_method)
    metadata: dict[str, Any] = {
        "trained_at": datetime.now(UTC).isoformat(),
        "config": config.to_dict(),
        "metrics": {k: float(v) for k, v in metrics.items() if np.isfinite(v)},
        "user_count": data.n_users,
        "item_count": data.n_items,
        "rating_count": data.n_ratings,
        "global_mean": float(factors.global_mean),
        "rating_min": float(data.values.min()),
        "rating_max": float(data.values.max()),
        "popularity_method": popularity_method,
    }
    return ModelArtifact(
        factors=factors,
        user_ids=IdIndex.build(data.user_ids),
        item_ids=IdIndex.build(data.item_ids),
        seen_indptr=seen.indptr.astype(np.int64),
        seen_indices=seen.indices.astype(np.int32),
        popularity=popularity,
        metadata=metadata,
    )


class TrainingOverflow(ValueError):
    """The ratings are too large for float32 factors: the data must be rescaled."""


def magnitude_hint(frame: pd.DataFrame) -> str:
    """Explains an overflow by the largest rating in the data."""
    largest = float(np.abs(frame["rating"].to_numpy()).max()) if len(frame) else 0.0
    return (
        f"the ratings reach magnitude {largest:g}, and the float32 factors hold values up to "
        "about 3.4e38 (products of ratings included): rescale very large ratings"
    )


def train_and_save(
    frame: pd.DataFrame,
    config: TrainingConfig,
    model_dir: Path,
    progress: ProgressSink | None = None,
    index: str = ann.EXACT,
) -> TrainingSummary:
    """Trains on a ratings frame and writes the model as a new version in model_dir.

    Raises:
        TrainingOverflow: the ratings are too large for float32 training; nothing is saved.
    """
    started = time.perf_counter()
    try:
        # An overflow stops training at once, before a model of infinities can be saved.
        with np.errstate(over="raise"):
            artifact = build_artifact(frame, config, progress, index=index)
    except FloatingPointError as error:
        raise TrainingOverflow(f"training overflowed: {magnitude_hint(frame)}") from error
    path = write_artifact(artifact, model_dir)
    metrics = artifact.metadata["metrics"]
    return TrainingSummary(
        model_version=path.name,
        path=path,
        user_count=len(artifact.user_ids),
        item_count=len(artifact.item_ids),
        rating_count=int(artifact.metadata["rating_count"]),
        validation_rmse=metrics.get("rmse"),
        metrics=dict(metrics),
        train_seconds=time.perf_counter() - started,
        config=config.resolved(),
    )
