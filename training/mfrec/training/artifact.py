"""The model artifact: one directory per model version, the boundary between training and serving.

Layout of a version directory (every array a .npy file, loaded with pickle disabled):

    metadata.json              format version, model version, trained_at, config, metrics, counts
    user_factors.npy           float32 (users x factors)
    item_factors.npy           float32 (items x factors)
    user_bias.npy, item_bias.npy   float32 (users,), (items,)
    seen_indptr.npy, seen_indices.npy   CSR of the items each user has in the training data
    popularity_order.npy       int32 item indices, most popular first
    popularity_scores.npy      float32 score of each item index
    user_ids.{blob,offsets,hashes,order}.npy, item_ids.{...}.npy   id indices (see ids.py)
    item_index.faiss           only when metadata "index" is "hnsw": the approximate index

Versions are written into a temporary sibling whose name starts with ".tmp-" (never a valid
version name), flushed to disk, then renamed into place, so a crash leaves either the whole
version or none of it. This module imports numpy only (faiss, through ann, only for a
version that has an index): the server reads artifacts with it. A version whose index cannot
be read because faiss is not installed loads without it, with a warning, and is served by
exact search: the answers stay correct, only slower.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mfrec.training import ann
from mfrec.training.factors import Factors
from mfrec.training.ids import IdIndex
from mfrec.training.popularity import Popularity

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
TEMP_PREFIX = ".tmp-"
# Versions are UTC times to the microsecond, so they sort in training order.
VERSION_PATTERN = re.compile(r"^\d{8}T\d{6}\d{6}Z$")
_VERSION_FORMAT = "%Y%m%dT%H%M%S%fZ"
_ID_PARTS = ("blob", "offsets", "hashes", "order")
# Crash-test hook (tests/integration/test_faults.py): with MFREC_CRASH_AFTER_STEP=N set, a
# save kills its own process with SIGKILL right after step N (steps 1-17 write the files, 18
# renames the folder into place), to show a crash anywhere leaves every saved version intact.
CRASH_AFTER_STEP = "MFREC_CRASH_AFTER_STEP"
INDEX_KEY = "index"
_log = logging.getLogger(__name__)


class ArtifactError(Exception):
    """A model directory is missing, truncated, inconsistent or of an unknown format."""


@dataclass(frozen=True)
class ModelArtifact:
    """Everything a server needs to answer requests for one model version."""

    factors: Factors
    user_ids: IdIndex
    item_ids: IdIndex
    seen_indptr: npt.NDArray[np.int64]
    seen_indices: npt.NDArray[np.int32]
    popularity: Popularity
    metadata: dict[str, Any] = field(default_factory=dict)
    # The faiss index of metadata "index" "hnsw" (see ann.py); None serves by exact search.
    item_index: Any = None

    @property
    def version(self) -> str:
        return str(self.metadata.get("model_version", ""))

    @property
    def index_kind(self) -> str:
        """The index the version was trained with: ann.EXACT (the default) or ann.HNSW."""
        return str(self.metadata.get(INDEX_KEY, ann.EXACT))


def new_version(model_dir: Path) -> str:
    """Returns a version name later than every version already in model_dir.

    Normally the current UTC time; when a version with a later name exists (two saves in one
    microsecond, a clock step back, or a folder named in the future), the next name after it,
    so the newest save is always the one served.
    """
    version = datetime.now(UTC).strftime(_VERSION_FORMAT)
    existing = list_versions(model_dir)
    if existing and version <= existing[-1]:
        digits = str(int(existing[-1][:-1].replace("T", "")) + 1)
        version = f"{digits[:8]}T{digits[8:]}Z"
    return version


def list_versions(model_dir: Path) -> list[str]:
    """Returns the version directory names in model_dir, oldest first."""
    if not model_dir.is_dir():
        return []
    return sorted(
        entry.name
        for entry in model_dir.iterdir()
        if VERSION_PATTERN.match(entry.name) and entry.is_dir()
    )


def _arrays(artifact: ModelArtifact) -> dict[str, np.ndarray]:
    f = artifact.factors
    arrays: dict[str, np.ndarray] = {
        "user_factors": f.user_factors,
        "item_factors": f.item_factors,
        "user_bias": f.user_bias,
        "item_bias": f.item_bias,
        "seen_indptr": artifact.seen_indptr,
        "seen_indices": artifact.seen_indices,
        "popularity_order": artifact.popularity.order,
        "popularity_scores": artifact.popularity.scores,
    }
    for prefix, index in (("user_ids", artifact.user_ids), ("item_ids", artifact.item_ids)):
        for part in _ID_PARTS:
            arrays[f"{prefix}.{part}"] = getattr(index, part)
    return arrays


def write_artifact(artifact: ModelArtifact, model_dir: Path, version: str | None = None) -> Path:
    """Writes a new version directory atomically and returns its path."""
    model_dir.mkdir(parents=True, exist_ok=True)
    version = version or new_version(model_dir)
    temp = model_dir / f"{TEMP_PREFIX}{version}-{os.getpid()}"
    if temp.exists():
        shutil.rmtree(temp)
    temp.mkdir()
    try:
        step = 0
        for step, (name, array) in enumerate(_arrays(artifact).items(), start=1):
            _write_file(temp / f"{name}.npy", lambda handle, a=array: np.save(handle, a))
            _crash_point(step)
        if artifact.item_index is not None:
            ann.write_index(artifact.item_index, temp / ann.INDEX_FILE)
        elif artifact.index_kind != ann.EXACT:
            raise ValueError(f"metadata names a {artifact.index_kind!r} index but none is built")
        metadata = dict(artifact.metadata, model_version=version, format_version=FORMAT_VERSION)
        text = json.dumps(metadata, indent=2, sort_keys=True, allow_nan=False).encode()
        _write_file(temp / METADATA_FILE, lambda handle: handle.write(text))
        _crash_point(step + 1)
        _fsync_dir(temp)
        final = model_dir / version
        os.rename(temp, final)
        _crash_point(step + 2)
        _fsync_dir(model_dir)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return final


def _crash_point(step: int) -> None:
    if os.environ.get(CRASH_AFTER_STEP) == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


def _write_file(path: Path, write: Any) -> None:
    with open(path, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_stale_temporaries(model_dir: Path, older_than_seconds: float = 6 * 3600.0) -> None:
    """Deletes unfinished saves (".tmp-" folders) whose writer is gone.

    A save names its writer's process id last (".tmp-<version>-<pid>"); the folder is removed
    when that process no longer exists, or when it is older than older_than_seconds (the id
    may have been reused). A save still in progress by a live process is left alone, so a
    server starting beside a running `mfrec train` does not delete its work.
    """
    if not model_dir.is_dir():
        return
    cutoff = time.time() - older_than_seconds
    for entry in model_dir.iterdir():
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        try:
            stale = entry.lstat().st_mtime <= cutoff or not _alive(_writer_pid(entry.name))
        except OSError:
            continue
        if stale:
            shutil.rmtree(entry, ignore_errors=True)


def _writer_pid(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_artifact(path: Path, mmap: bool = True) -> ModelArtifact:
    """Loads and checks one version directory; raises ArtifactError if anything is wrong.

    With mmap, arrays are memory-mapped read-only, so processes that load the same version
    share one physical copy of it.
    """
    try:
        return _read(path, mmap)
    except ArtifactError:
        raise
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"model {path.name}: {error}") from error


def _read(path: Path, mmap: bool) -> ModelArtifact:
    if not path.is_dir():
        raise ArtifactError(f"model {path.name}: not a directory")
    metadata = _read_metadata(path)
    load = _loader(path, mmap)
    factors = Factors(
        user_factors=load("user_factors", np.float32, 2),
        item_factors=load("item_factors", np.float32, 2),
        user_bias=load("user_bias", np.float32, 1),
        item_bias=load("item_bias", np.float32, 1),
        global_mean=float(metadata["global_mean"]),
    )
    artifact = ModelArtifact(
        factors=factors,
        user_ids=_read_ids(load, "user_ids"),
        item_ids=_read_ids(load, "item_ids"),
        seen_indptr=load("seen_indptr", np.int64, 1),
        seen_indices=load("seen_indices", np.int32, 1),
        popularity=Popularity(
            order=load("popularity_order", np.int32, 1),
            scores=load("popularity_scores", np.float32, 1),
        ),
        metadata=metadata,
    )
    _check_consistency(artifact, path.name)
    return replace(artifact, item_index=_read_index(path, artifact, mmap))


def _read_index(path: Path, artifact: ModelArtifact, mmap: bool) -> Any:
    kind = artifact.index_kind
    if kind == ann.EXACT:
        return None
    if kind != ann.HNSW:
        raise ArtifactError(
            f"model {path.name}: index {kind!r} is not supported (expected one of "
            f"{', '.join(ann.INDEX_KINDS)})"
        )
    file = path / ann.INDEX_FILE
    if not file.is_file():
        raise ArtifactError(f"model {path.name}: {file.name} is missing or not a file")
    factors = artifact.factors.item_factors
    try:
        return ann.read_index(file, factors.shape[0], factors.shape[1], mmap)
    except ImportError as error:
        _log.warning("model %s: %s; serving it by exact search", path.name, error)
        return None
    except ValueError as error:
        raise ArtifactError(f"model {path.name}: {file.name} {error}") from None


def _read_metadata(path: Path) -> dict[str, Any]:
    file = path / METADATA_FILE
    if not file.is_file():
        raise ArtifactError(f"model {path.name}: {METADATA_FILE} is missing or not a file")
    metadata = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(metadata, dict):
        raise ArtifactError(f"model {path.name}: {METADATA_FILE} is not a JSON object")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"model {path.name}: format version {version!r} is not supported "
            f"(this server reads version {FORMAT_VERSION})"
        )
    if metadata.get("model_version") != path.name:
        raise ArtifactError(f"model {path.name}: metadata names another version")
    if not math.isfinite(float(metadata.get("global_mean", "nan"))):
        raise ArtifactError(f"model {path.name}: global_mean is missing or not finite")
    return metadata


def _loader(path: Path, mmap: bool) -> Any:
    def load(name: str, dtype: type, ndim: int) -> np.ndarray:
        file = path / f"{name}.npy"
        if not file.is_file():
            raise ArtifactError(f"model {path.name}: {file.name} is missing or not a file")
        try:
            array = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise ArtifactError(f"model {path.name}: {file.name} is unreadable ({error})") from None
        if array.dtype != dtype or array.ndim != ndim:
            raise ArtifactError(
                f"model {path.name}: {file.name} has dtype {array.dtype} and {array.ndim} "
                f"dimensions, expected {np.dtype(dtype)} with {ndim}"
            )
        result: np.ndarray = array
        return result

    return load


def _read_ids(load: Any, prefix: str) -> IdIndex:
    index = IdIndex(
        blob=load(f"{prefix}.blob", np.uint8, 1),
        offsets=load(f"{prefix}.offsets", np.int64, 1),
        hashes=load(f"{prefix}.hashes", np.uint64, 1),
        order=load(f"{prefix}.order", np.int64, 1),
    )
    try:
        index.validate()
    except ValueError as error:
        raise ArtifactError(f"{prefix}: {error}") from error
    return index


def _check_consistency(artifact: ModelArtifact, name: str) -> None:
    f = artifact.factors
    n_users, n_items = len(artifact.user_ids), len(artifact.item_ids)
    problems = []
    if f.user_factors.shape[0] != n_users or f.user_bias.shape != (n_users,):
        problems.append("user arrays do not match the number of user ids")
    if f.item_factors.shape[0] != n_items or f.item_bias.shape != (n_items,):
        problems.append("item arrays do not match the number of item ids")
    if f.user_factors.shape[1] != f.item_factors.shape[1]:
        problems.append("user and item factors have different widths")
    if artifact.seen_indptr.shape != (n_users + 1,):
        problems.append("seen_indptr does not match the number of users")
    elif artifact.seen_indptr[0] != 0 or artifact.seen_indptr[-1] != artifact.seen_indices.size:
        problems.append("seen_indptr does not span seen_indices")
    elif n_users and np.any(np.diff(artifact.seen_indptr) < 0):
        problems.append("seen_indptr is not ascending")
    seen = artifact.seen_indices
    if seen.size and (seen.min() < 0 or seen.max() >= n_items):
        problems.append("seen_indices point outside the item range")
    order = artifact.popularity.order
    if order.shape != (n_items,) or artifact.popularity.scores.shape != (n_items,):
        problems.append("popularity arrays do not match the number of items")
    elif n_items and np.bincount(order, minlength=n_items).max(initial=0) != 1:
        problems.append("popularity_order is not a permutation of the items")
    for label, array in (
        ("user_factors", f.user_factors),
        ("item_factors", f.item_factors),
        ("user_bias", f.user_bias),
        ("item_bias", f.item_bias),
        ("popularity_scores", artifact.popularity.scores),
    ):
        if not np.isfinite(array).all():
            problems.append(f"{label} holds NaN or infinite values")
    if problems:
        raise ArtifactError(f"model {name}: " + "; ".join(problems))
