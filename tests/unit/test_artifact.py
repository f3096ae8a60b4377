"""Model artifacts: round trip, atomic versions, and rejection of every kind of corruption."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mfrec.server.store import ModelStore
from mfrec.training.artifact import (
    TEMP_PREFIX,
    ArtifactError,
    list_versions,
    new_version,
    read_artifact,
)
from mfrec.training.pipeline import TrainingSummary


def _copy(summary: TrainingSummary, tmp_path: Path) -> Path:
    target = tmp_path / "models" / summary.model_version
    shutil.copytree(summary.path, target)
    return target


def test_round_trip_keeps_arrays_ids_and_metadata(
    shared_model: TrainingSummary, ratings: object
) -> None:
    for mmap in (True, False):
        artifact = read_artifact(shared_model.path, mmap=mmap)
        assert artifact.version == shared_model.model_version
        assert len(artifact.user_ids) == shared_model.user_count
        assert sorted(artifact.item_ids.all_ids()) == sorted(set(ratings["item_id"]))  # type: ignore[index]
        assert artifact.factors.user_factors.dtype == np.float32
        assert artifact.metadata["rating_count"] == shared_model.rating_count
    mapped = read_artifact(shared_model.path, mmap=True)
    loaded = read_artifact(shared_model.path, mmap=False)
    assert isinstance(mapped.factors.item_factors, np.memmap)
    np.testing.assert_array_equal(mapped.factors.item_factors, loaded.factors.item_factors)


def test_versions_sort_in_time_order_and_stay_unique(tmp_path: Path) -> None:
    names = []
    for _ in range(5):
        name = new_version(tmp_path)
        (tmp_path / name).mkdir()
        names.append(name)
    assert names == sorted(names)
    assert len(set(names)) == 5
    assert list_versions(tmp_path) == names
    (tmp_path / f"{TEMP_PREFIX}{names[-1]}-1").mkdir()
    assert list_versions(tmp_path) == names  # unfinished saves are never versions


def _truncate(name: str) -> Callable[[Path], None]:
    def corrupt(path: Path) -> None:
        data = (path / name).read_bytes()
        (path / name).write_bytes(data[: len(data) // 2])

    return corrupt


def _replace_array(name: str, array: np.ndarray) -> Callable[[Path], None]:
    return lambda path: np.save(path / name, array)


def _edit_metadata(**changes: object) -> Callable[[Path], None]:
    def corrupt(path: Path) -> None:
        metadata = json.loads((path / "metadata.json").read_text())
        metadata.update(changes)
        (path / "metadata.json").write_text(json.dumps(metadata))

    return corrupt


def _directory_instead(name: str) -> Callable[[Path], None]:
    def corrupt(path: Path) -> None:
        (path / name).unlink()
        (path / name).mkdir()

    return corrupt


def _dangling_link(name: str) -> Callable[[Path], None]:
    def corrupt(path: Path) -> None:
        (path / name).unlink()
        (path / name).symlink_to(path / "does-not-exist.npy")

    return corrupt


def _empty(path: Path) -> None:
    for entry in path.iterdir():
        entry.unlink()


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty directory": (_empty, "metadata.json is missing"),
    "truncated id blob": (_truncate("item_ids.blob.npy"), "item_ids.blob"),
    "metadata not an object": (
        lambda p: (p / "metadata.json").write_text("[1, 2]"),
        "not a JSON object",
    ),
    "truncated npy": (_truncate("item_factors.npy"), "item_factors"),
    "truncated metadata": (_truncate("metadata.json"), "model"),
    "missing array": (lambda p: (p / "user_bias.npy").unlink(), "user_bias.npy is missing"),
    "mismatched shapes": (
        _replace_array("item_bias.npy", np.zeros(3, dtype=np.float32)),
        "item arrays do not match",
    ),
    "wrong dtype": (
        _replace_array("user_factors.npy", np.zeros((40, 4), dtype=np.float64)),
        "dtype float64",
    ),
    "NaN factors": (
        _replace_array("user_factors.npy", np.full((40, 4), np.nan, dtype=np.float32)),
        "NaN",
    ),
    "future format": (_edit_metadata(format_version=99), "format version 99"),
    "other version named": (_edit_metadata(model_version="x"), "another version"),
    "directory instead of file": (_directory_instead("seen_indices.npy"), "not a file"),
    "dangling link": (_dangling_link("popularity_order.npy"), "not a file"),
    "bad popularity": (
        _replace_array("popularity_order.npy", np.zeros(30, dtype=np.int32)),
        "permutation",
    ),
    "seen out of range": (_replace_array("seen_indices.npy", np.full(600, 99, np.int32)), "seen"),
    "pickled array": (
        _replace_array("item_bias.npy", np.array([object()], dtype=object)),
        "model",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_artifact_is_rejected_with_a_clear_error(
    case: str, shared_model: TrainingSummary, tmp_path: Path
) -> None:
    corrupt, message = CORRUPTIONS[case]
    path = _copy(shared_model, tmp_path)
    corrupt(path)
    with pytest.raises(ArtifactError, match=message):
        read_artifact(path)


def test_store_skips_a_broken_newest_version(shared_model: TrainingSummary, tmp_path: Path) -> None:
    good = _copy(shared_model, tmp_path)
    broken = good.parent / new_version(good.parent)
    shutil.copytree(good, broken)
    _edit_metadata(model_version=broken.name, format_version=2)(broken)
    model = ModelStore(good.parent).load_newest()
    assert model is not None and model.version == good.name


def test_store_with_no_usable_version_serves_nothing(tmp_path: Path) -> None:
    (tmp_path / "20260101T000000000000Z").mkdir()
    assert ModelStore(tmp_path).load_newest() is None
    assert ModelStore(tmp_path / "absent").load_newest() is None


def test_prune_keeps_the_newest_and_the_serving_version(
    shared_model: TrainingSummary, tmp_path: Path
) -> None:
    first = _copy(shared_model, tmp_path)
    for _ in range(3):
        name = new_version(first.parent)
        shutil.copytree(first, first.parent / name)
        _edit_metadata(model_version=name)(first.parent / name)
    store = ModelStore(first.parent, keep_versions=2)
    store.swap(store.load_version(first))  # serving the oldest: it must survive pruning
    removed = store.prune()
    remaining = list_versions(first.parent)
    assert first.name in remaining and len(remaining) == 3 and len(removed) == 1


def test_only_saves_whose_writer_is_gone_are_cleaned_up(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from mfrec.training.artifact import remove_stale_temporaries

    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = tmp_path / f"{TEMP_PREFIX}20260101T000000000000Z-{finished.stdout.strip()}"
    live = tmp_path / f"{TEMP_PREFIX}20260101T000000000001Z-{os.getpid()}"
    unnamed = tmp_path / f"{TEMP_PREFIX}odd"
    for folder in (dead, live, unnamed):
        folder.mkdir()
    remove_stale_temporaries(tmp_path)
    assert live.exists() and not dead.exists() and not unnamed.exists()
    remove_stale_temporaries(tmp_path, older_than_seconds=-1.0)
    assert not live.exists()  # old enough: the id may have been reused
