"""Tests of the MovieLens fetcher: data home, offline errors, checksums, install, and titles."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import urllib.error
import zipfile
from pathlib import Path

import pytest

from mfrec.training import datasets
from mfrec.training.datasets import (
    DATA_HOME_ENV,
    DatasetUnavailable,
    MovieLensDataset,
    fetch_movielens,
    get_data_home,
    load_item_titles,
)
from mfrec.training.loaders import load_ratings

FAKE_RATINGS = b"1\t10\t4\t881250949\n2\t10\t3\t881250950\n"
FAKE_ITEMS = "10|Misérables, Les (1995)|01-Jan-1995||http://x|0|1\n".encode("latin-1")


def _real_file(*parts: str) -> Path:
    home = os.environ.get(DATA_HOME_ENV)
    if not home:
        pytest.skip(f"{DATA_HOME_ENV} is not set, so the real MovieLens files are not available")
    path = Path(home).joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} is absent from the data home")
    return path


def _zip(tmp_path: Path, name: str, members: dict[str, bytes]) -> str:
    """Writes <tmp>/served/<name>.zip and returns the file:// base URL serving it."""
    served = tmp_path / "served"
    served.mkdir(exist_ok=True)
    with zipfile.ZipFile(served / f"{name}.zip", "w") as bundle:
        for member, content in members.items():
            bundle.writestr(member, content)
    return served.as_uri() + "/"


def _trust(monkeypatch: pytest.MonkeyPatch, name: str, ratings: bytes, items: bytes) -> None:
    """Makes the fetcher expect the checksums of the given contents."""
    remote = dataclasses.replace(
        datasets.REMOTE_DATASETS[name],
        ratings_sha256=hashlib.sha256(ratings).hexdigest(),
        items_sha256=hashlib.sha256(items).hexdigest(),
    )
    monkeypatch.setitem(datasets.REMOTE_DATASETS, name, remote)


def _forbid_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("no download was expected")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", refuse)


# The data home.


def test_data_home_argument_beats_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_HOME_ENV, str(tmp_path / "from-env"))
    assert get_data_home(tmp_path / "given") == tmp_path / "given"
    assert get_data_home(str(tmp_path / "given")) == tmp_path / "given"


def test_data_home_environment_beats_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_HOME_ENV, str(tmp_path / "from-env"))
    assert get_data_home() == tmp_path / "from-env"


def test_data_home_defaults_to_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(DATA_HOME_ENV, raising=False)
    assert get_data_home() == tmp_path / ".cache" / "mfrec"
    monkeypatch.setenv(DATA_HOME_ENV, "")
    assert get_data_home() == tmp_path / ".cache" / "mfrec"
    assert get_data_home("~/data") == tmp_path / "data"


# Finding and fetching.


def test_an_existing_copy_is_used_without_downloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _forbid_downloads(monkeypatch)
    (tmp_path / "ml-latest-small").mkdir()
    (tmp_path / "ml-latest-small" / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    dataset = fetch_movielens("ml-latest-small", data_home=tmp_path)
    assert dataset == MovieLensDataset(
        name="ml-latest-small",
        ratings_path=tmp_path / "ml-latest-small" / "ratings.csv",
        format="ml-csv",
        items_path=tmp_path / "ml-latest-small" / "movies.csv",
    )


def test_unknown_dataset_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'ml-1m'"):
        fetch_movielens("ml-1m", data_home=tmp_path)


def test_missing_copy_without_download_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _forbid_downloads(monkeypatch)
    with pytest.raises(DatasetUnavailable, match="downloading is turned off"):
        fetch_movielens("ml-100k", data_home=tmp_path, download_if_missing=False)


def test_offline_is_unavailable_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*_: object, **__: object) -> None:
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", offline)
    home = tmp_path / "home"
    with pytest.raises(DatasetUnavailable, match="cannot download .*ml-100k.zip.*name resolution"):
        fetch_movielens("ml-100k", data_home=home)
    assert list(home.iterdir()) == []


def test_unreachable_url_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "BASE_URL", (tmp_path / "nowhere").as_uri() + "/")
    with pytest.raises(DatasetUnavailable, match="cannot download"):
        fetch_movielens("ml-latest-small", data_home=tmp_path / "home")


def test_unwritable_data_home_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(DatasetUnavailable, match="cannot write to the data home"):
        fetch_movielens("ml-100k", data_home=blocker / "home")


def test_checksum_mismatch_installs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = {"ml-100k/u.data": FAKE_RATINGS, "ml-100k/u.item": FAKE_ITEMS}
    monkeypatch.setattr(datasets, "BASE_URL", _zip(tmp_path, "ml-100k", members))
    home = tmp_path / "home"
    with pytest.raises(DatasetUnavailable, match="u.data from ml-100k.zip has SHA-256"):
        fetch_movielens("ml-100k", data_home=home)
    assert list(home.iterdir()) == []


def test_verified_download_is_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    members = {
        "ml-100k/": b"",
        "ml-100k/u.data": FAKE_RATINGS,
        "ml-100k/u.item": FAKE_ITEMS,
        "ml-100k/README": b"readme",
        "elsewhere.txt": b"ignored",
    }
    monkeypatch.setattr(datasets, "BASE_URL", _zip(tmp_path, "ml-100k", members))
    _trust(monkeypatch, "ml-100k", FAKE_RATINGS, FAKE_ITEMS)
    home = tmp_path / "home"
    dataset = fetch_movielens("ml-100k", data_home=home)
    assert dataset.ratings_path.read_bytes() == FAKE_RATINGS
    assert sorted(p.name for p in home.iterdir()) == ["ml-100k"]
    assert sorted(p.name for p in (home / "ml-100k").iterdir()) == ["README", "u.data", "u.item"]
    assert load_ratings(dataset.ratings_path, dataset.format)["item_id"].tolist() == ["10", "10"]
    assert load_item_titles(dataset) == {"10": "Misérables, Les (1995)"}
    _forbid_downloads(monkeypatch)
    assert fetch_movielens("ml-100k", data_home=home) == dataset


