"""Recommend, SimilarItems and GetModelInfo over a real loopback server."""

from __future__ import annotations

import grpc
import pandas as pd
import pytest

from mfrec.client import RecommenderClient, RecommenderError, Source
from mfrec.server.app import RunningServer

pytestmark = pytest.mark.integration


def test_known_user_gets_personalized_unseen_items(
    client: RecommenderClient, ratings: pd.DataFrame
) -> None:
    answer = client.recommend("u4", k=5)
    seen = set(ratings.loc[ratings["user_id"] == "u4", "item_id"])
    assert answer.source is Source.PERSONALIZED
    assert len(answer.items) == 5 and not seen & set(answer.item_ids)
    assert answer.model_version == client.model_info().model_version


def test_unknown_user_gets_popular_items(client: RecommenderClient) -> None:
    answer = client.recommend("someone-new", k=3)
    assert answer.source is Source.POPULAR
    assert len(answer.items) == 3
    scores = [item.score for item in answer.items]
    assert scores == sorted(scores, reverse=True)
    excluded = client.recommend("someone-new", k=3, exclude=[answer.item_ids[0]])
    assert excluded.item_ids == client.recommend("someone-new", k=4).item_ids[1:]


def test_exclusions_and_include_seen(client: RecommenderClient, ratings: pd.DataFrame) -> None:
    seen = set(ratings.loc[ratings["user_id"] == "u4", "item_id"])
    every = client.recommend("u4", k=30, include_seen=True)
    assert set(every.item_ids) >= seen
    trimmed = client.recommend("u4", k=30, include_seen=True, exclude=every.item_ids[:5])
    assert trimmed.item_ids == every.item_ids[5:]


def test_k_zero_is_the_default_ten(client: RecommenderClient) -> None:
    assert len(client.recommend("nobody", k=0).items) == 10


@pytest.mark.parametrize(
    ("kwargs", "code", "text"),
    [
        ({"user_id": "", "k": 5}, grpc.StatusCode.INVALID_ARGUMENT, "user_id"),
        ({"user_id": "u1", "k": -1}, grpc.StatusCode.INVALID_ARGUMENT, "k must be >= 0"),
        ({"user_id": "u1", "k": 101}, grpc.StatusCode.INVALID_ARGUMENT, "at most 100"),
    ],
)
def test_bad_requests_get_invalid_argument(
    client: RecommenderClient, kwargs: dict[str, object], code: grpc.StatusCode, text: str
) -> None:
    version = client.model_info().model_version
    with pytest.raises(RecommenderError) as caught:
        client.recommend(**kwargs)  # type: ignore[arg-type]
    assert caught.value.code == code and text in caught.value.message
    assert client.model_info().model_version == version  # still serving the same model
    assert client.recommend("u1").items


def test_similar_items(client: RecommenderClient) -> None:
    answer = client.similar_items("i2", k=4, exclude=["i3"])
    assert len(answer.items) == 4 and not {"i2", "i3"} & {i.item_id for i in answer.items}
    with pytest.raises(RecommenderError) as caught:
        client.similar_items("not-an-item")
    assert caught.value.code == grpc.StatusCode.NOT_FOUND


def test_batch_matches_single_calls(client: RecommenderClient) -> None:
    requests = [{"user_id": "u1", "k": 3}, "stranger", {"user_id": "u2", "exclude": ["i1"]}]
    batch = client.recommend_batch(requests)
    singles = [
        client.recommend("u1", k=3),
        client.recommend("stranger"),
        client.recommend("u2", exclude=["i1"]),
    ]
    assert batch == singles


def test_model_info_reports_the_config_used(
    client: RecommenderClient, server: RunningServer
) -> None:
    info = client.model_info()
    assert info.user_count == 40 and info.item_count == 30
    assert info.config.factors == 4 and info.config.iterations == 3
    assert info.config.algorithm == "als-explicit"
    assert info.trained_at is not None
    assert info.model_version == server.store.require().version


def test_a_bare_string_is_refused_where_a_list_of_ids_is_expected(
    client: RecommenderClient,
) -> None:
    for kwargs in ({"exclude": "i1"}, {"allowed": "i1"}, {"recent": "i1"}):
        with pytest.raises(TypeError, match="not a single string"):
            client.recommend("u1", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="user_id must be a str"):
        client.recommend(196)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="token"):
        RecommenderClient("127.0.0.1:1", token="secret\n")


def test_an_empty_batch_is_an_empty_answer(client: RecommenderClient) -> None:
    assert client.recommend_batch([]) == []
