"""Interactions: ratings with ids mapped to dense user and item indices, as sparse matrices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp


@dataclass(frozen=True)
class Interactions:
    """Ratings indexed for training.

    Attributes:
        user_ids: the distinct user ids; a user's index is its position here.
        item_ids: the distinct item ids; an item's index is its position here.
        user_index: the row's user index for every rating (int32).
        item_index: the row's item index for every rating (int32).
        values: the rating values (float32).
    """

    user_ids: list[str]
    item_ids: list[str]
    user_index: npt.NDArray[np.int32]
    item_index: npt.NDArray[np.int32]
    values: npt.NDArray[np.float32]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_ratings(self) -> int:
        return int(self.values.shape[0])

    def user_item_matrix(self) -> sp.csr_matrix:
        """Returns the users x items CSR matrix of values, columns sorted within rows."""
        return _csr(self.user_index, self.item_index, self.values, self.n_users, self.n_items)

    def item_user_matrix(self) -> sp.csr_matrix:
        """Returns the items x users CSR matrix of values."""
        return _csr(self.item_index, self.user_index, self.values, self.n_items, self.n_users)

    def subset(self, rows: npt.NDArray[np.int64]) -> Interactions:
        """Returns the chosen rating rows, keeping the full id vocabularies."""
        return Interactions(
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            user_index=self.user_index[rows],
            item_index=self.item_index[rows],
            values=self.values[rows],
        )


def _csr(
    rows: npt.NDArray[np.int32],
    cols: npt.NDArray[np.int32],
    values: npt.NDArray[np.float32],
    n_rows: int,
    n_cols: int,
) -> sp.csr_matrix:
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(n_rows, n_cols), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def index_ratings(frame: pd.DataFrame) -> Interactions:
    """Maps a ratings frame (user_id, item_id, rating columns) to dense indices.

    Ids are indexed in order of first appearance, so the same file always gives the same
    indices. The frame must already be free of duplicate (user, item) pairs.
    """
    user_codes, user_uniques = pd.factorize(frame["user_id"], sort=False)
    item_codes, item_uniques = pd.factorize(frame["item_id"], sort=False)
    return Interactions(
        user_ids=[str(u) for u in user_uniques],
        item_ids=[str(i) for i in item_uniques],
        user_index=user_codes.astype(np.int32),
        item_index=item_codes.astype(np.int32),
        values=frame["rating"].to_numpy(dtype=np.float32),
    )
