"""Synthetic ratings: a known low-rank model with power-law item popularity, for tests and demos.

Which pairs are rated follows a Zipf-like law (item rank r is drawn with weight
``(r + 1) ** -popularity_skew``, users with weight ``(r + 1) ** -0.5``), and the value is
``mean + user bias + item bias + user_factors . item_factors + noise``, clipped to the scale,
so a matrix-factorization model can learn it. Everything is vectorized and seeded.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

USER_ACTIVITY_SKEW = 0.5
_CHUNK_ROWS = 1 << 20
_MAX_SKEWED_ROUNDS = 8
_MAX_ROUNDS = 64
# Shares of the rating scale's span: mean position, signal, biases and noise.
_MEAN_SHARE, _SIGNAL_SHARE, _BIAS_SHARE, _NOISE_SHARE = 0.6, 0.2, 0.1, 0.1
_FIRST_TIMESTAMP = 1_500_000_000
_TIMESTAMP_SPAN = 3 * 365 * 24 * 3600

Keys = npt.NDArray[np.int64]


def synthetic_ratings(
    n_users: int,
    n_items: int,
    n_ratings: int,
    *,
    factors: int = 16,
    seed: int = 42,
    rating_scale: tuple[float, float] = (1.0, 5.0),
    popularity_skew: float = 1.0,
    rating_step: float | None = 1.0,
) -> pd.DataFrame:
    """Returns a ratings frame (the columns of load_ratings) drawn from a low-rank model.

    Ids are "u0".."u{n_users-1}" and "i0".."i{n_items-1}"; (user, item) pairs are unique and
    rows are sorted by user, then item. When n_ratings >= max(n_users, n_items), every user and
    every item has at least one rating. The same arguments always give the same frame.

    Args:
        n_users: number of users, at least 1.
        n_items: number of items, at least 1.
        n_ratings: number of ratings, at most n_users * n_items.
        factors: rank of the hidden model.
        seed: random seed.
        rating_scale: (min, max) the ratings are clipped to.
        popularity_skew: exponent of the item popularity law; 0 is uniform.
        rating_step: ratings are rounded to min + k * step; None keeps them continuous.
    """
    _check_arguments(n_users, n_items, n_ratings, factors, rating_scale, popularity_skew)
    if rating_step is not None and not rating_step > 0:
        raise ValueError(f"rating_step must be positive or None, not {rating_step}")
    rng = np.random.default_rng(seed)
    keys = _sample_pairs(rng, n_users, n_items, n_ratings, popularity_skew)
    users, items = np.divmod(keys, n_items)
    values = _rating_values(rng, users, items, n_users, n_items, factors, rating_scale)
    if rating_step is not None:
        low, high = rating_scale
        values = np.clip(low + np.round((values - low) / rating_step) * rating_step, low, high)
    timestamps = rng.integers(0, _TIMESTAMP_SPAN, size=keys.size, dtype=np.int64)
    timestamps += _FIRST_TIMESTAMP
    return pd.DataFrame(
        {
            "user_id": _ids("u", n_users).take(users),
            "item_id": _ids("i", n_items).take(items),
            "rating": values,
            "timestamp": timestamps,
        },
        copy=False,
    )


def synthetic_factor_model(
    n_users: int, n_items: int, factors: int = 64, seed: int = 0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Returns (user_factors, item_factors, item_bias) float32 arrays of a trained-looking model.

    For serving benchmarks of large catalogs without training: item vectors have lognormal
    norms (a few items score high for everyone, as popular items do in a fitted model), and
    the item bias grows with the norm.
    """
    if n_users < 1 or n_items < 1 or factors < 1:
        raise ValueError("n_users, n_items and factors must be at least 1")
    rng = np.random.default_rng(seed)
    scale = np.float32(1.0 / np.sqrt(factors))
    user_factors = rng.standard_normal((n_users, factors), dtype=np.float32)
    user_factors *= scale
    item_factors = rng.standard_normal((n_items, factors), dtype=np.float32)
    norms = rng.lognormal(0.0, 0.5, size=n_items).astype(np.float32)
    item_factors *= (norms * scale)[:, None]
    item_bias = (0.5 * np.log(norms) + 0.1 * rng.standard_normal(n_items)).astype(np.float32)
    return user_factors, item_factors, item_bias


