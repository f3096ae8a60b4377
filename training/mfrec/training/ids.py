"""Id index: opaque string ids stored as one UTF-8 blob, looked up by a sorted hash array.

A Python dict of a million ids costs over 100 MB in every process that loads it; these four
flat arrays memory-map and are shared between processes instead. Lookup hashes the id
(64-bit BLAKE2b), binary-searches the sorted hashes, and confirms the bytes, so hash
collisions only cost an extra comparison.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

NOT_FOUND = -1


def hash_id(encoded: bytes) -> int:
    """Returns the 64-bit hash that orders an encoded id in the index."""
    return int.from_bytes(hashlib.blake2b(encoded, digest_size=8).digest(), "little")


@dataclass(frozen=True)
class IdIndex:
    """Maps between string ids and dense row indices 0..n-1.

    Attributes:
        blob: every id's UTF-8 bytes, concatenated in index order (uint8).
        offsets: id i is blob[offsets[i]:offsets[i + 1]] (int64, length n + 1).
        hashes: the ids' hashes in ascending order (uint64).
        order: order[j] is the index of the id whose hash is hashes[j] (int64).
    """

    blob: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.int64]
    hashes: npt.NDArray[np.uint64]
    order: npt.NDArray[np.int64]

    @classmethod
    def build(cls, ids: Sequence[str]) -> IdIndex:
        """Indexes ids; their position in the sequence becomes their index."""
        encoded = [value.encode("utf-8") for value in ids]
        lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        blob = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        raw = np.fromiter((hash_id(e) for e in encoded), dtype=np.uint64, count=len(encoded))
        order = np.argsort(raw, kind="stable").astype(np.int64)
        return cls(blob=blob, offsets=offsets, hashes=raw[order], order=order)

    def __len__(self) -> int:
        return int(self.offsets.shape[0]) - 1

    def _bytes_at(self, index: int) -> bytes:
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        return self.blob[start:stop].tobytes()

    def id_at(self, index: int) -> str:
        """Returns the id stored at one index."""
        return self._bytes_at(index).decode("utf-8")

    def ids_at(self, indices: Iterable[int]) -> list[str]:
        """Returns the ids stored at several indices, in the same order."""
        return [self.id_at(int(i)) for i in indices]

    def index_of(self, value: str) -> int:
        """Returns the index of an id, or NOT_FOUND (-1) when it is not in the index."""
        encoded = value.encode("utf-8", errors="surrogatepass")
        key = np.uint64(hash_id(encoded))
        position = int(np.searchsorted(self.hashes, key, side="left"))
        while position < self.hashes.shape[0] and self.hashes[position] == key:
            candidate = int(self.order[position])
            if self._bytes_at(candidate) == encoded:
                return candidate
            position += 1
        return NOT_FOUND

    def indices_of(self, values: Iterable[str]) -> npt.NDArray[np.int64]:
        """Returns the index of each id (NOT_FOUND for unknown ones), in the same order."""
        return np.array([self.index_of(v) for v in values], dtype=np.int64)

    def all_ids(self) -> list[str]:
        """Returns every id in index order."""
        return self.ids_at(range(len(self)))

    def validate(self) -> None:
        """Raises ValueError unless the four arrays describe a consistent index."""
        n = len(self)
        if self.offsets.ndim != 1 or n < 0:
            raise ValueError("id offsets must be a 1-D array of length n + 1")
        if self.offsets[0] != 0 or int(self.offsets[-1]) != self.blob.shape[0]:
            raise ValueError("id offsets do not span the id blob")
        if n and np.any(np.diff(self.offsets) < 0):
            raise ValueError("id offsets are not ascending")
        if self.hashes.shape != (n,) or self.order.shape != (n,):
            raise ValueError("id hash arrays do not match the number of ids")
        if n and np.any(self.hashes[1:] < self.hashes[:-1]):
            raise ValueError("id hashes are not sorted")
        if n and not np.array_equal(np.sort(self.order), np.arange(n)):
            raise ValueError("id order is not a permutation")
