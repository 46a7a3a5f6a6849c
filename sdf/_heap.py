"""Freed memory kept for the next arrays while sdf computes (glibc's malloc).

The fits here allocate and free arrays of a few MB to a few tens of MB many times per
second. glibc's malloc gives blocks above its mmap threshold (128 kB at start) fresh pages
from the kernel, and hands the free memory at the top of its heap back to the kernel once
that exceeds its trim threshold; both thresholds rise only when a block above the mmap
threshold is freed, up to 32 MB and 64 MB (64-bit). Until they have risen, arrays of
those sizes come as fresh pages that the kernel maps one by one on first touch. On a
2-core virtual machine that cost about 3 us per 4 kB page: 200 ALS sweeps of a 16x32x7x7
conv's CP at rank 202 took 1.6 s, of which 0.7-0.85 s was kernel time for 260,000-276,000
page faults; with the thresholds at their ceilings, 0.6-0.74 s and 1,500 faults. A
256x256x3x3 conv's data-aware weight SVD had 0.8-2.8 s of kernel time, and 0.5-0.6 s with
the thresholds at their ceilings.

:func:`keep_freed_memory` sets the two thresholds to those ceilings, the state glibc
reaches by itself once a 32 MB block has been freed, once per process, when sdf starts
computing (:func:`sdf._blas.one_blas_pool`). The process then keeps up to 64 MB of freed
memory for its next arrays. Nothing happens with other C libraries (macOS, Windows, musl),
on 32-bit builds, or when the environment variable ``SDF_KEEP_MALLOC`` is set to a
non-empty value other than ``0``.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading

__all__ = ["keep_freed_memory"]

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's ceiling of the dynamic mmap threshold on 64-bit builds (DEFAULT_MMAP_THRESHOLD_MAX);
#: the dynamic trim threshold is twice the mmap threshold
MMAP_CEILING = 32 * 2 ** 20

_lock = threading.Lock()
_set = False
# whether the C library was looked for (reading it off the executable is not free: once)
_looked = False


def _enabled() -> bool:
    return os.environ.get("SDF_KEEP_MALLOC", "") in ("", "0")


def _glibc() -> ctypes.CDLL | None:
    """glibc when it is this process's C library on a 64-bit build, else None."""
    if platform.system() != "Linux" or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds to the ceilings of their dynamic values
    (32 MB and 64 MB), once per process; see the module doc.

    Returns True when the thresholds are set (now or by an earlier call), False where
    nothing was done: another C library, a 32-bit build, or ``SDF_KEEP_MALLOC`` set.

    Examples
    --------
    >>> from sdf._heap import keep_freed_memory
    >>> first = keep_freed_memory()
    >>> keep_freed_memory() == first  # once per process
    True
    """
    global _set, _looked
    with _lock:
        if _set:
            return True
        if not _enabled() or _looked:
            return False
        _looked = True
        libc = _glibc()
        if libc is None:
            return False
        # mallopt returns 1 on success
        _set = (libc.mallopt(_M_MMAP_THRESHOLD, MMAP_CEILING) == 1
                and libc.mallopt(_M_TRIM_THRESHOLD, 2 * MMAP_CEILING) == 1)
        return _set
