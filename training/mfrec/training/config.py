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
# Far above any useful regularization or confidence weight; beyond it float32 training
# overflows and every factor is zero anyway.
MAX_PENALTY = 1e6
# Explicit models penalize a row's factors by regularization * max(its rating count, this).
MIN_REGULARIZATION_COUNT = 25
# The implicit model's confidence is 1 + alpha * r * (n_u / REFERENCE) ^ -EXPONENT for a user
# with n_u interactions (implicit.py).
CONFIDENCE_REFERENCE_COUNT = 100
CONFIDENCE_ACTIVITY_EXPONENT = 0.5

# Defaults per algorithm, chosen on the validation splits of shared EVALUATION.md (train rows
# split again 90/10, or per user for ranking; never the test rows) of MovieLens 100K and
# latest-small, one setting for both. Test figures are on the seeded protocol splits.
#
# als-explicit: a grid over regularization 0.100..0.160 step 0.005 x bias_regularization
#   {0.5, 1, 2, 3, 5} x factors {32, 48, 64, 96, 128} x the floor of the count scaling
#   MIN_REGULARIZATION_COUNT {0, 15, 20, 25, 30}; the floor gained 0.006 RMSE on latest-small.
#   Validation RMSE 0.9079 / 0.8406; test RMSE 0.9039 (100K) / 0.8389 (latest-small), fit
#   0.9 s on 100K (one BLAS thread), by evaluation.evaluate(load_movielens(name), "rating",
#   TrainingConfig()).
# bpmf: factors {10, 16, 20, 30, 40} x alpha (noise precision) {1.0, 1.25, 1.4, 1.5, 1.75, 2,
#   3} x samples {100, 200} x burn-in {20, 50}; alpha is the sharp one (1.5: 0.8907, 2: 0.8998,
#   3: 0.9308 on the 100K validation split). Validation RMSE 0.8901 (100K) / 0.8332
#   (latest-small, 100 samples); test RMSE 0.8900 / 0.8332, fit ~10 s on 100K. regularization
#   and bias_regularization are only used to fold new users in (the sampler learns its own
#   priors): 0.2 and 3 minimized the RMSE of held-out users given their first 3 and 10
#   ratings (0.9613, 0.9479 on 100K against 0.9603, 0.9530 for als-explicit).
# als-implicit (ranking protocol, every rating an interaction of value 1): a grid over factors
#   {32, 64, 128, 256} x regularization {5, 10, 20, 30, 40, 60, 80, 160} x alpha {0.5..32}, with
#   and without the activity-normalized confidence (CONFIDENCE_ACTIVITY_EXPONENT 0, 0.5, 0.75).
#   Validation NDCG@10 0.2706 / 0.2262; test NDCG@10 0.4608 (100K, P@10 0.3789) / 0.3758
#   (latest-small), against 0.4558 / 0.3607 for implicit's ALS; fit 3.3 s on 100K (one BLAS
#   thread), by evaluation.evaluate(load_movielens(name), "ranking",
#   TrainingConfig(algorithm="als-implicit")).
_DEFAULTS: dict[str, dict[str, float]] = {
    ALS_EXPLICIT: {
        "factors": 64,
        "iterations": 15,
        "regularization": 0.11,
        "alpha": 0.0,
        "bias_regularization": 3.0,
        "burn_in": 0,
    },
    BPMF: {
        "factors": 20,
        "iterations": 200,
        "regularization": 0.2,
        "alpha": 1.5,
        "bias_regularization": 3.0,
        "burn_in": 20,
    },
    ALS_IMPLICIT: {
        "factors": 128,
        "iterations": 15,
        "regularization": 40.0,
        "alpha": 4.0,
        "bias_regularization": 0.0,
        "burn_in": 0,
    },
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
        alpha: confidence weight of the implicit model; the noise precision for bpmf.
        bias_regularization: L2 strength on the biases of the explicit models.
        burn_in: Gibbs sweeps discarded before the kept samples (bpmf only).
    """

    algorithm: str = ALS_EXPLICIT
    factors: int = 0
    iterations: int = 0
    regularization: float = 0.0
    seed: int = 0
    validation_fraction: float | None = None
    alpha: float = 0.0
    bias_regularization: float = 0.0
    burn_in: int = 0

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
            bias_regularization=self.bias_regularization or defaults["bias_regularization"],
            burn_in=self.burn_in or int(defaults["burn_in"]),
        )

    def total_sweeps(self) -> int:
        """Sweeps a run makes: the validation fit (if any) plus the final fit on all rows."""
        resolved = self.resolved()
        return resolved.iterations * (2 if resolved.validation_fraction else 1)

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
            if not math.isfinite(value) or not 0 <= value <= MAX_PENALTY:
                raise ConfigError(
                    f"{name} must be between 0 and {MAX_PENALTY:g} (0 for the default)"
                )
        if not 0 <= self.burn_in <= MAX_ITERATIONS:
            raise ConfigError(f"burn_in must be between 0 and {MAX_ITERATIONS} (0 for the default)")
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
