"""Top-k selection over score vectors and matrices, with per-thread reusable buffers."""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt

_EMPTY_INDEX = np.empty(0, dtype=np.int64)
_EMPTY_SCORE = np.empty(0, dtype=np.float32)
_LOWEST = np.float32(-np.finfo(np.float32).max)
# Large rows are bounded by block maxima: this many blocks per k, each at least this wide.
_BLOCKS_PER_K = 8
_MIN_BLOCK_WIDTH = 4
# Blocks at least this wide are reduced as contiguous runs, narrower ones as strided groups.
_CONTIGUOUS_BLOCK_WIDTH = 256
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


def work_buffers(
    rows: int, size: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Returns this thread's (scores, scratch, mask) matrices of rows x size.

    The scores hold the product being ranked, the scratch a copy that is partitioned in place
    to find each row's threshold, and the mask the candidates; like score_buffer they are kept
    per thread, so a request allocates nothing proportional to the catalog.
    """
    needed = rows * size
    flat: tuple[np.ndarray, np.ndarray, np.ndarray] | None = getattr(_local, "work", None)
    if flat is None or flat[0].shape[0] < needed:
        # np.empty maps pages without touching them: a scratch that kth_lower_bounds never
        # writes (large rows use block maxima) costs no memory.
        flat = (
            np.empty(needed, dtype=np.float32),
            np.empty(needed, dtype=np.float32),
            np.empty(needed, dtype=np.bool_),
        )
        _local.work = flat
    scores, scratch, mask = (part[:needed].reshape(rows, size) for part in flat)
    return scores, scratch, mask


def kth_lower_bounds(
    scores: npt.NDArray[np.float32], k: int, scratch: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Returns per row a value that k of the row's entries reach, at most its k-th largest.

    -inf when a row has fewer than k finite entries. Large rows take the k-th largest of
    their block maxima (k distinct entries reach it, so it is a valid bound, and it is the
    exact k-th largest unless two of the top k share a block): one pass, where partitioning
    a row costs many. Small rows are partitioned (in scratch) for the exact value.
    """
    rows, n = scores.shape
    blocks = _BLOCKS_PER_K * k
    if n < _MIN_BLOCK_WIDTH * blocks:
        np.copyto(scratch, scores)
        scratch.partition(n - k, axis=1)
        return np.array(scratch[:, n - k])
    width = n // blocks
    head = scores[:, : blocks * width]
    if width >= _CONTIGUOUS_BLOCK_WIDTH:
        maxima = head.reshape(rows, blocks, width).max(axis=2)
    else:
        # Any k disjoint groups of entries bound alike: the groups {j, j + blocks, ...} are
        # reduced by an elementwise maximum over contiguous rows of `blocks` entries, which
        # is several times faster than reducing many short blocks.
        maxima = head.reshape(rows, width, blocks).max(axis=1)
    bounds = np.partition(maxima, blocks - k, axis=1)[:, blocks - k]
    for row in np.flatnonzero(bounds == -np.inf):  # many masked blocks: rare, exact instead
        scratch[row] = scores[row]
        scratch[row].partition(n - k)
        bounds[row] = scratch[row, n - k]
    return bounds


def _kth_lower_bound(
    scores: npt.NDArray[np.float32], k: int, scratch: npt.NDArray[np.float32]
) -> np.float32:
    """kth_lower_bounds of one vector, with the fewest steps (this is every request's path)."""
    n = scores.shape[0]
    blocks = _BLOCKS_PER_K * k
    if n >= _MIN_BLOCK_WIDTH * blocks:
        width = n // blocks
        head = scores[: blocks * width]
        if width >= _CONTIGUOUS_BLOCK_WIDTH:
            maxima = head.reshape(blocks, width).max(axis=1)
        else:
            maxima = head.reshape(width, blocks).max(axis=0)
        maxima.partition(blocks - k)
        if maxima[blocks - k] > -np.inf:
            return np.float32(maxima[blocks - k])
    np.copyto(scratch, scores)
    scratch.partition(n - k)
    return np.float32(scratch[n - k])


def candidates(
    scores: npt.NDArray[np.float32],
    k: int,
    slack: float,
    scratch: npt.NDArray[np.float32],
    mask: npt.NDArray[np.bool_],
) -> npt.NDArray[np.int64]:
    """Returns, ascending, the index of every entry of one vector that may be in its top k.

    The one-row form of candidate_pairs, with the same guarantee.
    """
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        return _EMPTY_INDEX
    bound = _LOWEST
    if k < n:
        threshold = _kth_lower_bound(scores, k, scratch)
        if threshold > -np.inf:
            bound = np.float32(threshold - np.float32(slack))
    np.greater_equal(scores, bound, out=mask)
    return np.flatnonzero(mask)


def candidate_pairs(
    scores: npt.NDArray[np.float32],
    ks: npt.NDArray[np.int64],
    slack: npt.NDArray[np.float32],
    scratch: npt.NDArray[np.float32],
    mask: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Returns (row, column) of every entry that may be in its row's top k.

    scores are approximate: each entry may be off by at most slack[row] / 2 from its exact
    value. A value T that k entries of a row reach bounds the row's k-th best exact score
    from below by T - slack / 2, so every entry whose exact score reaches that (ties
    included) has an approximate score of at least T - slack. -inf marks an entry that is
    never a candidate. Rows come out in order, columns ascending within a row.
    """
    n = scores.shape[1]
    k = int(min(int(ks.max(initial=0)), n))
    if k <= 0:
        return _EMPTY_INDEX, _EMPTY_INDEX
    if k < n:
        threshold = kth_lower_bounds(scores, k, scratch)
        # A row with fewer than k eligible entries takes all of its finite ones.
        bound = np.where(threshold > -np.inf, threshold - slack, _LOWEST).astype(np.float32)
    else:
        bound = np.full(scores.shape[0], _LOWEST, dtype=np.float32)
    np.greater_equal(scores, bound[:, None], out=mask)
    # One flat search and a division: several times faster than np.nonzero of a matrix.
    rows, columns = np.divmod(np.flatnonzero(mask), n)
    return rows, columns


def rank_pairs(
    rows: npt.NDArray[np.int64],
    columns: npt.NDArray[np.int64],
    exact: npt.NDArray[np.float32],
    ks: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Orders candidates by (row, exact score descending, column) and keeps each row's k.

    Returns the kept columns and scores, grouped by row, and the offsets where each row's
    group starts (length rows + 1), so row r is columns[offsets[r]:offsets[r + 1]].
    """
    order = np.lexsort((columns, -exact, rows))
    rows, columns, exact = rows[order], columns[order], exact[order]
    counts = np.bincount(rows, minlength=ks.shape[0])
    starts = np.cumsum(counts) - counts
    rank = np.arange(rows.shape[0]) - np.repeat(starts, counts)
    keep = rank < ks[rows]
    kept = np.bincount(rows[keep], minlength=ks.shape[0])
    offsets = np.zeros(ks.shape[0] + 1, dtype=np.int64)
    np.cumsum(kept, out=offsets[1:])
    return columns[keep], exact[keep], offsets
