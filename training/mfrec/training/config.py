"""Training configuration: hyper-parameters with per-algorithm defaults and range checks."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

ALS_EXPLICIT = "als-explicit"
BPMF = "bpmf"
ALS_IMPLICIT = "als-implicit"
ALGORITHMS = (ALS_EXPLICIT, BPMF, ALS_IMPLICIT)

DEFAULT_SEED = 42
DEFAULT_VALIDATION_FRACTION = 0.1
MAX_FACTORS = 1024
MAX_ITERATIONS = 1000
MAX_VALIDATION_FRACTION = 0.5

# Defaults per algorithm, chosen on validation splits of MovieLens 100K and latest-small
# (see README, "Quality"). factors, iterations, regularization, alpha.
_DEFAULTS: dict[str, dict[str, float]] = {
    ALS_EXPLICIT: {"factors": 64, "iterations": 15, "regularization": 0.05, "alpha": 0.0},
    BPMF: {"factors": 32, "iterations": 100, "regularization": 2.0, "alpha": 0.0},
    ALS_IMPLICIT: {"factors": 128, "iterations": 15, "regularization": 20.0, "alpha": 2.0},
}


class ConfigError(ValueError):
    """A hyper-parameter is out of its documented range."""


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of one training run. 0 (or None) means "use the default".

    Attributes:
        algorithm: one of ALGORITHMS.
        factors: embedding dimension.
        iterations: ALS sweeps, or Gibbs samples for bpmf.
        regularization: L2 strength (explicit ALS scales it by rating counts).
        seed: random seed of initialization and the validation split.
        validation_fraction: rows held out for validation metrics; 0 for none.
        alpha: confidence weight of the implicit model.
        bias_regularization: L2 strength on the biases of the explicit models.
    """

    algorithm: str = ALS_EXPLICIT
    factors: int = 0
    iterations: int = 0
    regularization: float = 0.0
    seed: int = 0
    validation_fraction: float | None = None
    alpha: float = 0.0
    bias_regularization: float = 0.0

    def resolved(self) -> TrainingConfig:
        """Returns a copy with every default filled in, after checking the ranges."""
        self.check()
        defaults = _DEFAULTS[self.algorithm]
        return replace(
            self,
            factors=self.factors or int(defaults["factors"]),
            iterations=self.iterations or int(defaults["iterations"]),
            regularization=self.regularization or defaults["regularization"],
            seed=self.seed or DEFAULT_SEED,
            validation_fraction=(
                DEFAULT_VALIDATION_FRACTION
                if self.validation_fraction is None
                else self.validation_fraction
            ),
            alpha=self.alpha or defaults["alpha"],
            bias_regularization=self.bias_regularization or 5.0,
        )

    def check(self) -> None:
        """Raises ConfigError naming the first field that is out of range."""
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"algorithm must be one of {', '.join(ALGORITHMS)}")
        if not 0 <= self.factors <= MAX_FACTORS:
            raise ConfigError(f"factors must be between 1 and {MAX_FACTORS} (0 for the default)")
        if not 0 <= self.iterations <= MAX_ITERATIONS:
            raise ConfigError(
                f"iterations must be between 1 and {MAX_ITERATIONS} (0 for the default)"
            )
        for name in ("regularization", "alpha", "bias_regularization"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name} must be a finite number >= 0 (0 for the default)")
        if self.seed < 0:
            raise ConfigError("seed must be >= 0 (0 for the default)")
        fraction = self.validation_fraction
        if fraction is not None and not (
            math.isfinite(fraction) and 0 <= fraction <= MAX_VALIDATION_FRACTION
        ):
            raise ConfigError(
                f"validation_fraction must be between 0 and {MAX_VALIDATION_FRACTION}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Returns the fields as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        """Builds a config from to_dict output, ignoring unknown keys."""
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)
