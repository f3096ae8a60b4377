"""Fold-in, allowed lists and similar items over a real server, through the client."""

from __future__ import annotations

import grpc
import pandas as pd
import pytest

from mfrec.client import RecommenderClient, RecommenderError, Source

pytestmark = pytest.mark.integration

GROUP_A = [f"i{n}" for n in range(15)]  # the items even-numbered users rate 5


def test_an_unknown_user_is_folded_in_from_recent_items(client: RecommenderClient) -> None:
    recent = ["i0", "i1", "i2", "i3"]
    answer = client.recommend("brand-new", k=5, recent=recent)
    assert answer.source is Source.FOLD_IN
    assert not set(recent) & set(answer.item_ids)
    # Liking four items of the first half predicts the rest of that half first.
    assert set(answer.item_ids) <= set(GROUP_A)
    scores = [item.score for item in answer.items]
    assert scores == sorted(scores, reverse=True)


def test_recent_values_steer_the_fold_in(client: RecommenderClient) -> None:
    disliked = client.recommend(
        "brand-new", k=5, recent=["i0", "i1", "i2"], recent_values=[1.0, 1.0, 1.0]
    )
    assert disliked.source is Source.FOLD_IN
    assert not set(disliked.item_ids) & set(GROUP_A)


def test_unknown_recent_items_are_reported_and_ignored(client: RecommenderClient) -> None:
    answer = client.recommend("brand-new", recent=["i4", "no-such-item", "i5"])
    assert answer.source is Source.FOLD_IN
    assert answer.ignored_item_ids == ["no-such-item"]
    nothing_usable = client.recommend("brand-new", recent=["ghost-1", "ghost-2"])
    assert nothing_usable.source is Source.POPULAR
    assert nothing_usable.ignored_item_ids == ["ghost-1", "ghost-2"]
    assert client.recommend("brand-new", recent=[]).source is Source.POPULAR


def test_a_known_user_keeps_the_trained_vector_and_recent_items_are_excluded(
    client: RecommenderClient,
) -> None:
    plain = client.recommend("u0", k=5)
    answer = client.recommend("u0", k=5, recent=plain.item_ids[:2])
    assert answer.source is Source.PERSONALIZED
    assert answer.item_ids[:3] == plain.item_ids[2:5]


def test_mismatched_recent_values_are_invalid(client: RecommenderClient) -> None:
    with pytest.raises(RecommenderError) as caught:
        client.recommend("brand-new", recent=["i1", "i2"], recent_values=[5.0])
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_allowed_items_apply_to_every_source(
    client: RecommenderClient, ratings: pd.DataFrame
) -> None:
    allowed = ["i1", "i16", "i29", "unknown-item"]
    for kwargs in (
        {"user_id": "u0", "include_seen": True},
        {"user_id": "nobody"},
        {"user_id": "nobody", "recent": ["i2", "i3"]},
    ):
        answer = client.recommend(k=10, allowed=allowed, **kwargs)  # type: ignore[arg-type]
        assert set(answer.item_ids) <= {"i1", "i16", "i29"} and answer.items
    seen = set(ratings.loc[ratings["user_id"] == "u0", "item_id"])
    filtered = client.recommend("u0", k=10, allowed=allowed, exclude=["i16"])
    assert not (set(filtered.item_ids) & (seen | {"i16"}))


def test_similar_items_edge_cases(client: RecommenderClient) -> None:
    everything = client.similar_items("i0", k=100)
    assert len(everything.items) == 29  # every other item, never the item itself
    with pytest.raises(RecommenderError) as caught:
        client.similar_items("")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(RecommenderError) as caught:
        client.similar_items("i0", k=-3)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
