"""Batched regularized least squares over the rows of a sparse matrix, the core step of ALS.

For every row r of a CSR matrix with entries (column c, target t_c) and a fixed factor
matrix Y, solves

    (sum_c w_c y_c y_c^T + G + diag(reg_r)) x_r = sum_c (1 + w_c) t_c y_c   (implicit form)
    (sum_c y_c y_c^T + diag(reg_r)) x_r = sum_c t_c y_c                     (explicit form)

without a Python loop over rows or entries: rows are grouped into buckets of similar length,
padded to the bucket's longest row, and each bucket is one stacked matmul and one stacked
solve. Buckets grow geometrically, so padding wastes at most ~20% of the work.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

_BUCKET_GROWTH = 1.2
_SMALL_ROW = 16
_CHUNK_BYTES = 64 * 1024 * 1024

FloatArray = npt.NDArray[np.float64]


def _buckets(counts: npt.NDArray[np.int64], width: int) -> Iterator[npt.NDArray[np.int64]]:
    """Yields groups of row indices of similar length, each small enough for one chunk."""
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
        per_chunk = max(1, _CHUNK_BYTES // (8 * longest * width))
        for chunk_start in range(start, stop, per_chunk):
            yield rows[chunk_start : min(stop, chunk_start + per_chunk)]


def _gather(
    rows: npt.NDArray[np.int64],
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    data: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], FloatArray, npt.NDArray[np.bool_]]:
    """Returns padded (rows x longest) column indices, values and the mask of real entries."""
    longest = int(counts[rows].max())
    offsets = np.arange(longest, dtype=np.int64)
    valid = offsets[None, :] < counts[rows][:, None]
    positions = np.where(valid, indptr[rows][:, None] + offsets[None, :], 0)
    columns = indices[positions].astype(np.int64)
    values = np.where(valid, data[positions], 0.0)
    return columns, values, valid


def solve_explicit_rows(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    targets: FloatArray,
    fixed: FloatArray,
    regularization: FloatArray,
) -> FloatArray:
    """Solves (Y_r^T Y_r + diag(reg_r)) x_r = Y_r^T t_r for every row; empty rows get 0.

    Args:
        indptr, indices: the CSR structure (rows x columns of `fixed`).
        targets: the value to fit for each stored entry, aligned with `indices`.
        fixed: the other side's factors, one row per column (columns x d).
        regularization: the diagonal added to each row's Gram matrix (rows x d).
    """
    n_rows, width = regularization.shape
    solution = np.zeros((n_rows, width), dtype=np.float64)
    counts = np.diff(indptr).astype(np.int64)
    diagonal = np.arange(width)
    for rows in _buckets(counts, width):
        columns, values, valid = _gather(rows, indptr, indices, targets, counts)
        stacked = fixed[columns] * valid[:, :, None]
        gram = np.matmul(stacked.transpose(0, 2, 1), stacked)
        gram[:, diagonal, diagonal] += regularization[rows]
        rhs = np.matmul(stacked.transpose(0, 2, 1), values[:, :, None])
        solution[rows] = np.linalg.solve(gram, rhs)[:, :, 0]
    return solution


def solve_implicit_rows(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    weights: FloatArray,
    fixed: FloatArray,
    base_gram: FloatArray,
    regularization: FloatArray,
) -> FloatArray:
    """Solves the weighted-ALS normal equations of Hu, Koren and Volinsky (2008) per row.

    (Y^T Y + Y_r^T (C_r - I) Y_r + diag(reg_r)) x_r = Y_r^T C_r p_r, with preference p = 1 on
    stored entries and confidence C = 1 + w, where w = alpha * value is passed as `weights`.
    Rows with no entries get 0 (their right-hand side is 0).
    """
    n_rows, width = regularization.shape
    solution = np.zeros((n_rows, width), dtype=np.float64)
    counts = np.diff(indptr).astype(np.int64)
    diagonal = np.arange(width)
    for rows in _buckets(counts, width):
        columns, extra, valid = _gather(rows, indptr, indices, weights, counts)
        stacked = fixed[columns] * valid[:, :, None]
        weighted = stacked * extra[:, :, None]
        gram = np.matmul(stacked.transpose(0, 2, 1), weighted) + base_gram[None, :, :]
        gram[:, diagonal, diagonal] += regularization[rows]
        confidence = (1.0 + extra) * valid
        rhs = np.matmul(stacked.transpose(0, 2, 1), confidence[:, :, None])
        solution[rows] = np.linalg.solve(gram, rhs)[:, :, 0]
    return solution
