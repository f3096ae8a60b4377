"""Training jobs: one background worker, job records that callers poll, one job at a time."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum

from mfrec.server.errors import JobConflict, NotFound

log = logging.getLogger(__name__)
_KEPT_JOBS = 100


class JobState(Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class JobResult:
    """What a successful job produced."""

    model_version: str
    user_count: int
    item_count: int
    rating_count: int
    validation_rmse: float | None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of one job's record."""

    job_id: str
    state: JobState
    iteration: int = 0
    total_iterations: int = 0
    error: str = ""
    result: JobResult | None = None
    train_seconds: float = 0.0


ProgressReporter = Callable[[int, int], None]
JobBody = Callable[[ProgressReporter], JobResult]


class TrainingJobs:
    """Runs job bodies on a background thread, one at a time, and keeps their records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, JobStatus] = OrderedDict()
        self._running: str | None = None

    def start(self, body: JobBody, total_iterations: int) -> JobStatus:
        """Starts body in the background and returns its RUNNING record.

        Raises:
            JobConflict: another job is still running.
        """
        with self._lock:
            if self._running is not None:
                raise JobConflict(
                    f"training job {self._running} is still running; wait for it to finish "
                    "(poll GetTrainingJob) before starting another"
                )
            job_id = uuid.uuid4().hex
            status = JobStatus(job_id, JobState.RUNNING, total_iterations=total_iterations)
            self._jobs[job_id] = status
            while len(self._jobs) > _KEPT_JOBS:
                self._jobs.popitem(last=False)
            self._running = job_id
        thread = threading.Thread(
            target=self._run, args=(job_id, body), name=f"train-{job_id[:8]}", daemon=True
        )
        thread.start()
        return status

    def get(self, job_id: str) -> JobStatus:
        with self._lock:
            status = self._jobs.get(job_id)
        if status is None:
            raise NotFound(f"training job {job_id!r} does not exist")
        return status

    @property
    def running(self) -> str | None:
        return self._running

    def _update(self, job_id: str, **changes: object) -> None:
        with self._lock:
            self._jobs[job_id] = replace(self._jobs[job_id], **changes)  # type: ignore[arg-type]

    def _run(self, job_id: str, body: JobBody) -> None:
        started = time.perf_counter()

        def progress(iteration: int, total: int) -> None:
            self._update(job_id, iteration=iteration, total_iterations=total)

        try:
            result = body(progress)
        except Exception as error:  # every failure ends the job, never the server
            # Bad data is an expected failure: its message says it all. Anything else is a
            # bug or an environment problem, whose traceback belongs in the log.
            expected = isinstance(error, ValueError | MemoryError)
            log.warning("training job %s failed: %s", job_id, error, exc_info=not expected)
            message = str(error) or type(error).__name__
            self._finish(job_id, state=JobState.FAILED, error=message, started=started)
        else:
            log.info("training job %s succeeded: model %s", job_id, result.model_version)
            self._finish(job_id, state=JobState.SUCCEEDED, result=result, started=started)

    def _finish(self, job_id: str, started: float, **changes: object) -> None:
        with self._lock:
            status = self._jobs[job_id]
            self._jobs[job_id] = replace(
                status,
                train_seconds=time.perf_counter() - started,
                **changes,  # type: ignore[arg-type]
            )
            self._running = None
