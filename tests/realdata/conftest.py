"""Real-data fixtures: the MovieLens files of the data home, skipped with the reason when absent."""

from __future__ import annotations

import pandas as pd
import pytest

from mfrec.training.evaluation import dataset_path, load_movielens


def _frame(name: str) -> pd.DataFrame:
    path = dataset_path(name)
    if not path.is_file():
        pytest.skip(f"{path} is missing: set MFREC_DATA_HOME to the folder holding {name}/")
    return load_movielens(name)


@pytest.fixture(scope="session")
def ml100k() -> pd.DataFrame:
    """MovieLens 100K ratings in file order (a shared frame: tests must not modify it)."""
    return _frame("ml-100k")


@pytest.fixture(scope="session")
def latest_small() -> pd.DataFrame:
    """MovieLens latest-small ratings in file order (shared: tests must not modify it)."""
    return _frame("ml-latest-small")
