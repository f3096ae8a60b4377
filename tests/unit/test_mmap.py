"""A memory-mapped model: read-only shared pages, the same answers as one read into memory."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

from mfrec.server.model import ServingModel
from mfrec.server.recommender import (
    Limits,
    RecommendQuery,
    recommend,
    recommend_batch,
    similar_items,
)
from mfrec.training.pipeline import TrainingSummary

LIMITS = Limits(max_k=50)
QUERIES = [
    RecommendQuery("u0", k=7),
    RecommendQuery("u3", k=30, include_seen=True, exclude_item_ids=("i1", "i2")),
    RecommendQuery("u5", k=4, allowed_item_ids=("i4", "i8", "i15", "i22")),
    RecommendQuery("stranger", k=5),
]


@pytest.fixture(scope="module")
def models(shared_model: TrainingSummary) -> tuple[ServingModel, ServingModel]:
    return ServingModel.load(shared_model.path, mmap=True), ServingModel.load(
        shared_model.path, mmap=False
    )


def test_arrays_are_read_only_views_of_the_files(
    models: tuple[ServingModel, ServingModel],
) -> None:
    mapped, loaded = models
    for model, expect_mapped in ((mapped, True), (loaded, False)):
        item_factors = model.artifact.factors.item_factors
        assert type(item_factors) is np.ndarray  # no np.memmap indexing overhead per request
        assert not isinstance(item_factors, np.memmap)
        base = item_factors
        while isinstance(base, np.ndarray) and base.base is not None:
            base = base.base
        assert isinstance(base, mmap.mmap) is expect_mapped
    with pytest.raises(ValueError, match="read-only"):
        mapped.artifact.factors.item_factors[0, 0] = 1.0


def test_mapped_and_loaded_models_answer_the_same(
    models: tuple[ServingModel, ServingModel],
) -> None:
    mapped, loaded = models
    for query in QUERIES:
        assert recommend(mapped, query, LIMITS) == recommend(loaded, query, LIMITS)
    assert recommend_batch(mapped, QUERIES, LIMITS) == recommend_batch(loaded, QUERIES, LIMITS)
    assert similar_items(mapped, "i3", 6, ("i4",), LIMITS) == similar_items(
        loaded, "i3", 6, ("i4",), LIMITS
    )
    np.testing.assert_array_equal(mapped.item_norms, loaded.item_norms)
    np.testing.assert_array_equal(mapped.popularity_rank, loaded.popularity_rank)
