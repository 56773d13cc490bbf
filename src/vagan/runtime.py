"""Process-wide settings for speed, applied once by the command line (never at import time).

glibc's malloc serves allocations above 32 MB with fresh ``mmap`` pages and returns them on free,
so every full-resolution activation of a 512^2 slice (32 channels x 512^2 x 4 B = 33.5 MB) pays
for zeroing and faulting in new pages. Keeping freed memory in the heap for reuse makes the
eager CPU forward of VAGAN 1.4x faster for about 200 MB more peak memory
(benchmarks/RESULTS.md). Other C libraries (musl, macOS, Windows) are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_applied = False


def reuse_freed_memory() -> bool:
    """Tell glibc malloc to keep freed memory for reuse (no mmap per large tensor); True if applied."""
    global _applied
    if _applied:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 40))
    except (OSError, AttributeError):
        return False
    return _applied
