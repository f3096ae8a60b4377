"""Recommendation logic on a serving model: request checks, scoring, masking and fallbacks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import numpy.typing as npt

from mfrec.server.errors import InvalidRequest, NotFound
from mfrec.server.model import ServingModel
from mfrec.server.ranking import score_buffer, top_k
from mfrec.training.ids import NOT_FOUND

DEFAULT_K = 10


class Source(Enum):
    """Which strategy produced a recommendation list."""

    PERSONALIZED = "personalized"
    POPULAR = "popular"
    FOLD_IN = "fold-in"


@dataclass(frozen=True)
class Limits:
    """Request limits, each a server flag."""

    max_k: int = 1000
    max_id_bytes: int = 256
    max_exclude: int = 10_000
    max_allowed: int = 10_000
    max_recent: int = 10_000
    max_batch: int = 1000


@dataclass(frozen=True)
class RecommendQuery:
    """One recommendation request in plain values."""

    user_id: str
    k: int = 0
    exclude_item_ids: tuple[str, ...] = ()
    include_seen: bool = False
    recent_item_ids: tuple[str, ...] = ()
    recent_values: tuple[float, ...] = ()
    allowed_item_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recommendation:
    """The answer to one query: (item id, score) pairs best first."""

    items: list[tuple[str, float]]
    source: Source
    model_version: str
    ignored_item_ids: list[str] = field(default_factory=list)


def check_id(value: str, name: str, limits: Limits) -> None:
    """Raises InvalidRequest unless value is a non-blank id within the length limit."""
    if not value or not value.strip():
        raise InvalidRequest(f"{name} is required and must not be blank")
    if len(value.encode("utf-8", errors="surrogatepass")) > limits.max_id_bytes:
        raise InvalidRequest(f"{name} is longer than {limits.max_id_bytes} bytes")


def resolve_k(k: int, limits: Limits) -> int:
    """Returns the effective k: 0 means DEFAULT_K; negative or above max_k is rejected."""
    if k < 0:
        raise InvalidRequest(f"k must be >= 0 (0 means {DEFAULT_K}), got {k}")
    if k > limits.max_k:
        raise InvalidRequest(f"k must be at most {limits.max_k}, got {k}")
    return k or DEFAULT_K


def check_query(query: RecommendQuery, limits: Limits) -> int:
    """Checks every field of a query and returns its effective k."""
    check_id(query.user_id, "user_id", limits)
    k = resolve_k(query.k, limits)
    _check_list(query.exclude_item_ids, "exclude_item_ids", limits.max_exclude, limits)
    _check_list(query.allowed_item_ids, "allowed_item_ids", limits.max_allowed, limits)
    _check_list(query.recent_item_ids, "recent_item_ids", limits.max_recent, limits)
    if query.recent_values:
        if len(query.recent_values) != len(query.recent_item_ids):
            raise InvalidRequest(
                f"recent_values has {len(query.recent_values)} entries but recent_item_ids has "
                f"{len(query.recent_item_ids)}; give one value per item or none"
            )
        if not all(math.isfinite(v) for v in query.recent_values):
            raise InvalidRequest("recent_values must all be finite numbers")
    return k


def _check_list(values: tuple[str, ...], name: str, most: int, limits: Limits) -> None:
    if len(values) > most:
        raise InvalidRequest(f"{name} has {len(values)} entries; at most {most} are allowed")
    for value in values:
        if len(value.encode("utf-8", errors="surrogatepass")) > limits.max_id_bytes:
            raise InvalidRequest(f"{name} holds an id longer than {limits.max_id_bytes} bytes")


def recommend(model: ServingModel, query: RecommendQuery, limits: Limits) -> Recommendation:
    """Answers one query from one model snapshot."""
    k = check_query(query, limits)
    excluded = model.item_indices(query.exclude_item_ids)
    allowed = model.item_indices(query.allowed_item_ids) if query.allowed_item_ids else None
    user = model.user_index(query.user_id)
    recent = model.item_indices(query.recent_item_ids)
    ignored = _unknown_ids(model, query.recent_item_ids)
    if user != NOT_FOUND:
        if not query.include_seen:
            excluded = np.concatenate([excluded, model.seen_items(user)])
        excluded = np.concatenate([excluded, recent])
        scores = _user_scores(model, user)
        items = _select(model, scores, excluded, allowed, k)
        return Recommendation(items, Source.PERSONALIZED, model.version, ignored)
    excluded = np.concatenate([excluded, recent])
    items = _popular(model, excluded, allowed, k)
    return Recommendation(items, Source.POPULAR, model.version, ignored)


def _unknown_ids(model: ServingModel, item_ids: tuple[str, ...]) -> list[str]:
    if not item_ids:
        return []
    indices = model.artifact.item_ids.indices_of(item_ids)
    return [item_id for item_id, index in zip(item_ids, indices, strict=True) if index < 0]


def _user_scores(model: ServingModel, user: int) -> npt.NDArray[np.float32]:
    """Fills this thread's buffer with the user's score of every item."""
    f = model.artifact.factors
    scores = score_buffer(model.n_items)
    np.matmul(f.item_factors, f.user_factors[user], out=scores)
    scores += f.item_bias
    scores += model.user_offset[user]
    return scores


def _select(
    model: ServingModel,
    scores: npt.NDArray[np.float32],
    excluded: npt.NDArray[np.integer],
    allowed: npt.NDArray[np.int64] | None,
    k: int,
) -> list[tuple[str, float]]:
    """Masks excluded items and returns the top k (only among allowed ones, when given)."""
    scores[excluded] = -np.inf
    if allowed is None:
        indices, values = top_k(scores, k)
    else:
        # allowed is sorted, so a tie broken by position is a tie broken by item index.
        positions, values = top_k(scores[allowed], k)
        indices = allowed[positions]
    return _named(model, indices, values)


def _popular(
    model: ServingModel,
    excluded: npt.NDArray[np.integer],
    allowed: npt.NDArray[np.int64] | None,
    k: int,
) -> list[tuple[str, float]]:
    """Returns the k most popular items that are not excluded (and are allowed, if given)."""
    popularity = model.artifact.popularity
    if allowed is None:
        head = np.asarray(popularity.order[: k + excluded.size])
    else:
        head = allowed[np.argsort(model.popularity_rank[allowed], kind="stable")]
    if excluded.size:
        head = head[~np.isin(head, excluded)]
    head = head[:k]
    return _named(model, head, np.asarray(popularity.scores)[head])


def _named(
    model: ServingModel, indices: npt.NDArray[np.integer], values: npt.NDArray[np.floating]
) -> list[tuple[str, float]]:
    ids = model.artifact.item_ids.ids_at(indices.tolist())
    return list(zip(ids, values.astype(np.float32).tolist(), strict=True))


def similar_items(
    model: ServingModel, item_id: str, k: int, exclude_item_ids: tuple[str, ...], limits: Limits
) -> list[tuple[str, float]]:
    """Returns the k items whose embeddings have the highest cosine similarity to item_id."""
    check_id(item_id, "item_id", limits)
    k = resolve_k(k, limits)
    _check_list(exclude_item_ids, "exclude_item_ids", limits.max_exclude, limits)
    index = model.artifact.item_ids.index_of(item_id)
    if index == NOT_FOUND:
        raise NotFound(f"item_id {item_id!r} is not in the model")
    factors = model.artifact.factors.item_factors
    scores = score_buffer(model.n_items)
    np.matmul(factors, factors[index], out=scores)
    norms = model.item_norms * max(float(model.item_norms[index]), 1e-12)
    np.divide(scores, np.maximum(norms, 1e-12), out=scores)
    excluded = np.concatenate([model.item_indices(exclude_item_ids), [index]]).astype(np.int64)
    return _select(model, scores, excluded, None, k)


def recommend_batch(
    model: ServingModel, queries: list[RecommendQuery], limits: Limits
) -> list[Recommendation]:
    """Answers several queries from one snapshot, each exactly as recommend would.

    Raises:
        InvalidRequest: naming the index of the first invalid query.
    """
    for position, query in enumerate(queries):
        try:
            check_query(query, limits)
        except InvalidRequest as error:
            raise InvalidRequest(f"requests[{position}]: {error}") from None
    return [recommend(model, query, limits) for query in queries]
