"""Batched regularized least squares over the rows of a sparse matrix, the core step of ALS.

For every row r of a CSR matrix with entries (column c, target t_c) and a fixed factor
matrix Y, solves

    (sum_c y_c y_c^T + diag(reg_r)) x_r = sum_c t_c y_c                 (explicit form)
    (Y^T Y + sum_c (c_c - 1) y_c y_c^T + reg I) x_r = sum_c c_c y_c     (weighted form)

without a Python loop over rows or entries.

Explicit form: rows are grouped into buckets of similar length, padded to the bucket's longest
row; each bucket is one stacked matmul for the Gram matrices (float32: 2-4x faster than
float64, and sums of at most a few thousand terms of size ~1), then either a few warm-started
conjugate-gradient steps (stacked matvecs) or an exact stacked solve in float64. Buckets grow
geometrically, so padding wastes at most ~25% of the work. A stacked np.linalg.cholesky alone
costs as much as a stacked np.linalg.solve at these sizes and numpy has no batched triangular
solve, so exact solves use LU.

Weighted form (implicit feedback, d ~ 128): conjugate gradient without any Gram matrix, each
product two passes over the stored entries (nnz * d work instead of nnz * d^2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

_BUCKET_GROWTH = 1.25
_SMALL_ROW = 8
_CHUNK_BYTES = 32 * 1024 * 1024
_SINGLE_THREAD_GEMM = 4 * 65536

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class RowBatch:
    """The normal equations of a group of rows.

    Attributes:
        rows: the row indices of the group.
        gram: sum_c w_c y_c y_c^T per row (rows x d x d, float32); w_c = 1 when unweighted.
        rhs: sum_c t_c y_c per row (rows x d, float32).
    """

    rows: IntArray
    gram: Float32Array
    rhs: Float32Array


def _buckets(counts: IntArray, width: int) -> Iterator[IntArray]:
    """Yields groups of non-empty rows of similar length, each small enough for one chunk."""
    nonempty = np.flatnonzero(counts > 0)
    if nonempty.size == 0:
        return
    lengths = counts[nonempty]
    keys = np.where(
        lengths <= _SMALL_ROW,
        lengths,
        _SMALL_ROW + np.ceil(np.log(lengths / _SMALL_ROW) / np.log(_BUCKET_GROWTH)),
    ).astype(np.int64)
    order = np.argsort(keys, kind="stable")
    rows, keys = nonempty[order], keys[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    stops = np.r_[starts[1:], keys.size]
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        longest = int(counts[rows[start:stop]].max())
        per_chunk = max(1, _CHUNK_BYTES // (4 * (longest + width) * width))
        for chunk_start in range(start, stop, per_chunk):
            yield rows[chunk_start : min(stop, chunk_start + per_chunk)]


def _positions(rows: IntArray, indptr: IntArray, counts: IntArray, length: int) -> IntArray:
    """Returns the (rows x length) entry positions of the rows, padded with -1 (the last)."""
    offsets = np.arange(length, dtype=np.int64)
    valid = offsets[None, :] < counts[rows][:, None]
    return np.where(valid, indptr[rows][:, None] + offsets[None, :], -1)


def _pieces(longest: int, width: int) -> tuple[int, int]:
    """Splits a row of `longest` entries into (pieces, piece length) of single-threaded size.

    OpenBLAS runs a gemm on several threads once m * n * k exceeds 4 * 65536; a stacked
    matmul is thousands of small gemms, and each one's thread hand-off then costs more than
    its arithmetic (10x slower fits on a busy 2-core machine). Keeping every gemm under the
    threshold keeps the whole stacked matmul on the calling thread.
    """
    limit = max(1, _SINGLE_THREAD_GEMM // (width * width))
    pieces = -(-longest // limit)
    return pieces, -(-longest // pieces)


def _stacked_gram(stacked: Float32Array, pieces: int) -> Float32Array:
    """Returns stacked[r].T @ stacked[r] for every r, summing the gram of each piece."""
    rows, length, width = stacked.shape
    parts = stacked.reshape(rows * pieces, length // pieces, width)
    grams = np.matmul(parts.transpose(0, 2, 1), parts)
    summed: Float32Array = grams.reshape(rows, pieces, width, width).sum(axis=1)
    return summed


def row_batches(
    indptr: npt.NDArray[np.integer],
    indices: npt.NDArray[np.integer],
    targets: npt.NDArray[np.floating],
    fixed: npt.NDArray[np.floating],
) -> Iterator[RowBatch]:
    """Yields the per-row Gram matrices and right-hand sides, bucket by bucket.

    Args:
        indptr, indices: the CSR structure (rows x rows of `fixed`).
        targets: t_c for each stored entry, aligned with `indices`.
        fixed: the other side's factors, one row per column (columns x d).
    """
    offsets: IntArray = np.asarray(indptr, dtype=np.int64)
    counts = np.diff(offsets)
    width = fixed.shape[1]
    # Padding slots (position -1) read an extra entry of target 0 whose column is an extra
    # all-zero row of `fixed`, so they add nothing to the Gram matrix or the rhs.
    padded_fixed = np.vstack([fixed, np.zeros((1, width))]).astype(np.float32)
    padded_columns = np.r_[indices, fixed.shape[0]].astype(np.int64)
    padded_targets = np.r_[targets, 0.0].astype(np.float32)
    for rows in _buckets(counts, width):
        pieces, piece = _pieces(int(counts[rows].max()), width)
        positions = _positions(rows, offsets, counts, pieces * piece)
        stacked = padded_fixed[padded_columns[positions]]
        rhs = np.matmul(stacked.transpose(0, 2, 1), padded_targets[positions][:, :, None])
        yield RowBatch(rows, _stacked_gram(stacked, pieces), rhs[:, :, 0])


def solve_explicit_rows(
    indptr: npt.NDArray[np.integer],
    indices: npt.NDArray[np.integer],
    targets: npt.NDArray[np.floating],
    fixed: npt.NDArray[np.floating],
    regularization: FloatArray,
    initial: FloatArray | None = None,
    cg_steps: int = 0,
) -> FloatArray:
    """Solves (Y_r^T Y_r + diag(reg_r)) x_r = Y_r^T t_r for every row; empty rows get 0.

    Args:
        indptr, indices: the CSR structure (rows x columns of `fixed`).
        targets: the value to fit for each stored entry, aligned with `indices`.
        fixed: the other side's factors, one row per column (columns x d).
        regularization: the diagonal added to each row's Gram matrix (rows x d).
        initial: a starting point (rows x d) for conjugate gradient, e.g. the previous sweep.
        cg_steps: conjugate-gradient steps from `initial`; 0 (or no initial) solves exactly.
    """
    n_rows, width = regularization.shape
    solution = np.zeros((n_rows, width), dtype=np.float64)
    diagonal = np.arange(width)
    for batch in row_batches(indptr, indices, targets, fixed):
        batch.gram[:, diagonal, diagonal] += regularization[batch.rows]
        solution[batch.rows] = _solve(batch, initial, cg_steps)
    return solution


def _solve(batch: RowBatch, initial: FloatArray | None, cg_steps: int) -> FloatArray:
    if initial is None or cg_steps <= 0:
        gram = batch.gram.astype(np.float64)
        solved = np.linalg.solve(gram, batch.rhs.astype(np.float64)[:, :, None])
        return solved[:, :, 0].astype(np.float64, copy=False)
    start = initial[batch.rows].astype(np.float32)
    return conjugate_gradient(batch.gram, batch.rhs, start, cg_steps).astype(np.float64)


def conjugate_gradient(
    gram: npt.NDArray[np.floating],
    rhs: npt.NDArray[np.floating],
    start: npt.NDArray[np.floating],
    steps: int,
) -> npt.NDArray[np.floating]:
    """Runs `steps` of conjugate gradient on every stacked SPD system A x = b at once.

    Warm-started from the previous sweep, a few steps are as good as an exact solve for
    ALS (Takacs et al. 2011) at a fraction of its cost: each step is one stacked matvec.
    """

    def product(x: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
        applied: npt.NDArray[np.floating] = np.matmul(gram, x[:, :, None])[:, :, 0]
        return applied

    return _row_wise_cg(product, rhs, start.copy(), steps)


@dataclass(frozen=True)
class WeightedRows:
    """Per-row weighted normal equations (implicit feedback), applied without Gram matrices.

    Row r's system is (G + sum_c (c_c - 1) y_c y_c^T + lambda I) x_r = sum_c c_c y_c, with
    G = Y^T Y: eq. 4 of Hu, Koren and Volinsky (2008), preference 1 on stored entries.

    Attributes:
        indptr, indices: the CSR structure (rows x rows of `fixed`).
        confidence: c_c for each stored entry (float32).
        fixed: the other side's factors Y (columns x d, float32).
        base_gram: G, shared by every row (d x d, float32).
        regularization: lambda.
    """

    indptr: IntArray
    indices: npt.NDArray[np.integer]
    confidence: Float32Array
    fixed: Float32Array
    base_gram: Float32Array
    regularization: np.float32


def solve_weighted_rows(system: WeightedRows, start: FloatArray, steps: int) -> FloatArray:
    """Runs `steps` of conjugate gradient on every row's system at once, from `start`.

    Each product A x costs two passes over the stored entries (a row-wise dot with the
    gathered y_c, then a sparse product), never the nnz * d^2 of forming Gram matrices: the
    matrix-free conjugate gradient of Takacs et al. (2011), as in implicit's cg solver.
    """
    n_rows = system.indptr.shape[0] - 1
    entry_rows = np.repeat(np.arange(n_rows), np.diff(system.indptr))
    gathered = system.fixed[system.indices]
    extra = system.confidence - np.float32(1.0)
    shape = (n_rows, system.fixed.shape[0])

    def product(x: Float32Array) -> Float32Array:
        dots = np.einsum("nd,nd->n", gathered, x[entry_rows]) * extra
        spread = sp.csr_matrix((dots, system.indices, system.indptr), shape=shape) @ system.fixed
        applied: Float32Array = x @ system.base_gram + system.regularization * x + spread
        return applied

    weights = sp.csr_matrix((system.confidence, system.indices, system.indptr), shape=shape)
    rhs = weights @ system.fixed
    return _row_wise_cg(product, rhs, start.astype(np.float32), steps).astype(np.float64)


def _row_wise_cg(
    product: Callable[[npt.NDArray[np.floating]], npt.NDArray[np.floating]],
    rhs: npt.NDArray[np.floating],
    x: npt.NDArray[np.floating],
    steps: int,
) -> npt.NDArray[np.floating]:
    """Conjugate gradient where every row of x is its own system; `product` applies A to all.

    Updates x in place and returns it. A row whose residual reaches 0 stops moving.
    """
    residual = rhs - product(x)
    direction = residual.copy()
    norm = np.einsum("bi,bi->b", residual, residual)
    for _ in range(steps):
        applied = product(direction)
        curvature = np.einsum("bi,bi->b", direction, applied)
        # alpha_k = r^T r / p^T A p, then beta_k = r_new^T r_new / r^T r.
        step = np.divide(norm, curvature, out=np.zeros_like(norm), where=curvature > 0)
        x += step[:, None] * direction
        residual -= step[:, None] * applied
        new_norm = np.einsum("bi,bi->b", residual, residual)
        ratio = np.divide(new_norm, norm, out=np.zeros_like(norm), where=norm > 0)
        direction = residual + ratio[:, None] * direction
        norm = new_norm
    return x
