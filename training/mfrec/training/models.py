"""Model families: one entry point that fits the algorithm a config names."""

from __future__ import annotations

from mfrec.training.als import ProgressCallback, Validator, fit_explicit_als
from mfrec.training.bpmf import fit_bpmf
from mfrec.training.config import ALS_EXPLICIT, ALS_IMPLICIT, BPMF, TrainingConfig
from mfrec.training.factors import Factors
from mfrec.training.implicit import fit_implicit_als
from mfrec.training.interactions import Interactions

_FITTERS = {ALS_EXPLICIT: fit_explicit_als, BPMF: fit_bpmf, ALS_IMPLICIT: fit_implicit_als}


def fit_model(
    data: Interactions,
    config: TrainingConfig,
    progress: ProgressCallback | None = None,
    validator: Validator | None = None,
) -> Factors:
    """Fits the model family config.algorithm names and returns its factors.

    als-explicit and bpmf predict ratings (global mean + biases + dot product); als-implicit
    scores preferences for ranking (biases and global mean 0). The defaults of each are in
    config._DEFAULTS, with the figures they were chosen by.

    Raises:
        ConfigError: the config is out of range.
        ValueError: the data cannot be fit (for example, no ratings).
    """
    config = config.resolved()
    if data.n_ratings == 0:
        raise ValueError("no ratings to train on")
    return _FITTERS[config.algorithm](data, config, progress, validator)
