"""Hyper-parameter search: a small seeded random search on the validation split.

The validation split never touches test rows (shared EVALUATION.md): the protocol's train rows
are split again by the same recipe, each trial fits on the larger part and is scored on the
other (RMSE for the rating protocol, NDCG@10 for ranking). The first trial is always the
algorithm's defaults, so a search never returns something worse than them on validation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from mfrec.training.config import ALS_EXPLICIT, ALS_IMPLICIT, BPMF, TrainingConfig
from mfrec.training.evaluation import (
    Split,
    ranking_report,
    ranking_split,
    ranking_validation_split,
    rating_metrics,
    rating_split,
    split_frame,
    validation_split,
    with_unit_values,
)
from mfrec.training.models import fit_model

RATING, RANKING = "rating", "ranking"
PROTOCOLS = (RATING, RANKING)
DEFAULT_TRIALS = 12

# The values each trial draws from, per algorithm and field: the neighbourhoods of the optima
# found on MovieLens (config._DEFAULTS). Explicit ALS draws its regularization finely.
SEARCH_SPACES: dict[str, dict[str, Sequence[float]]] = {
    ALS_EXPLICIT: {
        "factors": (32, 48, 64, 96),
        "iterations": (10, 15, 25),
        "regularization": tuple(np.round(np.arange(0.08, 0.1601, 0.005), 3).tolist()),
        "bias_regularization": (1.0, 2.0, 3.0, 5.0),
    },
    BPMF: {
        "factors": (10, 16, 20, 30),
        "iterations": (60, 100, 150),
        "alpha": (1.25, 1.4, 1.5, 1.75, 2.0),
    },
    ALS_IMPLICIT: {
        "factors": (64, 128, 256),
        "iterations": (10, 15),
        "regularization": (10.0, 20.0, 30.0, 40.0, 60.0, 80.0),
        "alpha": (1.0, 2.0, 3.0, 4.0, 6.0, 8.0),
    },
}


@dataclass(frozen=True)
class Trial:
    """One configuration tried: its validation figure (lower is better for RMSE)."""

    config: TrainingConfig
    metric: str
    value: float
    seconds: float


@dataclass(frozen=True)
class TuningResult:
    """The best configuration found and every trial, in the order they ran."""

    best: TrainingConfig
    trials: list[Trial]
    protocol: str


def tune(
    frame: pd.DataFrame,
    protocol: str,
    algorithm: str,
    trials: int = DEFAULT_TRIALS,
    seed: int = 42,
    progress: Callable[[Trial], None] | None = None,
) -> TuningResult:
    """Searches factors, regularization, iterations (and alpha) on the validation split.

    Args:
        frame: ratings in file order (the columns of loaders.load_ratings).
        protocol: "rating" (minimize RMSE) or "ranking" (maximize NDCG@10).
        algorithm: one of config.ALGORITHMS; als-implicit needs the ranking protocol.
        trials: configurations to try, the defaults first; at least 1.
        seed: seeds the draws and every fit.
        progress: called after each trial.

    Raises:
        ValueError: an unknown protocol or algorithm, or too few trials.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}")
    if algorithm not in SEARCH_SPACES:
        raise ValueError(f"algorithm must be one of {', '.join(SEARCH_SPACES)}")
    if algorithm == ALS_IMPLICIT and protocol == RATING:
        raise ValueError("als-implicit scores rankings, not ratings: use protocol ranking")
    if trials < 1:
        raise ValueError("trials must be at least 1")
    split = _validation(frame, protocol)
    if algorithm == ALS_IMPLICIT:
        split = replace(split, train=with_unit_values(split.train))
    done: list[Trial] = []
    for config in _candidates(algorithm, trials, seed):
        trial = _run(config, split, protocol)
        done.append(trial)
        if progress is not None:
            progress(trial)
    best = min(done, key=lambda t: _loss(t, protocol))
    return TuningResult(best=best.config, trials=done, protocol=protocol)


def _validation(frame: pd.DataFrame, protocol: str) -> Split:
    if protocol == RATING:
        train, _ = rating_split(len(frame))
        return split_frame(frame, *validation_split(train))
    train, _ = ranking_split(frame)
    return split_frame(frame, *ranking_validation_split(frame, train))


def _candidates(algorithm: str, trials: int, seed: int) -> list[TrainingConfig]:
    """The defaults, then distinct random draws from the search space (at most `trials`)."""
    base = TrainingConfig(algorithm=algorithm, seed=seed, validation_fraction=0.0)
    chosen = [base.resolved()]
    space = SEARCH_SPACES[algorithm]
    rng = np.random.default_rng(seed)
    for _ in range(50 * trials):
        if len(chosen) >= trials:
            break
        draw = {name: values[int(rng.integers(len(values)))] for name, values in space.items()}
        fields = {
            k: int(v) if k in ("factors", "iterations") else float(v) for k, v in draw.items()
        }
        candidate = TrainingConfig.from_dict({**base.to_dict(), **fields}).resolved()
        if candidate not in chosen:
            chosen.append(candidate)
    return chosen


def _run(config: TrainingConfig, split: Split, protocol: str) -> Trial:
    started = time.perf_counter()
    factors = fit_model(split.train, config)
    seconds = time.perf_counter() - started
    if protocol == RATING:
        return Trial(config, "rmse", rating_metrics(factors, split)["rmse"], seconds)
    ndcg = ranking_report(factors, split)["ndcg_at_k"]
    return Trial(config, "ndcg@10", math.nan if ndcg is None else float(ndcg), seconds)


def _loss(trial: Trial, protocol: str) -> float:
    if math.isnan(trial.value):
        return math.inf
    return trial.value if protocol == RATING else -trial.value


def format_trials(result: TuningResult) -> str:
    """Renders the trials as a text table, best first, the best marked with '*'."""
    ordered = sorted(result.trials, key=lambda t: _loss(t, result.protocol))
    fields = _shown_fields(result.trials)
    widths = [max(len(name), 7) + 2 for name in fields]
    metric = result.trials[0].metric if result.trials else "metric"
    header = "".join(f"{name:>{w}}" for name, w in zip(fields, widths, strict=True))
    lines = [f"  {header}{metric:>10}{'seconds':>9}"]
    for trial in ordered:
        mark = "*" if trial.config == result.best else " "
        values = trial.config.to_dict()
        cells = "".join(
            f"{_cell(values[name]):>{w}}" for name, w in zip(fields, widths, strict=True)
        )
        lines.append(f"{mark} {cells}{trial.value:>10.4f}{trial.seconds:>9.2f}")
    return "\n".join(lines)


def _shown_fields(trials: list[Trial]) -> list[str]:
    """The config fields that differ between trials (all searched fields if just one)."""
    if not trials:
        return []
    names = list(SEARCH_SPACES[trials[0].config.algorithm])
    varied = [n for n in names if len({getattr(t.config, n) for t in trials}) > 1]
    return varied or names


def _cell(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
