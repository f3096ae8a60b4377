"""Plain result types returned by the client."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum


class Source(Enum):
    """Which strategy produced a recommendation list."""

    PERSONALIZED = "personalized"
    POPULAR = "popular"
    FOLD_IN = "fold-in"


class JobState(Enum):
    """The lifecycle of a training job."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class ScoredItem:
    """An item id with its score (higher is better)."""

    item_id: str
    score: float


@dataclass(frozen=True)
class Recommendations:
    """The answer to one recommend call."""

    items: list[ScoredItem]
    source: Source
    model_version: str
    ignored_item_ids: list[str] = field(default_factory=list)

    @property
    def item_ids(self) -> list[str]:
        return [item.item_id for item in self.items]


@dataclass(frozen=True)
class SimilarItems:
    """The answer to one similar_items call."""

    items: list[ScoredItem]
    model_version: str


@dataclass(frozen=True)
class TrainingConfig:
    """Training hyper-parameters; 0 or None means the server's default."""

    factors: int = 0
    iterations: int = 0
    regularization: float = 0.0
    seed: int = 0
    validation_fraction: float | None = None
    algorithm: str = ""
    alpha: float = 0.0


@dataclass(frozen=True)
class TrainingJob:
    """A training job's state and, once it succeeded, its model's summary."""

    job_id: str
    state: JobState
    iteration: int
    total_iterations: int
    error: str
    model_version: str
    user_count: int
    item_count: int
    rating_count: int
    validation_rmse: float | None
    train_seconds: float
    metrics: dict[str, float]

    @property
    def done(self) -> bool:
        return self.state is not JobState.RUNNING


@dataclass(frozen=True)
class ModelInfo:
    """The model currently serving."""

    model_version: str
    trained_at: datetime | None
    user_count: int
    item_count: int
    rating_count: int
    validation_rmse: float | None
    config: TrainingConfig
    metrics: dict[str, float]
