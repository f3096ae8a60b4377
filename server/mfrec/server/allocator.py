"""glibc malloc settings for long-running server processes (mallopt through ctypes)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks of this size and more are mapped on their own and unmapped when freed. glibc raises
# this threshold each time such a block is freed (up to 32 MiB), after which the catalog-sized
# temporaries of loading a model stay in the heap for good; a fixed value stops that.
MMAP_THRESHOLD_BYTES = 1 << 20
# Free memory at the top of the heap beyond this is given back to the system.
TRIM_THRESHOLD_BYTES = 8 << 20


def tune_malloc() -> bool:
    """Applies the settings above; returns False (and changes nothing) off glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    if not applied:
        log.debug("mallopt refused the server's malloc settings")
    return applied
