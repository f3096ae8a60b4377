"""Model store: the serving snapshot, swapped by one reference assignment, and saved versions."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mfrec.server.errors import NoModel
from mfrec.server.model import ServingModel
from mfrec.training.artifact import (
    ArtifactError,
    list_versions,
    read_artifact,
    remove_stale_temporaries,
)

log = logging.getLogger(__name__)


class ModelStore:
    """Holds the model that answers requests and manages the versions under model_dir.

    A request reads `current` once and uses that snapshot throughout, so a swap never mixes
    two models in one answer.
    """

    def __init__(self, model_dir: Path, keep_versions: int = 3, mmap: bool = True) -> None:
        if keep_versions < 1:
            raise ValueError("keep_versions must be at least 1")
        self.model_dir = model_dir
        self.keep_versions = keep_versions
        self.mmap = mmap
        self._current: ServingModel | None = None
        self._lock = threading.Lock()
        self._listeners: list[Callable[[ServingModel], None]] = []
        self._refresh_lock = threading.Lock()
        self._broken: set[str] = set()
        self._polling = threading.Event()
        self._poller: threading.Thread | None = None

    def add_listener(self, listener: Callable[[ServingModel], None]) -> None:
        """Calls listener with every model swapped in from now on."""
        self._listeners.append(listener)

    @property
    def current(self) -> ServingModel | None:
        return self._current

    def require(self) -> ServingModel:
        """Returns the serving model, or raises NoModel."""
        model = self._current
        if model is None:
            raise NoModel()
        return model

    def load_newest(self) -> ServingModel | None:
        """Serves the newest version that loads; broken newer ones are skipped and logged."""
        remove_stale_temporaries(self.model_dir)
        for version in reversed(list_versions(self.model_dir)):
            try:
                model = ServingModel.load(self.model_dir / version, mmap=self.mmap)
            except ArtifactError as error:
                log.error("skipping model version %s: %s", version, error)
                continue
            self.swap(model)
            return model
        return None

    def _loads(self, version: str) -> bool:
        try:
            read_artifact(self.model_dir / version, mmap=True)
        except ArtifactError:
            return False
        return True

    def load_version(self, path: Path) -> ServingModel:
        """Loads one version directory (raises ArtifactError when it is unusable)."""
        return ServingModel.load(path, mmap=self.mmap)

    def swap(self, model: ServingModel) -> None:
        """Makes model the one serving."""
        with self._lock:
            self._current = model
        log.info("serving model version %s", model.version)
        for listener in self._listeners:
            listener(model)

    def refresh(self) -> ServingModel | None:
        """Swaps in the newest saved version if it is newer than the one serving.

        Another process saved it (the trainer of `--workers`, or `mfrec train`). A version
        that fails to load is logged once and skipped from then on.
        """
        with self._refresh_lock:
            serving = self._current.version if self._current is not None else ""
            for version in reversed(list_versions(self.model_dir)):
                if version <= serving:
                    return None
                if version in self._broken:
                    continue
                try:
                    model = self.load_version(self.model_dir / version)
                except ArtifactError as error:
                    log.error("skipping model version %s: %s", version, error)
                    self._broken.add(version)
                    continue
                self.swap(model)
                return model
        return None

    def refresh_to(self, version: str) -> None:
        """Makes sure a version at least as new as the given one serves, if it loads."""
        current = self._current
        if current is None or current.version < version:
            self.refresh()

    def start_polling(self, interval_seconds: float) -> None:
        """Checks the model dir for new versions every interval, on a background thread."""
        if self._poller is not None:
            return
        self._poller = threading.Thread(
            target=self._poll, args=(interval_seconds,), name="model-poll", daemon=True
        )
        self._poller.start()

    def stop_polling(self) -> None:
        self._polling.set()
        if self._poller is not None:
            self._poller.join()
            self._poller = None

    def _poll(self, interval_seconds: float) -> None:
        # A save renames a folder into model_dir, which changes its mtime: a stat is enough
        # until then. Two changes within the timestamp granularity can leave the mtime
        # unchanged, so an mtime less than a second old is checked again at the next poll.
        settled: int | None = None
        while not self._polling.wait(interval_seconds):
            try:
                mtime = os.stat(self.model_dir).st_mtime_ns
            except OSError:
                continue
            if mtime == settled:
                continue
            try:
                self.refresh()
            except OSError as error:
                log.warning("could not check %s for new versions: %s", self.model_dir, error)
                continue
            settled = mtime if time.time_ns() - mtime > 1_000_000_000 else None

    def prune(self) -> list[str]:
        """Keeps the newest keep_versions loadable versions (and the serving one); deletes
        the older ones.

        A version that fails to load never counts as kept, so broken folders cannot push the
        last good fallback out; they are left for an operator to inspect until they are older
        than keep_versions good ones.
        """
        serving = self._current.version if self._current is not None else None
        kept, removed = 0, []
        for version in reversed(list_versions(self.model_dir)):
            if version == serving:
                kept += 1
            elif kept >= self.keep_versions:
                shutil.rmtree(self.model_dir / version, ignore_errors=True)
                removed.append(version)
            elif self._loads(version):
                kept += 1
            else:
                log.warning("model version %s does not load; not counted as kept", version)
        if removed:
            log.info("removed old model versions %s", ", ".join(removed))
        return removed
