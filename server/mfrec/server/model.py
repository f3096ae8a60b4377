"""The serving model: an immutable, request-ready snapshot of one model version."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mfrec.training.ann import DEFAULT_EF_SEARCH
from mfrec.training.artifact import ModelArtifact, read_artifact
from mfrec.training.config import ALS_IMPLICIT, TrainingConfig
from mfrec.training.ids import NOT_FOUND, hash_id

# Catalogs up to this size keep their item ids decoded (a few MB per process); larger ones
# decode the few ids each answer needs from the shared, memory-mapped blob.
DECODED_ITEM_IDS_MAX = 200_000
# Below this many ids, decoding them one by one is faster than one gather and decode.
_VECTOR_DECODE_MIN = 64


@dataclass(frozen=True)
class ServingModel:
    """One loaded model version with everything the request path needs prepared at load time.

    Attributes:
        artifact: the arrays and metadata as read (memory-mapped when loaded that way).
        user_offset: global mean + user bias, the per-user constant of a predicted rating.
        implicit: whether scores are implicit preferences rather than ratings.
        max_item_norm, max_item_bias: the largest item norm and |item bias|, which bound the
            rounding error of float32 scores (see score_slack).
        ascii_item_ids: whether every item id is ASCII, so ids decode in one pass.
        item_id_list: every item id decoded, for catalogs up to DECODED_ITEM_IDS_MAX.
        ef_search: the search beam of the approximate item index (artifact.item_index),
            when the version has one.
    """

    artifact: ModelArtifact
    user_offset: npt.NDArray[np.float32]
    implicit: bool
    max_item_norm: float = 0.0
    max_item_bias: float = 0.0
    ascii_item_ids: bool = False
    item_id_list: tuple[str, ...] | None = None
    ef_search: int = DEFAULT_EF_SEARCH

    @classmethod
    def from_artifact(cls, artifact: ModelArtifact) -> ServingModel:
        artifact = _plain_views(artifact)
        f = artifact.factors
        n_items = len(artifact.item_ids)
        config = TrainingConfig.from_dict(artifact.metadata.get("config", {}))
        blob = artifact.item_ids.blob
        return cls(
            artifact=artifact,
            user_offset=(np.float32(f.global_mean) + np.asarray(f.user_bias)).astype(np.float32),
            implicit=config.algorithm == ALS_IMPLICIT,
            max_item_norm=float(_row_norms(f.item_factors, keep=False).max(initial=0.0)),
            max_item_bias=float(np.abs(f.item_bias).max(initial=0.0)),
            ascii_item_ids=bool(blob.size == 0 or int(blob.max()) < 0x80),
            item_id_list=(
                tuple(artifact.item_ids.all_ids()) if n_items <= DECODED_ITEM_IDS_MAX else None
            ),
            ef_search=_ef_search(artifact.metadata),
        )

    @classmethod
    def load(cls, path: Path, mmap: bool = True) -> ServingModel:
        """Reads and checks a version directory; raises ArtifactError when it is unusable."""
        return cls.from_artifact(read_artifact(path, mmap=mmap))

    # Catalog-sized arrays only some requests need: computed by the first such request, so
    # a worker that never answers one holds none of them (4 bytes per item each).

    @functools.cached_property
    def popularity_rank(self) -> npt.NDArray[np.int32]:
        """Rank of each item index in the popularity order (0 = most popular)."""
        rank = np.empty(self.n_items, dtype=np.int32)
        rank[self.artifact.popularity.order] = np.arange(self.n_items, dtype=np.int32)
        return rank

    @functools.cached_property
    def item_norms(self) -> npt.NDArray[np.float32]:
        """Euclidean norm of each item embedding, for cosine similarity."""
        return _row_norms(self.artifact.factors.item_factors)

    @property
    def version(self) -> str:
        return self.artifact.version

    @property
    def approximate(self) -> bool:
        """Whether known users' unrestricted requests search the approximate item index."""
        return self.artifact.item_index is not None

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

    def user_indices(self, user_ids: list[str]) -> list[int]:
        """user_index of many ids, with one hash search for all of them."""
        ids = self.artifact.user_ids
        if not user_ids or len(ids) == 0:
            return [NOT_FOUND] * len(user_ids)
        encoded = [value.encode("utf-8", errors="surrogatepass") for value in user_ids]
        keys = np.fromiter((hash_id(e) for e in encoded), dtype=np.uint64, count=len(encoded))
        positions = np.minimum(np.searchsorted(ids.hashes, keys), len(ids) - 1)
        found = np.where(ids.hashes[positions] == keys, ids.order[positions], NOT_FOUND)
        starts = ids.offsets[found].tolist()
        ends = ids.offsets[found + 1].tolist()
        blob = ids.blob
        result = []
        for value, text, index, start, end in zip(
            user_ids, encoded, found.tolist(), starts, ends, strict=True
        ):
            if index != NOT_FOUND and blob[start:end].tobytes() != text:
                index = ids.index_of(value)  # a hash shared by two ids: the slow, exact path
            result.append(index)
        return result

    def item_indices(self, item_ids: tuple[str, ...]) -> npt.NDArray[np.int64]:
        """Returns the known items' indices (unknown ids dropped), duplicates removed."""
        if not item_ids:
            return np.empty(0, dtype=np.int64)
        indices = self.artifact.item_ids.indices_of(item_ids)
        return np.unique(indices[indices != NOT_FOUND])

    def item_ids_at(self, indices: npt.NDArray[np.integer]) -> list[str]:
        """Returns the ids of several item indices, in the same order."""
        if self.item_id_list is not None:
            names = self.item_id_list
            return [names[i] for i in indices.tolist()]
        ids = self.artifact.item_ids
        if not self.ascii_item_ids or indices.size < _VECTOR_DECODE_MIN:
            return ids.ids_at(indices.tolist())
        # One gather and one decode for all of them; ASCII makes byte offsets string offsets.
        starts = ids.offsets[indices]
        lengths = ids.offsets[indices + 1] - starts
        ends = np.cumsum(lengths)
        gather = np.repeat(starts - (ends - lengths), lengths) + np.arange(int(ends[-1]))
        text = ids.blob[gather].tobytes().decode("ascii")
        bounds = [0, *ends.tolist()]
        return [text[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def score_slack(self, user_indices: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Returns, per user, twice a bound of the rounding error of its float32 scores.

        A float32 dot product of K terms is within (K + 1) * 2**-24 * |user| * |item| of the
        exact value whatever the summation order, and the two bias additions and the final
        rounding add 2**-24 of the magnitude each; the bound doubles that for safety.
        """
        f = self.artifact.factors
        users = np.asarray(f.user_factors[user_indices], dtype=np.float64)
        magnitude = (
            np.sqrt(np.einsum("ij,ij->i", users, users)) * self.max_item_norm
            + self.max_item_bias
            + np.abs(self.user_offset[user_indices])
        )
        slack: npt.NDArray[np.float32] = (self._slack_unit * magnitude).astype(np.float32)
        return slack

    def user_slack(self, user_index: int) -> float:
        """score_slack of one user, as a float."""
        user = self.artifact.factors.user_factors[user_index]
        norm = math.sqrt(float(np.dot(user, user)))
        magnitude = norm * self.max_item_norm + self.max_item_bias
        return self._slack_unit * (magnitude + abs(float(self.user_offset[user_index])))

    @property
    def _slack_unit(self) -> float:
        return 4.0 * (int(self.artifact.factors.item_factors.shape[1]) + 4) * 2.0**-24

    def exact_scores(
        self, user_indices: npt.NDArray[np.int64], item_indices: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """Returns the score of each (user, item) pair, computed in float64 then rounded.

        user_indices is one index per pair, or a single index (a 0-d array) for every pair.

        Every path that returns scores ends here, so one request answers the same however
        its candidates were found (matrix-vector or matrix-matrix product).
        """
        f = self.artifact.factors
        items = f.item_factors[item_indices].astype(np.float64)
        if user_indices.ndim == 0:
            users = np.empty_like(items)
            users[...] = f.user_factors[user_indices]
        else:
            users = f.user_factors[user_indices].astype(np.float64)
        # The same contiguous (pairs x factors) float64 operands on every path: einsum then
        # sums each row in the same order, whatever the number of pairs.
        dots = np.einsum("ij,ij->i", items, users)
        dots += f.item_bias[item_indices]
        dots += self.user_offset[user_indices]
        scores: npt.NDArray[np.float32] = dots.astype(np.float32)
        return scores

    def seen_items(self, user_index: int) -> npt.NDArray[np.int32]:
        indptr = self.artifact.seen_indptr
        return self.artifact.seen_indices[int(indptr[user_index]) : int(indptr[user_index + 1])]


def _ef_search(metadata: dict[str, Any]) -> int:
    params = metadata.get("index_params")
    value = params.get("ef_search") if isinstance(params, dict) else None
    return value if isinstance(value, int) and value > 0 else DEFAULT_EF_SEARCH


def _plain_views(artifact: ModelArtifact) -> ModelArtifact:
    """Returns the artifact with every memory-mapped array as a plain ndarray view of the map.

    Indexing an np.memmap runs Python code on every access (several microseconds each, many
    times per request); a plain view of the same pages costs nothing more and shares them.
    """

    def plain(value: Any) -> Any:
        if isinstance(value, np.memmap):
            return value.view(np.ndarray)
        if is_dataclass(value) and not isinstance(value, type):
            changes = {f.name: plain(getattr(value, f.name)) for f in fields(value)}
            return replace(value, **changes)
        return value

    result: ModelArtifact = plain(artifact)
    return result


def _row_norms(matrix: npt.NDArray[np.float32], keep: bool = True) -> npt.NDArray[np.float32]:
    """Returns the Euclidean norm of each row, in chunks so no catalog-sized temporary grows.

    Without keep, returns only each chunk's largest norm (enough for the maximum).
    """
    step = 1 << 16
    chunks = range(0, matrix.shape[0], step)
    norms = np.empty(matrix.shape[0] if keep else len(chunks), dtype=np.float32)
    for position, start in enumerate(chunks):
        block = np.asarray(matrix[start : start + step], dtype=np.float32)
        block_norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        if keep:
            norms[start : start + step] = block_norms
        else:
            norms[position] = block_norms.max()
    return norms
