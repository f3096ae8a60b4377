"""Typed Python client for the mfrec recommendation server."""

from mfrec.client.client import DEFAULT_TIMEOUT_SECONDS, RecommenderClient
from mfrec.client.errors import RecommenderError
from mfrec.client.results import (
    JobState,
    ModelInfo,
    Recommendations,
    ScoredItem,
    SimilarItems,
    Source,
    TrainingConfig,
    TrainingJob,
)

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "JobState",
    "ModelInfo",
    "RecommenderClient",
    "RecommenderError",
    "Recommendations",
    "ScoredItem",
    "SimilarItems",
    "Source",
    "TrainingConfig",
    "TrainingJob",
]
