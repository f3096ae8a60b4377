"""The supervisor of `mfrec serve --workers N`: N server processes on one port, and one trainer.

This is the pattern gRPC Python documents for using several cores (examples/python/
multiprocessing): the supervisor reserves the port with a socket bound with SO_REUSEPORT (and
never listening), then starts the workers with the spawn method, before any gRPC object exists
in it. Each worker loads the model, then binds the same port with grpc.so_reuseport, so the
kernel spreads new connections over them; servers age connections out
(grpc.max_connection_age_ms), so long-lived clients rebalance too.

Workers die with the supervisor (PR_SET_PDEATHSIG); SIGTERM or SIGINT to the supervisor is
forwarded to every worker, which drains within the grace period, and the supervisor exits 0.
Training runs in one trainer process the supervisor starts per job (see filejobs); workers
pick up each saved version by polling the model dir.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from mfrec.server import filejobs
from mfrec.server.jobs import JobState

if TYPE_CHECKING:
    from mfrec.server.app import ServerConfig

log = logging.getLogger(__name__)

# One BLAS thread per worker: a request is one small product, and N workers with a BLAS pool
# each would oversubscribe the cores. Set in the workers' environment before they start, so
# it is in place when their numpy loads.
WORKER_ENVIRONMENT = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
POLL_SECONDS = 0.25
# How long a saved job waits for every worker to serve its model before it succeeds anyway.
SWAP_WAIT_SECONDS = 10.0
MAX_CONNECTION_AGE_SECONDS = 30.0
_PR_SET_PDEATHSIG = 1
_RESTART_DELAY_SECONDS = 1.0
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


@dataclass(frozen=True)
class TrainerSettings:
    """What the trainer process needs from the server's flags."""

    rating_range: tuple[float, float] | None
    max_id_bytes: int
    keep_versions: int


