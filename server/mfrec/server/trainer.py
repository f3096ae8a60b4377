"""Training on behalf of the server: where data may come from, and the job that swaps models in.

This is the one place the server calls the training pipeline (which needs pandas); it runs on
the job thread, never on a request thread.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mfrec.server.errors import InvalidRequest, NotFound
from mfrec.server.jobs import JobBody, JobResult, ProgressReporter
from mfrec.server.store import ModelStore
from mfrec.training.artifact import ArtifactError
from mfrec.training.config import TrainingConfig

if TYPE_CHECKING:  # the serving process imports pandas only on the job thread
    import pandas as pd

    from mfrec.server.model import ServingModel

FORMATS = ("ml-100k", "ml-csv", "ml-dat", "csv")
_MAX_PATH_BYTES = 4096


@dataclass(frozen=True)
class FileSource:
    """A ratings file inside the data dir, as the caller named it."""

    path: Path
    requested: str
    fmt: str
    csv_options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InlineSource:
    """Ratings sent in the request itself."""

    user_ids: list[str]
    item_ids: list[str]
    values: list[float]
    timestamps: list[int]


Source = FileSource | InlineSource


def resolve_dataset_path(data_dir: Path | None, requested: str) -> Path:
    """Returns the real path of a dataset inside data_dir.

    Both the data dir and the request are resolved (".." and symbolic links followed) before
    the containment check, so neither a relative escape nor a link pointing out gets through.

    Raises:
        InvalidRequest: no data dir is configured, or the path leaves it.
        NotFound: the path does not exist.
    """
    if data_dir is None:
        raise InvalidRequest(
            "dataset_path cannot be used: the server was started without --data-dir; "
            "send the ratings inline instead"
        )
    if "\x00" in requested:
        raise InvalidRequest("dataset_path must not contain NUL characters")
    if len(requested.encode("utf-8", errors="surrogatepass")) > _MAX_PATH_BYTES:
        raise InvalidRequest(f"dataset_path is longer than {_MAX_PATH_BYTES} bytes")
    root = data_dir.resolve()
    try:
        candidate = Path(os.path.join(root, requested)).resolve()
        exists = candidate.exists()
    except (OSError, ValueError):  # a name too long for the file system, a loop of links
        raise InvalidRequest("dataset_path cannot be resolved to a file") from None
    if candidate != root and root not in candidate.parents:
        raise InvalidRequest("dataset_path must name a file inside the server's data dir")
    if not exists:
        raise NotFound(f"dataset_path {requested!r} does not exist in the data dir")
    if not candidate.is_file():
        raise InvalidRequest(f"dataset_path {requested!r} is not a regular file")
    return candidate


def check_inline(source: InlineSource, rating_range: tuple[float, float] | None) -> None:
    """Raises InvalidRequest for inline ratings that cannot be trained on."""
    if not source.values:
        raise InvalidRequest("ratings is empty: give dataset_path or at least one rating")
    for position, value in enumerate(source.values):
        if not math.isfinite(value):
            raise InvalidRequest(f"ratings[{position}].value must be finite, got {value}")
        if rating_range is not None and not rating_range[0] <= value <= rating_range[1]:
            raise InvalidRequest(
                f"ratings[{position}].value {value} is outside the server's rating range "
                f"{rating_range[0]}..{rating_range[1]}"
            )
    for name, ids in (("user_id", source.user_ids), ("item_id", source.item_ids)):
        for position, text in enumerate(ids):
            if not text or not text.strip():
                raise InvalidRequest(
                    f"ratings[{position}].{name} is required and must not be blank"
                )


class TrainingFailed(Exception):
    """Training finished but its model cannot serve; the message says why."""


def training_job(
    store: ModelStore,
    source: Source,
    config: TrainingConfig,
    rating_range: tuple[float, float] | None = None,
    max_id_bytes: int | None = None,
) -> JobBody:
    """Returns the body of a job that trains, saves, loads and swaps in a new model."""

    def body(report: ProgressReporter) -> JobResult:
        from mfrec.training.pipeline import TrainingOverflow, train_and_save

        frame = _load(source, rating_range)
        if max_id_bytes is not None and isinstance(source, FileSource):
            check_id_lengths(frame, max_id_bytes, source.requested)

        def progress(update: object) -> None:
            report(update.iteration, update.total_iterations)  # type: ignore[attr-defined]

        try:
            summary = train_and_save(frame, config, store.model_dir, progress)
        except TrainingOverflow as error:
            raise TrainingFailed(str(error)) from error
        except OSError as error:  # the job's error is shown to callers: no server paths
            reason = error.strerror or type(error).__name__
            raise TrainingFailed(f"saving the model failed: {reason}") from error
        model = _load_trained(store, summary.path, frame)
        store.swap(model)
        store.prune()
        return JobResult(
            model_version=summary.model_version,
            user_count=summary.user_count,
            item_count=summary.item_count,
            rating_count=summary.rating_count,
            validation_rmse=summary.validation_rmse,
            metrics=summary.metrics,
        )

    return body


def _load_trained(store: ModelStore, path: Path, frame: pd.DataFrame) -> ServingModel:
    """Loads the version just saved; an unusable one is deleted, never left to be served."""
    try:
        return store.load_version(path)
    except ArtifactError as error:
        shutil.rmtree(path, ignore_errors=True)
        reason = str(error).split(": ", 1)[-1]
        from mfrec.training.pipeline import magnitude_hint

        raise TrainingFailed(
            f"the trained model is unusable and was discarded: {reason}; {magnitude_hint(frame)}"
        ) from None


def check_id_lengths(frame: pd.DataFrame, max_id_bytes: int, name: str) -> None:
    """Rejects ids longer than requests may name, so every trained id can be asked for.

    Raises:
        InvalidRequest: naming the file (as the caller named it) and the first long id.
    """
    for column, label in (("user_id", "user id"), ("item_id", "item id")):
        encoded = frame[column].str.encode("utf-8", errors="surrogatepass")
        lengths = encoded.str.len()  # type: ignore[misc]  # the stubs type .str.len on str only
        too_long = np.flatnonzero(lengths.to_numpy() > max_id_bytes)
        if too_long.size:
            value = str(frame[column].iloc[int(too_long[0])])
            raise InvalidRequest(
                f"{name}: the {label} {value[:32]!r}... is longer than the server's "
                f"--max-id-bytes ({max_id_bytes} bytes of UTF-8)"
            )


def _load(source: Source, rating_range: tuple[float, float] | None) -> pd.DataFrame:
    from mfrec.training.loaders import DatasetError, load_ratings, ratings_from_records

    if isinstance(source, InlineSource):
        return ratings_from_records(
            source.user_ids, source.item_ids, source.values, source.timestamps
        )
    try:
        return load_ratings(
            source.path, source.fmt, rating_range=rating_range, **source.csv_options
        )
    except DatasetError as error:
        # Name the file as the caller did, never by its location on the server.
        raise DatasetError(str(error).replace(str(source.path), source.requested)) from None