def test_download_completes_a_partial_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    members = {"ml-100k/u.data": FAKE_RATINGS, "ml-100k/u.item": FAKE_ITEMS}
    monkeypatch.setattr(datasets, "BASE_URL", _zip(tmp_path, "ml-100k", members))
    _trust(monkeypatch, "ml-100k", FAKE_RATINGS, FAKE_ITEMS)
    folder = tmp_path / "home" / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "u.item").write_bytes(b"kept as it was")
    dataset = fetch_movielens("ml-100k", data_home=tmp_path / "home")
    assert dataset.ratings_path.read_bytes() == FAKE_RATINGS
    assert (folder / "u.item").read_bytes() == b"kept as it was"
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["ml-100k"]


def test_archive_without_the_ratings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = _zip(tmp_path, "ml-100k", {"ml-100k/u.item": FAKE_ITEMS})
    monkeypatch.setattr(datasets, "BASE_URL", url)
    with pytest.raises(DatasetUnavailable, match="ml-100k.zip has no u.data"):
        fetch_movielens("ml-100k", data_home=tmp_path / "home")


def test_corrupt_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "ml-100k.zip").write_bytes(b"this is not a zip")
    monkeypatch.setattr(datasets, "BASE_URL", served.as_uri() + "/")
    with pytest.raises(DatasetUnavailable, match="not a readable zip"):
        fetch_movielens("ml-100k", data_home=tmp_path / "home")


def test_archive_paths_cannot_escape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    members = {"ml-100k/../../escaped": b"x", "ml-100k/u.data": FAKE_RATINGS}
    monkeypatch.setattr(datasets, "BASE_URL", _zip(tmp_path, "ml-100k", members))
    with pytest.raises(DatasetUnavailable, match="unsafe path"):
        fetch_movielens("ml-100k", data_home=tmp_path / "home")
    assert not (tmp_path / "escaped").exists()
    assert list((tmp_path / "home").iterdir()) == []


def test_real_archive_passes_the_checksums(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ratings = _real_file("ml-100k", "u.data").read_bytes()
    items = _real_file("ml-100k", "u.item").read_bytes()
    members = {"ml-100k/u.data": ratings, "ml-100k/u.item": items}
    monkeypatch.setattr(datasets, "BASE_URL", _zip(tmp_path, "ml-100k", members))
    dataset = fetch_movielens("ml-100k", data_home=tmp_path / "home")
    assert dataset.ratings_path.read_bytes() == ratings


# The real data home.


def test_real_ml_100k() -> None:
    _real_file("ml-100k", "u.data")
    dataset = fetch_movielens("ml-100k", download_if_missing=False)
    assert dataset.format == "ml-100k" and dataset.ratings_path.name == "u.data"
    frame = load_ratings(dataset.ratings_path, dataset.format)
    assert len(frame) == 100_000
    assert frame["user_id"].nunique() == 943 and frame["item_id"].nunique() == 1682
    assert frame["rating"].between(1, 5).all()
    assert frame.iloc[0].tolist() == ["196", "242", 3.0, 881250949]


def test_real_ml_latest_small() -> None:
    _real_file("ml-latest-small", "ratings.csv")
    dataset = fetch_movielens("ml-latest-small", download_if_missing=False)
    assert dataset.format == "ml-csv"
    frame = load_ratings(dataset.ratings_path, dataset.format, rating_range=(0.5, 5.0))
    assert len(frame) == 100_836
    assert frame["user_id"].nunique() == 610 and frame["item_id"].nunique() == 9724
    assert set(frame["rating"].unique()) == {x / 2 for x in range(1, 11)}


# Titles.


def test_real_ml_100k_titles_are_latin1() -> None:
    _real_file("ml-100k", "u.item")
    titles = load_item_titles(fetch_movielens("ml-100k", download_if_missing=False))
    assert len(titles) == 1682
    assert titles["543"] == "Misérables, Les (1995)"
    assert titles["1"] == "Toy Story (1995)"


def test_real_ml_latest_small_titles_keep_commas() -> None:
    _real_file("ml-latest-small", "movies.csv")
    titles = load_item_titles(fetch_movielens("ml-latest-small", download_if_missing=False))
    assert len(titles) == 9742
    assert titles["11"] == "American President, The (1995)"
    assert sum(not title.isascii() for title in titles.values()) == 293


def test_movies_csv_titles_with_quotes_and_unicode(tmp_path: Path) -> None:
    path = tmp_path / "movies.csv"
    path.write_bytes(
        'movieId,title,genres\r\n1,"Great, Big ""Film"" (2001)",Drama\r\n2,Amélie (2001)'
        ",Comedy|Romance\r\n".encode()
    )
    dataset = MovieLensDataset("ml-latest-small", tmp_path / "ratings.csv", "ml-csv", path)
    assert load_item_titles(dataset) == {"1": 'Great, Big "Film" (2001)', "2": "Amélie (2001)"}


def test_titles_of_an_absent_item_file_are_empty(tmp_path: Path) -> None:
    dataset = MovieLensDataset("ml-100k", tmp_path / "u.data", "ml-100k", tmp_path / "u.item")
    assert load_item_titles(dataset) == {}