def _check_arguments(
    n_users: int,
    n_items: int,
    n_ratings: int,
    factors: int,
    rating_scale: tuple[float, float],
    popularity_skew: float,
) -> None:
    if n_users < 1 or n_items < 1:
        raise ValueError("n_users and n_items must be at least 1")
    if not 0 <= n_ratings <= n_users * n_items:
        raise ValueError(f"n_ratings must be between 0 and n_users * n_items, not {n_ratings}")
    if factors < 1:
        raise ValueError("factors must be at least 1")
    if not rating_scale[0] < rating_scale[1]:
        raise ValueError(f"rating_scale must be (min, max) with min < max, not {rating_scale}")
    if not popularity_skew >= 0:
        raise ValueError(f"popularity_skew must be at least 0, not {popularity_skew}")


# Which pairs are rated.


def _sample_pairs(
    rng: np.random.Generator, n_users: int, n_items: int, n_ratings: int, skew: float
) -> Keys:
    """Returns n_ratings distinct pair keys (user * n_items + item), sorted."""
    user_order = rng.permutation(n_users)
    item_order = rng.permutation(n_items)
    # A cover: pairs (k mod n_users, k mod n_items) are distinct for k < max(n_users, n_items).
    cover = np.arange(min(n_ratings, max(n_users, n_items)), dtype=np.int64)
    keys = np.sort(user_order[cover % n_users] * n_items + item_order[cover % n_items])
    if n_users * n_items <= 4 * n_ratings:
        return _sample_dense(rng, keys, user_order, item_order, n_ratings, skew)
    return _sample_sparse(rng, keys, user_order, item_order, n_ratings, skew)


def _power_law_ranks(
    rng: np.random.Generator, size: int, count: int, skew: float
) -> npt.NDArray[np.int64]:
    """Draws ranks 0..count-1 where rank r has the mass of (x + 1) ** -skew over [r, r + 1)."""
    uniform = rng.random(size)
    with np.errstate(over="ignore"):
        if abs(skew - 1.0) < 1e-9:
            ranks = np.exp(uniform * np.log(count + 1.0)) - 1.0
        else:
            top = (count + 1.0) ** (1.0 - skew)
            ranks = (1.0 + uniform * (top - 1.0)) ** (1.0 / (1.0 - skew)) - 1.0
    ranks_int: npt.NDArray[np.int64] = np.minimum(ranks, count - 1.0).astype(np.int64)
    return ranks_int


def _log_rank_mass(count: int, skew: float) -> npt.NDArray[np.float64]:
    """Log of each rank's mass under the law of _power_law_ranks (unnormalized)."""
    edges = np.arange(count + 1, dtype=np.float64) + 1.0
    if abs(skew - 1.0) < 1e-9:
        cumulative = np.log(edges)
    else:
        cumulative = edges ** (1.0 - skew) / (1.0 - skew)
    with np.errstate(divide="ignore"):
        # Floored so that even a vanishing mass keeps a finite race time.
        return np.maximum(np.log(np.abs(np.diff(cumulative))), -600.0)


def _sample_sparse(
    rng: np.random.Generator,
    keys: Keys,
    user_order: npt.NDArray[np.int64],
    item_order: npt.NDArray[np.int64],
    n_ratings: int,
    skew: float,
) -> Keys:
    """Draws pairs from the popularity law and drops repeats until n_ratings are distinct."""
    n_users, n_items = user_order.size, item_order.size
    acceptance = 1.0
    for round_number in range(_MAX_ROUNDS):
        need = n_ratings - keys.size
        if need == 0:
            return keys
        size = int(min(need / acceptance * 1.1 + 64, 4 * n_ratings + 64))
        if round_number < _MAX_SKEWED_ROUNDS:
            users = user_order[_power_law_ranks(rng, size, n_users, USER_ACTIVITY_SKEW)]
            items = item_order[_power_law_ranks(rng, size, n_items, skew)]
            drawn = users * n_items + items
        else:
            # Popular pairs are used up; finish uniformly (at most a quarter of pairs is taken).
            drawn = rng.integers(0, n_users * n_items, size=size, dtype=np.int64)
        fresh = _without(_sorted_unique(drawn), keys)
        acceptance = max(fresh.size / size, 0.01)
        if fresh.size > need:
            dropped = rng.choice(fresh.size, size=fresh.size - need, replace=False)
            fresh = np.delete(fresh, dropped)
        keys = np.sort(np.concatenate((keys, fresh)), kind="stable")  # merges two sorted runs
    raise RuntimeError("could not draw enough distinct rating pairs")  # pragma: no cover


