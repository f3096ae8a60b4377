"""MovieLens datasets: found in the data home, or fetched from GroupLens and checked by SHA-256.

In the style of scikit-learn's fetchers: ``fetch_movielens`` returns where a dataset's files
are, downloading the official zip into the data home the first time. A download is extracted
into a temporary directory beside its final place, checked, then renamed into place, so the data
home never holds a half-written dataset.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from mfrec.training.loaders import DatasetError

DATA_HOME_ENV = "MFREC_DATA_HOME"
DEFAULT_DATA_HOME = Path("~") / ".cache" / "mfrec"
# The GroupLens download directory; tests point it at local files.
BASE_URL = "https://files.grouplens.org/datasets/movielens/"
DOWNLOAD_TIMEOUT_SECONDS = 60.0
_CHUNK_BYTES = 1 << 20


class DatasetUnavailable(RuntimeError):
    """A dataset is not in the data home and cannot be downloaded or verified."""


@dataclass(frozen=True)
class RemoteDataset:
    """One GroupLens archive: its zip name, the files used from it, and their SHA-256."""

    archive: str
    format: str
    ratings_file: str
    ratings_sha256: str
    items_file: str
    items_sha256: str


REMOTE_DATASETS = {
    "ml-100k": RemoteDataset(
        archive="ml-100k.zip",
        format="ml-100k",
        ratings_file="u.data",
        ratings_sha256="06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
        items_file="u.item",
        items_sha256="553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
    ),
    "ml-latest-small": RemoteDataset(
        archive="ml-latest-small.zip",
        format="ml-csv",
        ratings_file="ratings.csv",
        ratings_sha256="aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
        items_file="movies.csv",
        items_sha256="5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
    ),
}


@dataclass(frozen=True)
class MovieLensDataset:
    """Where one MovieLens dataset lives.

    Attributes:
        name: "ml-100k" or "ml-latest-small".
        ratings_path: the ratings file, for load_ratings(ratings_path, format).
        format: the loader format of the ratings file ("ml-100k" or "ml-csv").
        items_path: the item file with the titles (u.item or movies.csv); may be absent.
    """

    name: str
    ratings_path: Path
    format: str
    items_path: Path


def get_data_home(data_home: str | os.PathLike[str] | None = None) -> Path:
    """Returns the data home: the argument, else $MFREC_DATA_HOME, else ~/.cache/mfrec."""
    chosen = data_home if data_home is not None else os.environ.get(DATA_HOME_ENV) or None
    return Path(chosen if chosen is not None else DEFAULT_DATA_HOME).expanduser()


def fetch_movielens(
    name: str,
    data_home: str | os.PathLike[str] | None = None,
    download_if_missing: bool = True,
) -> MovieLensDataset:
    """Finds a MovieLens dataset in the data home, downloading it the first time.

    Args:
        name: "ml-100k" or "ml-latest-small".
        data_home: where datasets live; see get_data_home.
        download_if_missing: download the GroupLens zip when the ratings file is absent.

    Raises:
        ValueError: the name is not a known dataset.
        DatasetUnavailable: the dataset is absent and may not be, or cannot be, downloaded,
            or the download does not match the known checksums, or the data home is not
            writable.
    """
    remote = REMOTE_DATASETS.get(name)
    if remote is None:
        raise ValueError(f"unknown dataset {name!r}; use one of {', '.join(REMOTE_DATASETS)}")
    home = get_data_home(data_home)
    dataset = _located(name, remote, home)
    if dataset.ratings_path.is_file():
        return dataset
    if not download_if_missing:
        raise DatasetUnavailable(
            f"{name} is not in the data home {home} and downloading is turned off"
        )
    _download_into(name, remote, home)
    return dataset


def load_item_titles(dataset: MovieLensDataset) -> dict[str, str]:
    """Returns item id -> title from the dataset's item file; {} when the file is absent.

    Raises:
        DatasetError: the item file exists but cannot be parsed.
    """
    path = dataset.items_path
    if not path.is_file():
        return {}
    try:
        frame = _read_titles(path, dataset.format)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DatasetError(f"{path} cannot be read as an item list: {error}") from None
    return dict(zip(frame.iloc[:, 0].tolist(), frame.iloc[:, 1].tolist(), strict=True))


def _read_titles(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "ml-100k":
        # u.item: id|title|release date|..., Latin-1, no header, quotes are plain characters.
        return pd.read_csv(
            path,
            sep="|",
            header=None,
            usecols=[0, 1],
            encoding="latin-1",
            quoting=csv.QUOTE_NONE,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
        )
    return pd.read_csv(
        path,
        usecols=["movieId", "title"],
        encoding="utf-8",
        dtype=str,
        keep_default_na=False,
        na_filter=False,
    )


def _located(name: str, remote: RemoteDataset, home: Path) -> MovieLensDataset:
    folder = home / name
    return MovieLensDataset(
        name=name,
        ratings_path=folder / remote.ratings_file,
        format=remote.format,
        items_path=folder / remote.items_file,
    )


def _download_into(name: str, remote: RemoteDataset, home: Path) -> None:
    staging = _staging_dir(home, name)
    try:
        archive = staging / remote.archive
        _download(BASE_URL + remote.archive, archive)
        extracted = _extract(archive, staging / "extracted", name)
        _verify(extracted / remote.ratings_file, remote.ratings_sha256, remote.archive)
        _verify(extracted / remote.items_file, remote.items_sha256, remote.archive)
        _move_into_place(extracted, home / name, remote.ratings_file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _staging_dir(home: Path, name: str) -> Path:
    try:
        home.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{name}-", dir=home))
    except OSError as error:
        raise DatasetUnavailable(
            f"cannot write to the data home {home} ({error.strerror or error}); "
            f"set {DATA_HOME_ENV} to a writable directory"
        ) from None


def _download(url: str, target: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
            with target.open("wb") as out:
                shutil.copyfileobj(response, out, _CHUNK_BYTES)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise DatasetUnavailable(f"cannot download {url}: {reason}") from None


def _extract(archive: Path, target: Path, name: str) -> Path:
    """Extracts the archive's <name>/ folder into target; returns the extracted folder."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.infolist():
                parts = PurePosixPath(member.filename).parts
                if len(parts) < 2 or parts[0] != name or member.is_dir():
                    continue
                if any(part in ("", ".", "..") for part in parts):
                    raise DatasetUnavailable(f"{archive.name} holds an unsafe path")
                _extract_member(bundle, member, target.joinpath(*parts[1:]))
    except (zipfile.BadZipFile, OSError) as error:
        raise DatasetUnavailable(f"{archive.name} is not a readable zip: {error}") from None
    return target


def _extract_member(bundle: zipfile.ZipFile, member: zipfile.ZipInfo, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with bundle.open(member) as source, path.open("wb") as out:
        shutil.copyfileobj(source, out, _CHUNK_BYTES)


def _verify(path: Path, expected: str, archive: str) -> None:
    if not path.is_file():
        raise DatasetUnavailable(f"{archive} has no {path.name}")
    digest = _sha256(path)
    if digest != expected:
        raise DatasetUnavailable(
            f"{path.name} from {archive} has SHA-256 {digest}, expected {expected}; "
            "the download is corrupt or not the official release, so it was not installed"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _move_into_place(extracted: Path, final: Path, ratings_file: str) -> None:
    """Renames the extracted folder into place, or fills in a folder that is already there."""
    try:
        if not final.exists():
            extracted.rename(final)
            return
        # A partial copy, or another process's install: add what is missing, ratings last.
        files = sorted(
            (path for path in extracted.rglob("*") if path.is_file()),
            key=lambda path: path.name == ratings_file,
        )
        for path in files:
            target = final / path.relative_to(extracted)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    except OSError as error:
        raise DatasetUnavailable(
            f"cannot install into {final}: {error.strerror or error}"
        ) from None
