"""Factors: the learned embeddings and biases of a matrix-factorization model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_PREDICT_CHUNK = 1 << 20


@dataclass(frozen=True)
class Factors:
    """A fitted model: prediction(u, i) = global_mean + user_bias[u] + item_bias[i] + p_u . q_i.

    Implicit models leave the biases and global mean at zero: their scores rank items and are
    not ratings.
    """

    user_factors: npt.NDArray[np.float32]
    item_factors: npt.NDArray[np.float32]
    user_bias: npt.NDArray[np.float32]
    item_bias: npt.NDArray[np.float32]
    global_mean: float

    def predict(
        self, user_index: npt.NDArray[np.integer], item_index: npt.NDArray[np.integer]
    ) -> npt.NDArray[np.float64]:
        """Returns the prediction for each (user, item) pair; an index of -1 means unknown.

        Unknown users or items contribute no factor term and no bias, so the prediction falls
        back to the global mean plus whichever bias is known.
        """
        user_index = np.asarray(user_index, dtype=np.int64)
        item_index = np.asarray(item_index, dtype=np.int64)
        result = np.full(user_index.shape[0], self.global_mean, dtype=np.float64)
        for start in range(0, user_index.shape[0], _PREDICT_CHUNK):
            users = user_index[start : start + _PREDICT_CHUNK]
            items = item_index[start : start + _PREDICT_CHUNK]
            known_user, known_item = users >= 0, items >= 0
            both = known_user & known_item
            part = result[start : start + _PREDICT_CHUNK]
            part[known_user] += self.user_bias[users[known_user]]
            part[known_item] += self.item_bias[items[known_item]]
            # float32 products, accumulated per pair: ample for a rating-scale prediction.
            dots = np.einsum(
                "ij,ij->i", self.user_factors[users[both]], self.item_factors[items[both]]
            )
            part[both] += dots
        return result
