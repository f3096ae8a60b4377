"""The approximate item index: valid answers with exact scores, high recall, a safe artifact."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from mfrec.server.model import ServingModel
from mfrec.server.recommender import Limits, RecommendQuery, Source, recommend, recommend_batch
from mfrec.training import ann
from mfrec.training.artifact import ArtifactError, ModelArtifact, read_artifact, write_artifact
from mfrec.training.config import TrainingConfig
from mfrec.training.factors import Factors
from mfrec.training.ids import IdIndex
from mfrec.training.pipeline import build_artifact, with_index
from mfrec.training.popularity import Popularity
from mfrec.training.synthetic import synthetic_factor_model, synthetic_ratings

pytest.importorskip("faiss", reason="faiss-cpu (the ann extra) is not installed")

LIMITS = Limits(max_k=200)
N_USERS, N_ITEMS, SEEN_PER_USER = 300, 4000, 20


def synthetic_artifact(seed: int = 0) -> ModelArtifact:
    """A trained-looking model (synthetic factors) with SEEN_PER_USER seen items per user."""
    user_factors, item_factors, item_bias = synthetic_factor_model(N_USERS, N_ITEMS, 16, seed)
    rng = np.random.default_rng(seed + 1)
    seen = np.stack(
        [np.sort(rng.choice(N_ITEMS, SEEN_PER_USER, replace=False)) for _ in range(N_USERS)]
    )
    order = np.lexsort((np.arange(N_ITEMS), -item_bias)).astype(np.int32)
    return ModelArtifact(
        factors=Factors(
            user_factors,
            item_factors,
            (0.1 * rng.standard_normal(N_USERS)).astype(np.float32),
            item_bias,
            3.5,
        ),
        user_ids=IdIndex.build([f"u{i}" for i in range(N_USERS)]),
        item_ids=IdIndex.build([f"i{i}" for i in range(N_ITEMS)]),
        seen_indptr=np.arange(0, N_USERS * SEEN_PER_USER + 1, SEEN_PER_USER, dtype=np.int64),
        seen_indices=seen.astype(np.int32).ravel(),
        popularity=Popularity(order=order, scores=(3.5 + item_bias).astype(np.float32)),
        metadata={
            "model_version": "20240101T000000000000Z",
            "config": {},
            "global_mean": 3.5,
            "trained_at": "2024-01-01T00:00:00+00:00",
        },
    )


@pytest.fixture(scope="module")
def exact_artifact() -> ModelArtifact:
    return synthetic_artifact()


@pytest.fixture(scope="module")
def indexed_artifact(exact_artifact: ModelArtifact) -> ModelArtifact:
    return with_index(exact_artifact, ann.HNSW)


@pytest.fixture(scope="module")
def exact(exact_artifact: ModelArtifact) -> ServingModel:
    return ServingModel.from_artifact(exact_artifact)


@pytest.fixture(scope="module")
def approximate(indexed_artifact: ModelArtifact) -> ServingModel:
    return ServingModel.from_artifact(indexed_artifact)


def indices(items: list[tuple[str, float]]) -> list[int]:
    return [int(item_id[1:]) for item_id, _ in items]


def test_answers_are_valid_unseen_unexcluded_and_exactly_scored(
    approximate: ServingModel, exact: ServingModel
) -> None:
    assert approximate.approximate and not exact.approximate
    for user in range(0, N_USERS, 7):
        best = indices(recommend(exact, RecommendQuery(f"u{user}", k=5), LIMITS).items)
        excluded = tuple(f"i{i}" for i in best[:3])
        answer = recommend(
            approximate, RecommendQuery(f"u{user}", k=10, exclude_item_ids=excluded), LIMITS
        )
        got = indices(answer.items)
        assert answer.source is Source.PERSONALIZED
        assert len(got) == 10 and len(set(got)) == 10
        assert not set(got) & set(approximate.seen_items(user).tolist())
        assert not set(got) & set(best[:3])
        scores = [score for _, score in answer.items]
        expected = approximate.exact_scores(
            np.asarray(user, dtype=np.int64), np.asarray(got, dtype=np.int64)
        )
        assert scores == expected.tolist()
        assert [(-s, i) for s, i in zip(scores, got, strict=True)] == sorted(
            (-s, i) for s, i in zip(scores, got, strict=True)
        )


def test_recall_at_10_against_exact_search_is_high(
    approximate: ServingModel, exact: ServingModel
) -> None:
    hits = 0
    users = range(0, N_USERS, N_USERS // 200 or 1)
    for user in users:
        query = RecommendQuery(f"u{user}", k=10)
        truth = set(indices(recommend(exact, query, LIMITS).items))
        hits += len(truth & set(indices(recommend(approximate, query, LIMITS).items)))
    assert hits / (10 * len(users)) >= 0.8


def test_include_seen_may_return_seen_items(approximate: ServingModel) -> None:
    answer = recommend(
        approximate, RecommendQuery("u3", k=N_ITEMS // 20, include_seen=True), LIMITS
    )
    assert len(answer.items) == N_ITEMS // 20


def test_too_few_survivors_fall_back_to_exact_search(
    approximate: ServingModel, exact: ServingModel
) -> None:
    # The user's exact top 1,000 excluded: the index's few hundred candidates all fall in it.
    top = indices(
        recommend(exact, RecommendQuery("u5", k=1000, include_seen=True), Limits(max_k=1000)).items
    )
    query = RecommendQuery("u5", k=10, exclude_item_ids=tuple(f"i{i}" for i in top))
    assert recommend(approximate, query, LIMITS) == recommend(exact, query, LIMITS)


def test_allowed_lists_fold_in_and_popular_stay_exact(
    approximate: ServingModel, exact: ServingModel
) -> None:
    queries = [
        RecommendQuery("u1", k=5, allowed_item_ids=tuple(f"i{i}" for i in range(0, N_ITEMS, 9))),
        RecommendQuery("stranger", k=5, recent_item_ids=("i1", "i2", "i3")),
        RecommendQuery("stranger", k=5),
    ]
    for query in queries:
        assert recommend(approximate, query, LIMITS) == recommend(exact, query, LIMITS)


def test_batch_answers_what_recommend_answers(approximate: ServingModel) -> None:
    queries = [
        RecommendQuery(f"u{user}", k=3 + user % 7, include_seen=user % 3 == 0) for user in range(40)
    ] + [RecommendQuery("stranger", k=4), RecommendQuery("u2", k=4, exclude_item_ids=("i0",))]
    batch = recommend_batch(approximate, queries, LIMITS)
    assert batch == [recommend(approximate, query, LIMITS) for query in queries]


def test_an_index_model_round_trips_through_the_artifact(
    indexed_artifact: ModelArtifact, approximate: ServingModel, tmp_path: Path
) -> None:
    path = write_artifact(indexed_artifact, tmp_path)
    assert (path / ann.INDEX_FILE).is_file()
    for mmap in (True, False):
        loaded = ServingModel.load(path, mmap=mmap)
        assert loaded.approximate and loaded.metadata["index"] == ann.HNSW
        for user in range(0, N_USERS, 30):
            query = RecommendQuery(f"u{user}", k=10)
            assert (
                recommend(loaded, query, LIMITS).items
                == recommend(approximate, query, LIMITS).items
            )


def test_an_exact_model_has_no_index_and_answers_as_before(
    exact_artifact: ModelArtifact, exact: ServingModel, tmp_path: Path
) -> None:
    marked = with_index(exact_artifact, ann.EXACT)
    path = write_artifact(marked, tmp_path)
    assert not (path / ann.INDEX_FILE).exists()
    loaded = ServingModel.load(path)
    assert not loaded.approximate and loaded.metadata["index"] == ann.EXACT
    queries = [RecommendQuery(f"u{user}", k=10) for user in range(20)]
    assert [answer.items for answer in recommend_batch(loaded, queries, LIMITS)] == [
        recommend(exact, q, LIMITS).items for q in queries
    ]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "other model"])
def test_a_bad_index_file_is_an_artifact_error_naming_it(
    indexed_artifact: ModelArtifact, damage: str, tmp_path: Path
) -> None:
    path = write_artifact(indexed_artifact, tmp_path)
    file = path / ann.INDEX_FILE
    if damage == "garbage":
        file.write_bytes(b"not an index" * 100)
    elif damage == "truncated":
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    elif damage == "missing":
        file.unlink()
    else:
        f = indexed_artifact.factors
        ann.write_index(ann.build_hnsw(f.item_factors[:100], f.item_bias[:100]), file)
    with pytest.raises(ArtifactError, match=ann.INDEX_FILE):
        read_artifact(path)


def test_an_unknown_index_kind_is_an_artifact_error(
    exact_artifact: ModelArtifact, tmp_path: Path
) -> None:
    path = write_artifact(exact_artifact, tmp_path)
    metadata = path / "metadata.json"
    metadata.write_text(metadata.read_text().replace("{", '{"index": "ivf", ', 1))
    with pytest.raises(ArtifactError, match="index 'ivf' is not supported"):
        read_artifact(path)


def test_without_faiss_an_index_model_is_served_exactly_with_a_warning(
    indexed_artifact: ModelArtifact,
    exact: ServingModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = write_artifact(indexed_artifact, tmp_path)

    def missing() -> None:
        raise ImportError(ann.MISSING_FAISS)

    monkeypatch.setattr(ann, "import_faiss", missing)
    with caplog.at_level(logging.WARNING):
        loaded = ServingModel.load(path)
    assert not loaded.approximate
    assert "serving it by exact search" in caplog.text
    query = RecommendQuery("u4", k=10)
    assert recommend(loaded, query, LIMITS).items == recommend(exact, query, LIMITS).items


def test_the_pipeline_builds_the_index_it_is_asked_for() -> None:
    frame = synthetic_ratings(60, 80, 1500, seed=3)
    config = TrainingConfig(factors=4, iterations=2, validation_fraction=0.0)
    artifact = build_artifact(frame, config, index=ann.HNSW)
    assert artifact.metadata["index"] == ann.HNSW and artifact.item_index.ntotal == 80
    assert build_artifact(frame, config).item_index is None
    with pytest.raises(ValueError, match="index must be one of"):
        build_artifact(frame, config, index="ivf")
