"""Top-k selection over a score vector, with per-thread reusable score buffers."""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt

_EMPTY_INDEX = np.empty(0, dtype=np.int64)
_EMPTY_SCORE = np.empty(0, dtype=np.float32)
_local = threading.local()


def score_buffer(size: int) -> npt.NDArray[np.float32]:
    """Returns this thread's float32 scratch vector of the given size.

    Allocating and first touching a catalog-sized vector costs far more than filling it on
    these machines, so each request thread keeps one and reuses it; the caller must copy out
    what it keeps before the thread's next request.
    """
    buffer: npt.NDArray[np.float32] | None = getattr(_local, "scores", None)
    if buffer is None or buffer.shape[0] != size:
        buffer = np.empty(size, dtype=np.float32)
        _local.scores = buffer
    return buffer


def top_k(
    scores: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Returns the indices and scores of the k highest finite scores, best first.

    Equal scores are ordered by index, so the answer is deterministic; -inf marks an item that
    must not be returned, so fewer than k items come back when fewer are eligible.
    """
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        return _EMPTY_INDEX, _EMPTY_SCORE
    if k < n:
        part = np.argpartition(scores, n - k)[n - k :]
        threshold = scores[part].min()
        # Items tied with the k-th best may sit outside the partition: take them all, so the
        # lowest indices win the tie.
        candidates = np.flatnonzero(scores >= threshold)
    else:
        candidates = np.arange(n)
    chosen = candidates[np.lexsort((candidates, -scores[candidates]))[:k]]
    values = scores[chosen]
    keep = values > -np.inf
    return chosen[keep], values[keep].astype(np.float32)
