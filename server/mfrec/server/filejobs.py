"""Training jobs shared by several server processes: JSON records and a lock under the model dir.

With `mfrec serve --workers N`, any worker may receive Train and GetTrainingJob, but one
trainer, owned by the supervisor, runs the jobs. The state lives in `<model-dir>/.jobs/`:

    lock               fcntl.flock'd while a record is created or a job is claimed
    current            the id of the job that is running (absent when none is)
    serving-<pid>      the model version worker <pid> serves
    <job_id>.json      one record per job, replaced atomically (write a temporary, rename)
    <job_id>.npz       the inline ratings of a job that sent them, until the job ends

A worker's Train checks under the lock that no job is running, writes a RUNNING record and
`current`, and returns; the supervisor notices `current` and runs the job in a trainer process
that updates the record as it goes. Once the model is saved, the supervisor waits until every
worker serves it (each publishes its version in `serving-<pid>`), then records SUCCEEDED and
clears `current`: a job that succeeded has its model serving everywhere, as with one process.
Every worker reads the same records, so GetTrainingJob answers the same everywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mfrec.server.errors import JobConflict, NotFound
from mfrec.server.jobs import JobResult, JobState, JobStatus
from mfrec.server.store import ModelStore
from mfrec.server.trainer import FileSource, InlineSource, Source
from mfrec.training.config import TrainingConfig

log = logging.getLogger(__name__)

JOBS_DIR = ".jobs"
KEPT_JOBS = 100
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def jobs_dir(model_dir: Path) -> Path:
    return model_dir / JOBS_DIR


@contextlib.contextmanager
def job_lock(model_dir: Path) -> Iterator[None]:
    """Holds the exclusive lock on the job records of model_dir (blocking)."""
    directory = jobs_dir(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def write_record(model_dir: Path, record: dict[str, Any]) -> None:
    """Replaces a job's record atomically, so readers see the old or the new one whole."""
    directory = jobs_dir(model_dir)
    final = directory / f"{record['job_id']}.json"
    temporary = directory / f".{record['job_id']}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(record, sort_keys=True), encoding="utf-8")
    os.replace(temporary, final)


