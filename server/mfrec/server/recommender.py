"""Recommendation logic on a serving model: request checks, scoring, masking and fallbacks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import numpy.typing as npt

from mfrec.server.ann import approximate_top_k
from mfrec.server.errors import InvalidRequest, NotFound
from mfrec.server.foldin import fold_in_scores
from mfrec.server.model import ServingModel
from mfrec.server.ranking import (
    candidate_pairs,
    candidates,
    rank_pairs,
    score_buffer,
    top_k,
    work_buffers,
)
from mfrec.training.ids import NOT_FOUND

DEFAULT_K = 10
# Scores computed at once by a batch: rows x items of float32, about 8 MiB per buffer.
BATCH_SCORE_ELEMENTS = 1 << 21
# Fewer users than this per product (catalogs over BATCH_SCORE_ELEMENTS / 16 items) are
# ranked one by one.
MIN_BATCH_ROWS = 16
_EMPTY = np.empty(0, dtype=np.int64)


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
        excluded = np.concatenate([excluded, recent])
        if allowed is None:
            items = _personalized_one(model, user, k, query.include_seen, excluded)
        else:
            if not query.include_seen:
                excluded = np.concatenate([excluded, model.seen_items(user)])
            items = _select_allowed(model, user, excluded, allowed, k)
        return Recommendation(items, Source.PERSONALIZED, model.version, ignored)
    excluded = np.concatenate([excluded, recent])
    if recent.size:
        scores = fold_in_scores(model, query.recent_item_ids, query.recent_values)
        if scores is not None:
            items = _select(model, scores, excluded, allowed, k)
            return Recommendation(items, Source.FOLD_IN, model.version, ignored)
    items = _popular(model, excluded, allowed, k)
    return Recommendation(items, Source.POPULAR, model.version, ignored)


def _unknown_ids(model: ServingModel, item_ids: tuple[str, ...]) -> list[str]:
    if not item_ids:
        return []
    indices = model.artifact.item_ids.indices_of(item_ids)
    return [item_id for item_id, index in zip(item_ids, indices, strict=True) if index < 0]


@dataclass
class _KnownUsers:
    """Known users ranked together: index, k, seen filter and extra exclusions per row."""

    users: list[int] = field(default_factory=list)
    ks: list[int] = field(default_factory=list)
    hide_seen: list[bool] = field(default_factory=list)
    excluded: list[npt.NDArray[np.integer]] = field(default_factory=list)

    @classmethod
    def one(
        cls, user: int, k: int, include_seen: bool, excluded: npt.NDArray[np.integer]
    ) -> _KnownUsers:
        return cls([user], [k], [not include_seen], [excluded])

    def add(self, user: int, k: int, include_seen: bool, excluded: npt.NDArray[np.integer]) -> None:
        self.users.append(user)
        self.ks.append(k)
        self.hide_seen.append(not include_seen)
        self.excluded.append(excluded)


def _rows(
    known: _KnownUsers,
) -> zip[tuple[int, int, bool, npt.NDArray[np.integer]]]:
    return zip(known.users, known.ks, known.hide_seen, known.excluded, strict=True)


def _personalized_one(
    model: ServingModel, user: int, k: int, include_seen: bool, excluded: npt.NDArray[np.integer]
) -> list[tuple[str, float]]:
    """Ranks every item for one known user: _personalized for one row, in fewer steps.

    A model with an approximate item index answers from its candidates instead, unless too
    few of them survive the seen and excluded items.
    """
    if model.approximate:
        nearest = approximate_top_k(model, user, k, include_seen, excluded)
        if nearest is not None:
            return _named(model, *nearest)
    f = model.artifact.factors
    buffers = work_buffers(1, model.n_items)
    scores, scratch, mask = (buffer[0] for buffer in buffers)
    np.matmul(f.item_factors, f.user_factors[user], out=scores)
    scores += f.item_bias
    scores += model.user_offset[user]
    if not include_seen:
        scores[model.seen_items(user)] = -np.inf
    if excluded.size:
        scores[excluded] = -np.inf
    found = candidates(scores, k, model.user_slack(user), scratch, mask)
    exact = model.exact_scores(np.asarray(user, dtype=np.int64), found)
    best = np.lexsort((found, -exact))[:k]
    return _named(model, found[best], exact[best])


def _personalized(model: ServingModel, known: _KnownUsers) -> list[list[tuple[str, float]]]:
    """Ranks every item for several known users with one matrix-matrix product.

    The float32 product only finds candidates: those within the rounding bound of each row's
    k-th best are rescored exactly, so the answer does not depend on how many users share the
    product, and equal scores are ordered by item index.
    """
    f = model.artifact.factors
    users = np.asarray(known.users, dtype=np.int64)
    ks = np.asarray(known.ks, dtype=np.int64)
    scores, scratch, mask = work_buffers(users.shape[0], model.n_items)
    np.matmul(f.user_factors[users], f.item_factors.T, out=scores)
    scores += f.item_bias
    scores += model.user_offset[users][:, None]
    hidden_rows, hidden_items = _hidden(model, users, known)
    scores[hidden_rows, hidden_items] = -np.inf
    rows, columns = candidate_pairs(scores, ks, model.score_slack(users), scratch, mask)
    exact = model.exact_scores(users[rows], columns)
    items, values, offsets = rank_pairs(rows, columns, exact, ks)
    ids, scores_out, bounds = model.item_ids_at(items), values.tolist(), offsets.tolist()
    return [
        list(zip(ids[a:b], scores_out[a:b], strict=True))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def _hidden(
    model: ServingModel, users: npt.NDArray[np.int64], known: _KnownUsers
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Returns (row, item) of every item a row must not return: seen ones and exclusions."""
    indptr, seen = model.artifact.seen_indptr, model.artifact.seen_indices
    rows = np.flatnonzero(np.asarray(known.hide_seen, dtype=bool))
    starts = np.asarray(indptr[users[rows]], dtype=np.int64)
    lengths = np.asarray(indptr[users[rows] + 1], dtype=np.int64) - starts
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if ends.size else 0
    # The concatenated CSR slices of the rows' users, without a loop over users.
    positions = np.repeat(starts - (ends - lengths), lengths) + np.arange(total)
    extra_lengths = np.fromiter((e.size for e in known.excluded), np.int64, len(known.excluded))
    extra = np.concatenate(known.excluded) if extra_lengths.any() else _EMPTY
    all_rows = np.concatenate(
        [np.repeat(rows, lengths), np.repeat(np.arange(users.shape[0]), extra_lengths)]
    )
    all_items = np.concatenate([np.asarray(seen[positions], dtype=np.int64), extra])
    return all_rows, all_items.astype(np.int64, copy=False)


