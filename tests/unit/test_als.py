"""Explicit ALS and the batched least-squares solvers: determinism and known right answers."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import scipy.sparse as sp

from mfrec.training.als import IterationReport, fit_explicit_als
from mfrec.training.config import ALS_EXPLICIT, TrainingConfig
from mfrec.training.interactions import Interactions
from mfrec.training.linalg import (
    WeightedRows,
    conjugate_gradient,
    row_batches,
    solve_explicit_rows,
    solve_weighted_rows,
)
from mfrec.training.models import fit_model


def low_rank_ratings(
    n_users: int = 60, n_items: int = 50, rank: int = 3, density: float = 0.5, seed: int = 0
) -> tuple[Interactions, Interactions]:
    """A noiseless rank-`rank` matrix plus biases, split into observed and held-out cells."""
    rng = np.random.default_rng(seed)
    users = rng.normal(0.0, 0.7, (n_users, rank))
    items = rng.normal(0.0, 0.7, (n_items, rank))
    full = 3.0 + rng.normal(0, 0.3, (n_users, 1)) + rng.normal(0, 0.3, (1, n_items))
    full += users @ items.T
    observed = rng.random((n_users, n_items)) < density
    return _cells(full, observed), _cells(full, ~observed)


def _cells(full: npt.NDArray[np.float64], mask: npt.NDArray[np.bool_]) -> Interactions:
    rows, cols = np.nonzero(mask)
    return Interactions(
        user_ids=[f"u{u}" for u in range(full.shape[0])],
        item_ids=[f"i{i}" for i in range(full.shape[1])],
        user_index=rows.astype(np.int32),
        item_index=cols.astype(np.int32),
        values=full[rows, cols].astype(np.float32),
    )


def _rmse(factors: object, data: Interactions) -> float:
    predicted = factors.predict(data.user_index, data.item_index)  # type: ignore[attr-defined]
    return float(np.sqrt(np.mean((predicted - data.values) ** 2)))


def test_same_seed_gives_identical_arrays() -> None:
    train, _ = low_rank_ratings()
    config = TrainingConfig(factors=4, iterations=5, seed=3)
    first, second = fit_explicit_als(train, config), fit_explicit_als(train, config)
    np.testing.assert_array_equal(first.user_factors, second.user_factors)
    np.testing.assert_array_equal(first.item_factors, second.item_factors)
    np.testing.assert_array_equal(first.item_bias, second.item_bias)


def test_different_seed_gives_different_arrays() -> None:
    train, _ = low_rank_ratings()
    first = fit_explicit_als(train, TrainingConfig(factors=4, iterations=5, seed=3))
    second = fit_explicit_als(train, TrainingConfig(factors=4, iterations=5, seed=4))
    assert not np.array_equal(first.user_factors, second.user_factors)


def test_recovers_a_low_rank_matrix() -> None:
    train, held_out = low_rank_ratings()
    config = TrainingConfig(factors=3, iterations=60, regularization=1e-4, bias_regularization=1e-3)
    factors = fit_model(train, config)
    spread = float(np.std(held_out.values))
    assert _rmse(factors, train) < 0.02 * spread
    assert _rmse(factors, held_out) < 0.05 * spread


def test_progress_reports_every_sweep_with_the_validator() -> None:
    train, held_out = low_rank_ratings()
    reports: list[IterationReport] = []
    fit_explicit_als(
        train,
        TrainingConfig(factors=3, iterations=4),
        reports.append,
        lambda factors: _rmse(factors, held_out),
    )
    assert [report.iteration for report in reports] == [1, 2, 3, 4]
    assert all(report.validation_rmse is not None for report in reports)
    assert reports[-1].train_rmse < reports[0].train_rmse


def test_tuned_defaults_fill_every_field() -> None:
    config = TrainingConfig(algorithm=ALS_EXPLICIT).resolved()
    assert config.factors > 0 and config.iterations > 0
    assert config.regularization > 0 and config.bias_regularization > 0


def _random_csr(n_rows: int, n_cols: int, density: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    matrix = sp.random(n_rows, n_cols, density=density, format="csr", random_state=rng)
    matrix.data = rng.normal(size=matrix.nnz)
    matrix.sort_indices()
    return matrix


def _dense_solution(
    matrix: sp.csr_matrix, fixed: npt.NDArray[np.float64], reg: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    expected = np.zeros((matrix.shape[0], fixed.shape[1]))
    for row in range(matrix.shape[0]):
        start, stop = matrix.indptr[row], matrix.indptr[row + 1]
        if start == stop:
            continue
        chosen = fixed[matrix.indices[start:stop]]
        gram = chosen.T @ chosen + np.diag(reg[row])
        expected[row] = np.linalg.solve(gram, chosen.T @ matrix.data[start:stop])
    return expected


@pytest.mark.parametrize("density", [0.02, 0.3, 0.9])
def test_solve_explicit_rows_matches_a_per_row_solve(density: float) -> None:
    matrix = _random_csr(70, 90, density, seed=1)
    fixed = np.random.default_rng(2).normal(size=(90, 6))
    reg = np.full((70, 6), 0.5)
    solved = solve_explicit_rows(matrix.indptr, matrix.indices, matrix.data, fixed, reg)
    np.testing.assert_allclose(solved, _dense_solution(matrix, fixed, reg), atol=1e-4)


def test_row_batches_cover_each_nonempty_row_once() -> None:
    matrix = _random_csr(200, 300, 0.05, seed=3)
    fixed = np.ones((300, 2))
    seen = np.concatenate(
        [b.rows for b in row_batches(matrix.indptr, matrix.indices, matrix.data, fixed)]
    )
    nonempty = np.flatnonzero(np.diff(matrix.indptr) > 0)
    np.testing.assert_array_equal(np.sort(seen), nonempty)


def test_conjugate_gradient_reaches_the_exact_solution() -> None:
    rng = np.random.default_rng(4)
    basis = rng.normal(size=(10, 8, 8))
    gram = (basis @ basis.transpose(0, 2, 1) + 8 * np.eye(8)).astype(np.float32)
    rhs = rng.normal(size=(10, 8)).astype(np.float32)
    solved = conjugate_gradient(gram, rhs, np.zeros_like(rhs), steps=16)
    exact = np.linalg.solve(gram.astype(np.float64), rhs[:, :, None].astype(np.float64))
    np.testing.assert_allclose(solved, exact[:, :, 0], atol=1e-3)


def test_weighted_rows_match_the_dense_normal_equations() -> None:
    rng = np.random.default_rng(5)
    matrix = _random_csr(30, 40, 0.2, seed=6)
    fixed = rng.normal(size=(40, 5)).astype(np.float32)
    base = fixed.T @ fixed
    confidence = rng.uniform(1.0, 4.0, matrix.nnz).astype(np.float32)
    system = WeightedRows(
        indptr=matrix.indptr.astype(np.int64),
        indices=matrix.indices,
        confidence=confidence,
        fixed=fixed,
        base_gram=base,
        regularization=np.float32(0.3),
    )
    solved = solve_weighted_rows(system, np.zeros((30, 5)), steps=25)
    for row in range(30):
        start, stop = matrix.indptr[row], matrix.indptr[row + 1]
        chosen = fixed[matrix.indices[start:stop]].astype(np.float64)
        weights = confidence[start:stop, None] - 1.0
        gram = base + chosen.T @ (chosen * weights) + 0.3 * np.eye(5)
        expected = np.linalg.solve(gram, chosen.T @ confidence[start:stop])
        np.testing.assert_allclose(solved[row], expected, atol=1e-3)
