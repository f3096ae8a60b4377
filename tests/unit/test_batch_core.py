"""RecommendBatch in the core: every answer equals Recommend's, ties and exclusions included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfrec.server import recommender
from mfrec.server.errors import InvalidRequest
from mfrec.server.model import ServingModel
from mfrec.server.recommender import Limits, RecommendQuery, Source, recommend, recommend_batch
from mfrec.training.artifact import ModelArtifact
from mfrec.training.factors import Factors
from mfrec.training.ids import IdIndex
from mfrec.training.popularity import Popularity

LIMITS = Limits(max_k=200)


def grid_model(n_users: int, n_items: int, factors: int = 4, seed: int = 0) -> ServingModel:
    """A model whose embeddings sit on a coarse grid, so many scores tie exactly."""
    return ServingModel.from_artifact(grid_artifact(n_users, n_items, factors, seed))


def grid_artifact(n_users: int, n_items: int, factors: int = 4, seed: int = 0) -> ModelArtifact:
    """The artifact of grid_model, ready for write_artifact."""
    rng = np.random.default_rng(seed)
    user_factors = rng.integers(-2, 3, size=(n_users, factors)).astype(np.float32) / 2
    item_factors = rng.integers(-2, 3, size=(n_items, factors)).astype(np.float32) / 4
    item_bias = rng.integers(-1, 2, size=n_items).astype(np.float32) / 8
    seen = [
        np.sort(rng.choice(n_items, rng.integers(0, n_items // 3 + 1), replace=False))
        for _ in range(n_users)
    ]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum([s.size for s in seen], out=indptr[1:])
    order = np.lexsort((np.arange(n_items), -item_bias)).astype(np.int32)
    return ModelArtifact(
        factors=Factors(user_factors, item_factors, np.zeros(n_users, np.float32), item_bias, 3.0),
        user_ids=IdIndex.build([f"u{i}" for i in range(n_users)]),
        item_ids=IdIndex.build([f"i{i}" for i in range(n_items)]),
        seen_indptr=indptr,
        seen_indices=np.concatenate(seen).astype(np.int32),
        popularity=Popularity(order=order, scores=(3.0 + item_bias).astype(np.float32)),
        metadata={
            "model_version": "20240101T000000000000Z",
            "config": {},
            "global_mean": 3.0,
            "trained_at": "2024-01-01T00:00:00+00:00",
        },
    )


def reference(model: ServingModel, query: RecommendQuery, k: int) -> list[tuple[str, float]]:
    """Brute force: every eligible item scored exactly, sorted by score then item index."""
    user = model.user_index(query.user_id)
    n = model.n_items
    eligible = np.ones(n, dtype=bool)
    eligible[model.item_indices(query.exclude_item_ids + query.recent_item_ids)] = False
    if not query.include_seen:
        eligible[model.seen_items(user)] = False
    if query.allowed_item_ids:
        allowed = np.zeros(n, dtype=bool)
        allowed[model.item_indices(query.allowed_item_ids)] = True
        eligible &= allowed
    items = np.flatnonzero(eligible)
    scores = model.exact_scores(np.asarray(user, dtype=np.int64), items)
    best = sorted(zip(items.tolist(), scores.tolist(), strict=True), key=lambda p: (-p[1], p[0]))
    return [(f"i{i}", s) for i, s in best[:k]]


def test_ties_are_broken_by_item_index() -> None:
    model = grid_model(6, 40)
    for user in range(6):
        answer = recommend(model, RecommendQuery(f"u{user}", k=40, include_seen=True), LIMITS)
        pairs = [(-score, int(item[1:])) for item, score in answer.items]
        assert pairs == sorted(pairs) and len(pairs) == 40
        assert len({score for _, score in answer.items}) < 40  # the grid really ties


queries = st.builds(
    RecommendQuery,
    user_id=st.sampled_from(["u0", "u1", "u2", "u3", "u7", "stranger"]),
    k=st.integers(0, 60),
    exclude_item_ids=st.lists(
        st.sampled_from([f"i{i}" for i in range(50)] + ["nope"]), max_size=6
    ).map(tuple),
    include_seen=st.booleans(),
    recent_item_ids=st.lists(st.sampled_from(["i3", "i9", "gone"]), max_size=2).map(tuple),
    allowed_item_ids=st.one_of(
        st.just(()), st.lists(st.sampled_from([f"i{i}" for i in range(50)]), max_size=8).map(tuple)
    ),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(queries, max_size=12))
def test_batch_equals_single_calls_and_brute_force(batch: list[RecommendQuery]) -> None:
    model = _GRID
    answers = recommend_batch(model, batch, LIMITS)
    assert answers == [recommend(model, query, LIMITS) for query in batch]
    for query, answer in zip(batch, answers, strict=True):
        if answer.source is Source.PERSONALIZED:
            assert answer.items == reference(model, query, query.k or 10)


_GRID = grid_model(8, 50, seed=3)


@pytest.mark.parametrize("rows_per_product", [1, 2, 6])
def test_large_catalog_uses_block_bounds_and_matches_brute_force(
    monkeypatch: pytest.MonkeyPatch, rows_per_product: int
) -> None:
    model = grid_model(5, 6000, factors=3, seed=1)
    batch = [
        RecommendQuery("u0", k=10),
        RecommendQuery("u1", k=1, include_seen=True),
        RecommendQuery("u2", k=25, exclude_item_ids=tuple(f"i{i}" for i in range(0, 6000, 2))),
        RecommendQuery("u3", k=7),
        RecommendQuery("u4", k=100, include_seen=True),
        # Fewer eligible items than k: the block bound is -inf and the row is partitioned.
        RecommendQuery(
            "u0", k=5, include_seen=True, exclude_item_ids=tuple(f"i{i}" for i in range(3, 6000))
        ),
    ]
    limits = Limits(max_k=200, max_exclude=6000)
    monkeypatch.setattr(recommender, "BATCH_SCORE_ELEMENTS", rows_per_product * model.n_items)
    monkeypatch.setattr(recommender, "MIN_BATCH_ROWS", 2)  # 1: one by one; 2, 6: products
    answers = recommend_batch(model, batch, limits)
    for query, answer in zip(batch, answers, strict=True):
        assert answer.items == reference(model, query, query.k)
        assert answer == recommend(model, query, limits)
    assert {item for item, _ in answers[-1].items} == {"i0", "i1", "i2"}


def test_rows_with_fewer_eligible_items_than_k() -> None:
    model = grid_model(3, 12, seed=5)
    everything = tuple(f"i{i}" for i in range(12))
    batch = [
        RecommendQuery("u0", k=50, include_seen=True, exclude_item_ids=everything[:10]),
        RecommendQuery("u1", k=50, include_seen=True, exclude_item_ids=everything),
        RecommendQuery("u2", k=50),
    ]
    answers = recommend_batch(model, batch, LIMITS)
    assert [len(a.items) for a in answers[:2]] == [2, 0]
    assert answers == [recommend(model, q, LIMITS) for q in batch]


def test_unknown_users_and_ignored_recent_ids_match() -> None:
    batch = [
        RecommendQuery("stranger", k=5, recent_item_ids=("i1", "missing")),
        RecommendQuery("u1", k=5, recent_item_ids=("missing", "i2")),
    ]
    answers = recommend_batch(_GRID, batch, LIMITS)
    assert answers[0].source is not Source.PERSONALIZED
    assert answers[1].source is Source.PERSONALIZED
    assert answers[0].ignored_item_ids == ["missing"] == answers[1].ignored_item_ids
    assert answers == [recommend(_GRID, q, LIMITS) for q in batch]


def test_an_invalid_query_fails_the_batch_naming_its_index() -> None:
    batch = [RecommendQuery("u1"), RecommendQuery("u2"), RecommendQuery("u1", k=-1)]
    with pytest.raises(InvalidRequest, match=r"^requests\[2\]: k must be >= 0"):
        recommend_batch(_GRID, batch, LIMITS)
    assert recommend_batch(_GRID, [], LIMITS) == []
