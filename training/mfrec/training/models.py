"""Model families: one entry point that fits the algorithm a config names."""

from __future__ import annotations

from mfrec.training.als import ProgressCallback, Validator, fit_explicit_als
from mfrec.training.config import ALS_EXPLICIT, TrainingConfig
from mfrec.training.factors import Factors
from mfrec.training.interactions import Interactions


def fit_model(
    data: Interactions,
    config: TrainingConfig,
    progress: ProgressCallback | None = None,
    validator: Validator | None = None,
) -> Factors:
    """Fits the model family config.algorithm names and returns its factors.

    Raises:
        ConfigError: the config is out of range.
        ValueError: the data cannot be fit (for example, no ratings).
    """
    config = config.resolved()
    if data.n_ratings == 0:
        raise ValueError("no ratings to train on")
    if config.algorithm == ALS_EXPLICIT:
        return fit_explicit_als(data, config, progress, validator)
    raise ValueError(f"algorithm {config.algorithm} is not available")