def _select_allowed(
    model: ServingModel,
    user: int,
    excluded: npt.NDArray[np.integer],
    allowed: npt.NDArray[np.int64],
    k: int,
) -> list[tuple[str, float]]:
    """Returns the user's top k among the allowed items that are not excluded."""
    if allowed.size == 0:
        return []
    users = np.array([user], dtype=np.int64)
    scores = model.exact_scores(np.repeat(users, allowed.size), allowed)[None, :]
    scores[0, np.isin(allowed, excluded)] = -np.inf
    ks = np.array([k], dtype=np.int64)
    # Scores are already exact: no slack is needed; allowed is sorted, so position is index.
    rows, positions = candidate_pairs(
        scores, ks, np.zeros(1, np.float32), np.empty_like(scores), np.empty(scores.shape, bool)
    )
    chosen, values, _ = rank_pairs(rows, positions, scores[0, positions], ks)
    return _named(model, allowed[chosen], values)


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
        head: npt.NDArray[np.integer] = np.asarray(popularity.order[: k + excluded.size])
    else:
        head = allowed[np.argsort(model.popularity_rank[allowed], kind="stable")]
    if excluded.size:
        head = head[~np.isin(head, excluded)]
    head = head[:k]
    return _named(model, head, np.asarray(popularity.scores)[head])


def _named(
    model: ServingModel, indices: npt.NDArray[np.integer], values: npt.NDArray[np.floating]
) -> list[tuple[str, float]]:
    ids = model.item_ids_at(indices)
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

    Known users without an allowed list share matrix-matrix products of at most
    BATCH_SCORE_ELEMENTS scores each; every other query, and every query to a model with an
    approximate index (whose answers come from one user's search), is answered by recommend.

    Raises:
        InvalidRequest: naming the index of the first invalid query.
    """
    ks = []
    for position, query in enumerate(queries):
        try:
            ks.append(check_query(query, limits))
        except InvalidRequest as error:
            raise InvalidRequest(f"requests[{position}]: {error}") from None
    answers: list[Recommendation | None] = [None] * len(queries)
    known, positions, ignored = _KnownUsers(), [], []
    users = model.user_indices([query.user_id for query in queries])
    for position, (query, k, user) in enumerate(zip(queries, ks, users, strict=True)):
        if user == NOT_FOUND or query.allowed_item_ids or model.approximate:
            answers[position] = recommend(model, query, limits)
            continue
        excluded = model.item_indices(query.exclude_item_ids) if query.exclude_item_ids else _EMPTY
        if query.recent_item_ids:
            excluded = np.concatenate([excluded, model.item_indices(query.recent_item_ids)])
        known.add(user, k, query.include_seen, excluded)
        positions.append(position)
        ignored.append(_unknown_ids(model, query.recent_item_ids))
    rows_per_product = BATCH_SCORE_ELEMENTS // max(model.n_items, 1)
    if rows_per_product < MIN_BATCH_ROWS:
        # A product of so few rows re-reads the item matrix as often as single calls do,
        # after packing it: one user at a time is then faster.
        for position, (user, k, hide, hidden), unknown in zip(
            positions, _rows(known), ignored, strict=True
        ):
            items = _personalized_one(model, user, k, not hide, hidden)
            answers[position] = Recommendation(items, Source.PERSONALIZED, model.version, unknown)
        return [answer for answer in answers if answer is not None]
    for start in range(0, len(positions), rows_per_product):
        part = slice(start, start + rows_per_product)
        chunk = _KnownUsers(
            known.users[part], known.ks[part], known.hide_seen[part], known.excluded[part]
        )
        for position, items, unknown in zip(
            positions[part], _personalized(model, chunk), ignored[part], strict=True
        ):
            answers[position] = Recommendation(items, Source.PERSONALIZED, model.version, unknown)
    return [answer for answer in answers if answer is not None]
