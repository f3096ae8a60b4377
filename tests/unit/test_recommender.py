"""The serving core on a real trained snapshot: personalization, masks, fallbacks, limits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mfrec.server.errors import InvalidRequest, NotFound
from mfrec.server.model import ServingModel
from mfrec.server.recommender import (
    Limits,
    RecommendQuery,
    Source,
    recommend,
    recommend_batch,
    similar_items,
)
from mfrec.training.pipeline import TrainingSummary

LIMITS = Limits(max_k=50, max_id_bytes=16, max_exclude=5, max_allowed=5)


@pytest.fixture(scope="module")
def model(shared_model: TrainingSummary) -> ServingModel:
    return ServingModel.load(shared_model.path)


def _seen(ratings: pd.DataFrame, user: str) -> set[str]:
    return set(ratings.loc[ratings["user_id"] == user, "item_id"])


def test_known_user_gets_unseen_items_of_their_own_group(
    model: ServingModel, ratings: pd.DataFrame
) -> None:
    answer = recommend(model, RecommendQuery("u0", k=5), LIMITS)
    assert answer.source is Source.PERSONALIZED
    ids = [item for item, _ in answer.items]
    assert len(ids) == 5 and not set(ids) & _seen(ratings, "u0")
    assert all(int(item[1:]) < 15 for item in ids)  # u0's group likes items 0..14
    scores = [score for _, score in answer.items]
    assert scores == sorted(scores, reverse=True)


def test_include_seen_and_exclusions(model: ServingModel, ratings: pd.DataFrame) -> None:
    everything = recommend(model, RecommendQuery("u0", k=30, include_seen=True), LIMITS)
    assert len(everything.items) == 30
    excluded = tuple(item for item, _ in everything.items[:3])
    answer = recommend(
        model, RecommendQuery("u0", k=30, include_seen=True, exclude_item_ids=excluded), LIMITS
    )
    assert not set(excluded) & {item for item, _ in answer.items}
    assert len(answer.items) == 27


def test_fewer_eligible_than_k_returns_what_is_left(
    model: ServingModel, ratings: pd.DataFrame
) -> None:
    answer = recommend(model, RecommendQuery("u0", k=50), LIMITS)
    assert len(answer.items) == 30 - len(_seen(ratings, "u0"))


def test_unknown_user_gets_popular_items_minus_exclusions(model: ServingModel) -> None:
    popular = recommend(model, RecommendQuery("stranger", k=4), LIMITS)
    assert popular.source is Source.POPULAR
    order = np.asarray(model.artifact.popularity.order[:5])
    expected = model.artifact.item_ids.ids_at(order.tolist())
    assert [item for item, _ in popular.items] == expected[:4]
    answer = recommend(
        model, RecommendQuery("stranger", k=4, exclude_item_ids=(expected[0],)), LIMITS
    )
    assert [item for item, _ in answer.items] == expected[1:5]


def test_allowed_items_restrict_every_source(model: ServingModel) -> None:
    allowed = ("i3", "i20", "i7", "unknown")
    for user in ("u0", "stranger"):
        answer = recommend(
            model,
            RecommendQuery(user, k=10, include_seen=True, allowed_item_ids=allowed),
            LIMITS,
        )
        assert {item for item, _ in answer.items} == {"i3", "i20", "i7"}


def test_answers_are_deterministic(model: ServingModel) -> None:
    query = RecommendQuery("u3", k=7)
    assert recommend(model, query, LIMITS) == recommend(model, query, LIMITS)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (RecommendQuery(""), "user_id is required"),
        (RecommendQuery("   "), "user_id is required"),
        (RecommendQuery("x" * 17), "longer than 16 bytes"),
        (RecommendQuery("é" * 9), "longer than 16 bytes"),
        (RecommendQuery("u0", k=-1), "k must be >= 0"),
        (RecommendQuery("u0", k=51), "k must be at most 50"),
        (RecommendQuery("u0", exclude_item_ids=("a",) * 6), "at most 5"),
        (RecommendQuery("u0", allowed_item_ids=("a",) * 6), "at most 5"),
        (RecommendQuery("u0", recent_item_ids=("i1",), recent_values=(1.0, 2.0)), "one value"),
        (RecommendQuery("u0", recent_item_ids=("i1",), recent_values=(float("nan"),)), "finite"),
    ],
)
def test_invalid_queries_are_rejected(
    model: ServingModel, query: RecommendQuery, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        recommend(model, query, LIMITS)


def test_k_zero_means_ten(model: ServingModel) -> None:
    assert len(recommend(model, RecommendQuery("stranger", k=0), LIMITS).items) == 10


def test_batch_equals_single_answers_and_names_the_bad_index(model: ServingModel) -> None:
    queries = [RecommendQuery("u1", k=3), RecommendQuery("nobody", k=2), RecommendQuery("u2")]
    assert recommend_batch(model, queries, LIMITS) == [recommend(model, q, LIMITS) for q in queries]
    with pytest.raises(InvalidRequest, match=r"requests\[1\]"):
        recommend_batch(model, [RecommendQuery("u1"), RecommendQuery("u1", k=-2)], LIMITS)


def test_similar_items_are_closest_by_cosine_and_exclude_the_item(model: ServingModel) -> None:
    items = similar_items(model, "i0", 5, ("i1",), LIMITS)
    ids = [item for item, _ in items]
    assert "i0" not in ids and "i1" not in ids and len(ids) == 5
    assert all(-1.0001 <= score <= 1.0001 for _, score in items)
    factors = np.asarray(model.artifact.factors.item_factors, dtype=np.float64)
    index = model.artifact.item_ids.index_of
    target = factors[index("i0")]
    best = ids[0]
    cosine = (
        factors[index(best)]
        @ target
        / np.linalg.norm(factors[index(best)])
        / np.linalg.norm(target)
    )
    assert items[0][1] == pytest.approx(cosine, abs=1e-5)
    with pytest.raises(NotFound):
        similar_items(model, "nope", 5, (), LIMITS)