def read_record(model_dir: Path, job_id: str) -> dict[str, Any] | None:
    if not _JOB_ID.match(job_id):  # also keeps the id from naming any other path
        return None
    try:
        text = (jobs_dir(model_dir) / f"{job_id}.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    record: dict[str, Any] = json.loads(text)
    return record


def running_job(model_dir: Path) -> str | None:
    """Returns the id of the running job, or None (also for a stale `current`)."""
    try:
        job_id = (jobs_dir(model_dir) / "current").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    record = read_record(model_dir, job_id)
    if record is None or record.get("state") != JobState.RUNNING.value:
        return None
    return job_id


def clear_current(model_dir: Path, job_id: str) -> None:
    with job_lock(model_dir):
        current = jobs_dir(model_dir) / "current"
        with contextlib.suppress(FileNotFoundError):
            if current.read_text(encoding="utf-8").strip() == job_id:
                current.unlink()


def record_serving(model_dir: Path, version: str) -> None:
    """Publishes the version this process serves (read by serving_versions)."""
    directory = jobs_dir(model_dir)
    temporary = directory / f".serving-{os.getpid()}.tmp"
    temporary.write_text(version, encoding="utf-8")
    os.replace(temporary, directory / f"serving-{os.getpid()}")


def serving_versions(model_dir: Path, pids: list[int]) -> dict[int, str]:
    """Returns the version each process serves ("" when it has not said yet)."""
    versions = {}
    for pid in pids:
        try:
            versions[pid] = (jobs_dir(model_dir) / f"serving-{pid}").read_text(encoding="utf-8")
        except FileNotFoundError:
            versions[pid] = ""
    return versions


def status_from_record(record: dict[str, Any]) -> JobStatus:
    result = record.get("result") if record["state"] == JobState.SUCCEEDED.value else None
    return JobStatus(
        job_id=record["job_id"],
        state=JobState(record["state"]),
        iteration=int(record.get("iteration", 0)),
        total_iterations=int(record.get("total_iterations", 0)),
        error=str(record.get("error", "")),
        result=JobResult(**result) if result else None,
        train_seconds=float(record.get("train_seconds", 0.0)),
    )


class FileJobs:
    """The workers' side: Train writes a request record, GetTrainingJob reads records.

    Args:
        model_dir: the served model dir; records live in its `.jobs/` folder.
        on_succeeded: called with a succeeded job's model version before it is reported, so
            a worker serves that version before it says the job succeeded.
    """

    def __init__(self, model_dir: Path, on_succeeded: Callable[[str], None] | None = None) -> None:
        self.model_dir = model_dir
        self._on_succeeded = on_succeeded
        jobs_dir(model_dir).mkdir(parents=True, exist_ok=True)

    def submit(self, source: Source, config: TrainingConfig, total_iterations: int) -> JobStatus:
        """Records a job for the supervisor's trainer and returns its RUNNING status.

        Raises:
            JobConflict: another job is running (on this process or any other).
        """
        with job_lock(self.model_dir):
            running = running_job(self.model_dir)
            if running is not None:
                raise JobConflict(
                    f"training job {running} is still running; wait for it to finish "
                    "(poll GetTrainingJob) before starting another"
                )
            job_id = uuid.uuid4().hex
            record = {
                "job_id": job_id,
                "state": JobState.RUNNING.value,
                "iteration": 0,
                "total_iterations": total_iterations,
                "created": time.time(),
                "source": self._save_source(job_id, source),
                "config": config.to_dict(),
            }
            write_record(self.model_dir, record)
            current = jobs_dir(self.model_dir) / f".current.{os.getpid()}.tmp"
            current.write_text(job_id, encoding="utf-8")
            os.replace(current, jobs_dir(self.model_dir) / "current")
        return status_from_record(record)

    def get(self, job_id: str) -> JobStatus:
        record = read_record(self.model_dir, job_id)
        if record is None:
            raise NotFound(f"training job {job_id!r} does not exist")
        status = status_from_record(record)
        if status.result is not None and self._on_succeeded is not None:
            self._on_succeeded(status.result.model_version)
        return status

    @property
    def running(self) -> str | None:
        return running_job(self.model_dir)

    def watch(self, store: ModelStore) -> None:
        """Publishes the store's serving version now and after every swap."""
        if store.current is not None:
            record_serving(self.model_dir, store.current.version)
        store.add_listener(lambda model: record_serving(self.model_dir, model.version))

    def _save_source(self, job_id: str, source: Source) -> dict[str, Any]:
        if isinstance(source, InlineSource):
            path = jobs_dir(self.model_dir) / f"{job_id}.npz"
            with open(path, "wb") as handle:
                np.savez(
                    handle,
                    user_ids=np.array(source.user_ids, dtype=str),
                    item_ids=np.array(source.item_ids, dtype=str),
                    values=np.array(source.values, dtype=np.float64),
                    timestamps=np.array(source.timestamps, dtype=np.int64),
                )
            return {"kind": "inline", "file": path.name}
        fields = {f.name: getattr(source, f.name) for f in dataclasses.fields(source)}
        fields["path"] = str(source.path)
        return {"kind": "file", **fields}


def load_source(model_dir: Path, saved: dict[str, Any]) -> Source:
    """Rebuilds the source a FileJobs record describes."""
    values = dict(saved)
    kind = values.pop("kind")
    if kind == "inline":
        with np.load(jobs_dir(model_dir) / values["file"], allow_pickle=False) as arrays:
            return InlineSource(
                user_ids=arrays["user_ids"].tolist(),
                item_ids=arrays["item_ids"].tolist(),
                values=arrays["values"].tolist(),
                timestamps=arrays["timestamps"].tolist(),
            )
    values["path"] = Path(values["path"])
    return FileSource(**values)


def prune_records(model_dir: Path, keep: int = KEPT_JOBS) -> None:
    """Deletes all but the newest `keep` finished job records."""
    directory = jobs_dir(model_dir)
    records = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime)
    running = running_job(model_dir)
    for path in records[: max(0, len(records) - keep)]:
        if path.stem != running:
            path.unlink(missing_ok=True)