def _sorted_unique(values: Keys) -> Keys:
    # Sorting beats np.unique here: numpy 2.3+ dedupes by hashing, several times slower.
    ordered = np.sort(values)
    unique: Keys = ordered[np.append(True, ordered[1:] != ordered[:-1])]
    return unique


def _without(fresh: Keys, taken: Keys) -> Keys:
    """Returns the sorted fresh keys not in the sorted taken keys, searching the smaller."""
    if fresh.size == 0 or taken.size == 0:
        return fresh
    if taken.size < fresh.size:
        positions = np.minimum(np.searchsorted(fresh, taken), fresh.size - 1)
        return np.delete(fresh, positions[fresh[positions] == taken])
    positions = np.minimum(np.searchsorted(taken, fresh), taken.size - 1)
    kept: Keys = fresh[taken[positions] != fresh]
    return kept


def _sample_dense(
    rng: np.random.Generator,
    keys: Keys,
    user_order: npt.NDArray[np.int64],
    item_order: npt.NDArray[np.int64],
    n_ratings: int,
    skew: float,
) -> Keys:
    """Weighted sampling without replacement over every pair, by exponential races."""
    n_users, n_items = user_order.size, item_order.size
    need = n_ratings - keys.size
    if need == 0:
        return keys
    user_mass = np.empty(n_users)
    user_mass[user_order] = _log_rank_mass(n_users, USER_ACTIVITY_SKEW)
    item_mass = np.empty(n_items)
    item_mass[item_order] = _log_rank_mass(n_items, skew)
    # The pair with the smallest log(E) - log(weight), E ~ Exp(1), wins the race.
    race = np.log(rng.exponential(size=n_users * n_items))
    race -= (user_mass[:, None] + item_mass[None, :]).ravel()
    race[keys] = np.inf
    chosen = np.argpartition(race, need - 1)[:need].astype(np.int64)
    return np.sort(np.concatenate((keys, chosen)))


# Rating values and ids.


def _rating_values(
    rng: np.random.Generator,
    users: Keys,
    items: Keys,
    n_users: int,
    n_items: int,
    factors: int,
    rating_scale: tuple[float, float],
) -> npt.NDArray[np.float64]:
    low, high = rating_scale
    span = high - low
    # Var(u . v) = factors * s^4 for independent N(0, s^2) entries; aim for the signal share.
    s = np.sqrt(_SIGNAL_SHARE * span / np.sqrt(factors))
    user_factors = (rng.standard_normal((n_users, factors)) * s).astype(np.float32)
    item_factors = (rng.standard_normal((n_items, factors)) * s).astype(np.float32)
    user_bias = rng.normal(0.0, _BIAS_SHARE * span, n_users)
    item_bias = rng.normal(0.0, _BIAS_SHARE * span, n_items)
    values = np.empty(users.size, dtype=np.float64)
    for start in range(0, users.size, _CHUNK_ROWS):
        u, i = users[start : start + _CHUNK_ROWS], items[start : start + _CHUNK_ROWS]
        dots = np.einsum("ij,ij->i", user_factors[u], item_factors[i])
        noise = rng.standard_normal(u.size, dtype=np.float32) * np.float32(_NOISE_SHARE * span)
        values[start : start + u.size] = user_bias[u] + item_bias[i] + (dots + noise)
    values += low + _MEAN_SHARE * span
    return np.clip(values, low, high)


def _ids(prefix: str, count: int) -> pd.api.extensions.ExtensionArray:
    return pd.array([f"{prefix}{index}" for index in range(count)], dtype="str")