def die_with_parent(parent_pid: int, sig: signal.Signals = signal.SIGTERM) -> None:
    """Asks the kernel to send sig when the parent dies; exits if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _configure_logging(level: int) -> None:
    logging.basicConfig(level=level, format=_LOG_FORMAT)


def worker_main(config: ServerConfig, parent_pid: int, log_level: int) -> None:
    """The entry point of one spawned worker: serves until SIGTERM, then drains."""
    die_with_parent(parent_pid)
    _configure_logging(log_level)
    from mfrec.server.app import serve

    raise SystemExit(serve(config))


def trainer_main(
    model_dir: Path, job_id: str, settings: TrainerSettings, parent_pid: int, log_level: int
) -> None:
    """The entry point of the trainer process: runs one recorded job and records its end."""
    die_with_parent(parent_pid, signal.SIGKILL)
    _configure_logging(log_level)
    run_job(model_dir, job_id, settings)


def run_job(model_dir: Path, job_id: str, settings: TrainerSettings) -> None:
    """Runs the job recorded under model_dir, updating its record as it goes."""
    from mfrec.server.store import ModelStore
    from mfrec.server.trainer import training_job
    from mfrec.training.config import TrainingConfig

    record = filejobs.read_record(model_dir, job_id)
    if record is None:
        log.error("training job %s has no record", job_id)
        return
    started = time.perf_counter()

    def update(**changes: Any) -> None:
        record.update(changes)
        filejobs.write_record(model_dir, record)

    try:
        source = filejobs.load_source(model_dir, record["source"])
        config = TrainingConfig.from_dict(record["config"])
        store = ModelStore(model_dir, settings.keep_versions)
        body = training_job(
            store, source, config, settings.rating_range, max_id_bytes=settings.max_id_bytes
        )
        result = body(lambda done, total: update(iteration=done, total_iterations=total))
    except Exception as error:  # every failure ends the job, never the server
        log.warning("training job %s failed: %s", job_id, error, exc_info=True)
        update(
            state=JobState.FAILED.value,
            error=str(error) or type(error).__name__,
            train_seconds=time.perf_counter() - started,
        )
    else:
        # Still RUNNING: the supervisor reports SUCCEEDED once every worker serves the model.
        log.info("training job %s saved model %s", job_id, result.model_version)
        update(result=dataclasses.asdict(result), train_seconds=time.perf_counter() - started)
    finally:
        (filejobs.jobs_dir(model_dir) / f"{job_id}.npz").unlink(missing_ok=True)
        if record.get("state") == JobState.FAILED.value:
            filejobs.clear_current(model_dir, job_id)


class JobRunner:
    """The supervisor's side of the shared jobs: starts one trainer process per recorded job."""

    def __init__(
        self,
        model_dir: Path,
        settings: TrainerSettings,
        context: SpawnContext,
        worker_pids: Callable[[], list[int]] = list,
    ) -> None:
        self.model_dir = model_dir
        self.settings = settings
        self.context = context
        self.worker_pids = worker_pids
        self._process: SpawnProcess | None = None
        self._job_id: str | None = None
        # A saved job waiting for every worker to serve its model: (id, version, deadline).
        self._saved: tuple[str, str, float] | None = None

    def recover(self) -> None:
        """Ends a job left RUNNING by a supervisor that stopped while it ran.

        A job whose model was saved succeeded (the workers starting now load it); any other
        failed. Serving notes of earlier workers are removed.
        """
        for note in filejobs.jobs_dir(self.model_dir).glob("serving-*"):
            note.unlink(missing_ok=True)
        job_id = filejobs.running_job(self.model_dir)
        if job_id is None:
            return
        record = filejobs.read_record(self.model_dir, job_id)
        if record is not None and record.get("result"):
            record.update(state=JobState.SUCCEEDED.value)
            filejobs.write_record(self.model_dir, record)
            filejobs.clear_current(self.model_dir, job_id)
        else:
            self._fail(job_id, "the server stopped while the job was running; start it again")

    def poll(self) -> None:
        """Reaps a finished trainer, then starts the next recorded job, if any."""
        if self._process is not None:
            if self._process.is_alive():
                return
            self._reap()
        if self._saved is not None:
            self._finish_saved()
            return
        job_id = filejobs.running_job(self.model_dir)
        if job_id is None:
            return
        # The trainer keeps the supervisor's environment: training may use every core.
        process = self.context.Process(
            target=trainer_main,
            args=(self.model_dir, job_id, self.settings, os.getpid(), log.getEffectiveLevel()),
            name=f"mfrec-trainer-{job_id[:8]}",
        )
        process.start()
        self._process, self._job_id = process, job_id
        log.info("training job %s started in process %d", job_id, process.pid)

    def stop(self, grace_seconds: float) -> None:
        """Ends a running trainer (its job fails) and waits for it."""
        process = self._process
        if process is None:
            return
        if process.is_alive():
            process.terminate()
            process.join(grace_seconds)
            if process.is_alive():
                process.kill()
                process.join()
        self._reap("the server shut down while the job was running; start it again")

    def _reap(self, reason: str | None = None) -> None:
        assert self._process is not None and self._job_id is not None
        self._process.join()
        code = self._process.exitcode
        record = filejobs.read_record(self.model_dir, self._job_id)
        if record is not None and record.get("state") == JobState.RUNNING.value:
            if record.get("result") and reason is None:
                version = record["result"]["model_version"]
                self._saved = (self._job_id, version, time.monotonic() + SWAP_WAIT_SECONDS)
            else:
                error = reason or f"the trainer process exited unexpectedly ({code})"
                self._fail(self._job_id, error)
        filejobs.prune_records(self.model_dir)
        self._process, self._job_id = None, None

    def _finish_saved(self) -> None:
        """Reports the saved job SUCCEEDED once every worker serves its model (or time is up)."""
        assert self._saved is not None
        job_id, version, deadline = self._saved
        serving = filejobs.serving_versions(self.model_dir, self.worker_pids())
        behind = [pid for pid, served in serving.items() if served < version]
        if behind and time.monotonic() < deadline:
            return
        if behind:
            log.warning("workers %s do not serve model %s yet; reporting success", behind, version)
        record = filejobs.read_record(self.model_dir, job_id)
        if record is not None:
            record.update(state=JobState.SUCCEEDED.value)
            filejobs.write_record(self.model_dir, record)
            log.info("training job %s succeeded: model %s", job_id, version)
        filejobs.clear_current(self.model_dir, job_id)
        self._saved = None

    def _fail(self, job_id: str, error: str) -> None:
        record = filejobs.read_record(self.model_dir, job_id)
        if record is not None:
            record.update(state=JobState.FAILED.value, error=error)
            filejobs.write_record(self.model_dir, record)
        (filejobs.jobs_dir(self.model_dir) / f"{job_id}.npz").unlink(missing_ok=True)
        filejobs.clear_current(self.model_dir, job_id)
        log.warning("training job %s failed: %s", job_id, error)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Sets environment variables for the processes started inside."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def reserve_port(host: str, port: int) -> socket.socket:
    """Binds (without listening) a SO_REUSEPORT socket that holds the port for the workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    reserved = socket.socket(family, socket.SOCK_STREAM)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if reserved.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0:
        reserved.close()
        raise OSError("SO_REUSEPORT is not available: --workers needs it")
    reserved.bind((host.strip("[]"), port))
    return reserved


class Supervisor:
    """Starts, watches and stops the workers and the trainer of one `mfrec serve`."""

    def __init__(self, config: ServerConfig, workers: int) -> None:
        if workers < 2:
            raise ValueError("a supervisor runs at least two workers")
        self.config = config
        self.workers = workers
        self.context = multiprocessing.get_context("spawn")
        self.stopping = threading.Event()
        self._processes: list[SpawnProcess | None] = [None] * workers
        self._started_at = [0.0] * workers
        self.runner = JobRunner(
            config.model_dir,
            TrainerSettings(config.rating_range, config.limits.max_id_bytes, config.keep_versions),
            self.context,
            self._worker_pids,
        )

    def run(self) -> int:
        """Serves until SIGTERM or SIGINT, then drains every worker; returns the exit code."""
        reserved = reserve_port(self.config.host, self.config.port)
        port = reserved.getsockname()[1]
        self.worker_config = dataclasses.replace(
            self.config,
            port=port,
            reuse_port=True,
            poll_seconds=POLL_SECONDS,
            shared_jobs=True,
            max_connection_age_seconds=self.config.max_connection_age_seconds
            or MAX_CONNECTION_AGE_SECONDS,
        )
        self.config.model_dir.mkdir(parents=True, exist_ok=True)
        self.runner.recover()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for slot in range(self.workers):
            self._start(slot)
        log.info(
            "supervisor %d: %d workers on %s:%d", os.getpid(), self.workers, self.config.host, port
        )
        try:
            while not self.stopping.wait(POLL_SECONDS):
                self.runner.poll()
                self._restart_dead()
        finally:
            self._drain()
            reserved.close()
        log.info("supervisor stopped")
        return 0

    def _worker_pids(self) -> list[int]:
        return [p.pid for p in self._processes if p is not None and p.is_alive() and p.pid]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping.is_set():
            log.info("received %s, draining the workers", signal.Signals(signum).name)
        self.stopping.set()

    def _start(self, slot: int) -> None:
        with _environment(WORKER_ENVIRONMENT):
            process = self.context.Process(
                target=worker_main,
                args=(self.worker_config, os.getpid(), log.getEffectiveLevel()),
                name=f"mfrec-worker-{slot}",
            )
            process.start()
        self._processes[slot] = process
        self._started_at[slot] = time.monotonic()

    def _restart_dead(self) -> None:
        for slot, process in enumerate(self._processes):
            if process is None or process.is_alive():
                continue
            if time.monotonic() - self._started_at[slot] < _RESTART_DELAY_SECONDS:
                continue  # a worker failing at start is retried at most once a second
            log.error("worker %d exited (%s); starting another", process.pid, process.exitcode)
            process.join()
            self._start(slot)

    def _drain(self) -> None:
        grace = self.config.grace_seconds
        for process in self._processes:
            if process is not None and process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        self.runner.stop(grace)
        deadline = time.monotonic() + grace + 5.0
        for process in self._processes:
            if process is None:
                continue
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker %d did not stop in time; killing it", process.pid)
                process.kill()
                process.join()


def run_supervisor(config: ServerConfig, workers: int) -> int:
    """Runs `mfrec serve` with several worker processes (see the module docstring)."""
    return Supervisor(config, workers).run()
