"""The serving model: an immutable, request-ready snapshot of one model version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mfrec.training.artifact import ModelArtifact, read_artifact
from mfrec.training.config import ALS_IMPLICIT, TrainingConfig
from mfrec.training.ids import NOT_FOUND


@dataclass(frozen=True)
class ServingModel:
    """One loaded model version with everything the request path needs prepared at load time.

    Attributes:
        artifact: the arrays and metadata as read (memory-mapped when loaded that way).
        user_offset: global mean + user bias, the per-user constant of a predicted rating.
        popularity_rank: rank of each item index in the popularity order (0 = most popular).
        item_norms: Euclidean norm of each item embedding, for cosine similarity.
        implicit: whether scores are implicit preferences rather than ratings.
    """

    artifact: ModelArtifact
    user_offset: npt.NDArray[np.float32]
    popularity_rank: npt.NDArray[np.int32]
    item_norms: npt.NDArray[np.float32]
    implicit: bool

    @classmethod
    def from_artifact(cls, artifact: ModelArtifact) -> ServingModel:
        f = artifact.factors
        n_items = len(artifact.item_ids)
        rank = np.empty(n_items, dtype=np.int32)
        rank[artifact.popularity.order] = np.arange(n_items, dtype=np.int32)
        config = TrainingConfig.from_dict(artifact.metadata.get("config", {}))
        return cls(
            artifact=artifact,
            user_offset=(np.float32(f.global_mean) + np.asarray(f.user_bias)).astype(np.float32),
            popularity_rank=rank,
            item_norms=np.linalg.norm(f.item_factors, axis=1).astype(np.float32),
            implicit=config.algorithm == ALS_IMPLICIT,
        )

    @classmethod
    def load(cls, path: Path, mmap: bool = True) -> ServingModel:
        """Reads and checks a version directory; raises ArtifactError when it is unusable."""
        return cls.from_artifact(read_artifact(path, mmap=mmap))

    @property
    def version(self) -> str:
        return self.artifact.version

    @property
    def metadata(self) -> dict[str, Any]:
        return self.artifact.metadata

    @property
    def n_items(self) -> int:
        return len(self.artifact.item_ids)

    @property
    def trained_at(self) -> datetime | None:
        text = self.metadata.get("trained_at")
        return datetime.fromisoformat(text) if isinstance(text, str) else None

    def user_index(self, user_id: str) -> int:
        return self.artifact.user_ids.index_of(user_id)

    def item_indices(self, item_ids: tuple[str, ...]) -> npt.NDArray[np.int64]:
        """Returns the known items' indices (unknown ids dropped), duplicates removed."""
        if not item_ids:
            return np.empty(0, dtype=np.int64)
        indices = self.artifact.item_ids.indices_of(item_ids)
        return np.unique(indices[indices != NOT_FOUND])

    def seen_items(self, user_index: int) -> npt.NDArray[np.int32]:
        indptr = self.artifact.seen_indptr
        return self.artifact.seen_indices[int(indptr[user_index]) : int(indptr[user_index + 1])]
