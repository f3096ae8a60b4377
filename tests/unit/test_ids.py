"""The id index: exact round trips of arbitrary strings and misses for unknown ones."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mfrec.training.ids as ids_module
from mfrec.training.ids import NOT_FOUND, IdIndex


def test_lookup_and_decode() -> None:
    ids = ["196", "007", "7", "a,b", 'q"uote', "tab\there", "new\nline", "Misérables", ""]
    index = IdIndex.build(ids)
    assert len(index) == len(ids)
    for position, value in enumerate(ids):
        assert index.index_of(value) == position
        assert index.id_at(position) == value
    assert index.index_of("1960") == NOT_FOUND
    assert index.indices_of(["7", "missing"]).tolist() == [2, NOT_FOUND]
    index.validate()


def test_hash_collisions_are_resolved_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    index = IdIndex.build(["a", "b", "c"])
    colliding = IdIndex(
        blob=index.blob,
        offsets=index.offsets,
        hashes=np.zeros(3, dtype=np.uint64),
        order=np.arange(3, dtype=np.int64),
    )
    # Every hash equal: lookups must still find each id by comparing bytes.
    monkeypatch.setattr(ids_module, "hash_id", lambda encoded: 0)
    assert [colliding.index_of(v) for v in "abc"] == [0, 1, 2]
    assert colliding.index_of("d") == NOT_FOUND


@given(st.lists(st.text(max_size=12), unique=True, max_size=40))
def test_round_trip_of_any_unique_strings(ids: list[str]) -> None:
    try:
        index = IdIndex.build(ids)
    except UnicodeEncodeError:  # lone surrogates are not valid UTF-8 ids
        return
    assert index.all_ids() == ids
    assert [index.index_of(v) for v in ids] == list(range(len(ids)))
