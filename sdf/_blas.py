"""One multi-threaded BLAS pool while sdf computes.

numpy and scipy wheels from PyPI each bundle their own OpenBLAS, each with its own thread
pool. After a call, OpenBLAS keeps its worker threads spinning for a while; when the other
library's call comes next, its threads and the spinning ones share the cores, and both
run several times slower. The fits here alternate numpy products with scipy
factorizations and solves many times per second, so on a 2-core machine the default
configuration (two threads in each pool) took 1.6-2.2x the wall time of the same fits
with scipy's pool on one thread (data-aware conv compression: 14.6 s against 6.9 s), and
1.5x that of everything on one thread.

:func:`one_blas_pool` keeps numpy's pool as it is and runs every other BLAS library on one
thread while a fit runs, restoring the thread counts afterwards. It never raises a thread
count, does nothing when there is one pool (conda's shared OpenBLAS or MKL) or when numpy's
cannot be told apart, and is off when the environment variable ``SDF_KEEP_BLAS_THREADS``
is set to a non-empty value other than ``0``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
from threadpoolctl import ThreadpoolController, threadpool_limits

from sdf._heap import keep_freed_memory

__all__ = ["one_blas_pool", "one_blas_thread", "with_one_blas_pool"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_lock = threading.Lock()
_depth = 0
_restore: list[tuple[Any, int]] = []
# the controllers of the BLAS pools other than numpy's, and the number of modules loaded
# when they were found: a BLAS library arrives with a module import, so they are looked
# up again only after one
_found: tuple[int, list[Any]] | None = None


def _numpy_dirs() -> tuple[Path, ...]:
    """Where numpy's own BLAS can live: its package (macOS wheels: ``.dylibs``) and the
    ``numpy.libs`` folder beside it (Linux and Windows wheels)."""
    here = Path(np.__file__).resolve().parent
    return here, here.parent / "numpy.libs"


def _other_pools() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries other than numpy's, when numpy's
    is one of two or more loaded BLAS libraries; else an empty list."""
    global _found
    if _found is None or _found[0] != len(sys.modules):
        _found = (len(sys.modules), _find_other_pools())
    return _found[1]


def _find_other_pools() -> list[Any]:
    blas = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
    if len(blas) < 2:
        return []
    dirs = _numpy_dirs()
    numpy_own = [c for c in blas
                 if any(Path(c.filepath).resolve().is_relative_to(d) for d in dirs)]
    if len(numpy_own) != 1:
        return []
    return [c for c in blas if c is not numpy_own[0]]


def _enabled() -> bool:
    return os.environ.get("SDF_KEEP_BLAS_THREADS", "") in ("", "0")


@contextlib.contextmanager
def one_blas_pool() -> Iterator[None]:
    """Run the block with every BLAS library but numpy's on one thread (see module doc).

    Re-entrant and shared between threads: the outermost block sets the thread counts,
    the last one to leave restores them. The first block in a process also has glibc keep
    freed memory for the next arrays (:func:`sdf._heap.keep_freed_memory`).

    Examples
    --------
    >>> import numpy as np
    >>> from sdf._blas import one_blas_pool
    >>> with one_blas_pool():
    ...     float(np.trace(np.eye(3) @ np.eye(3)))
    3.0
    """
    global _depth
    keep_freed_memory()
    with _lock:
        if _depth == 0 and _enabled():
            for pool in _other_pools():
                threads = pool.num_threads
                if threads > 1:
                    pool.set_num_threads(1)
                    _restore.append((pool, threads))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for pool, threads in _restore:
                    pool.set_num_threads(threads)
                _restore.clear()


def with_one_blas_pool(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate ``func`` to run inside :func:`one_blas_pool`.

    Examples
    --------
    >>> from sdf._blas import with_one_blas_pool
    >>> @with_one_blas_pool
    ... def twice(x: float) -> float:
    ...     return 2 * x
    >>> twice(1.5)
    3.0
    """

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with one_blas_pool():
            return func(*args, **kwargs)

    return wrapper


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """Every BLAS library on one thread while the block runs, restored afterwards.

    For work made of many small products and factorizations (a few hundred wide at
    most), where BLAS threads contending with other threads or pools ran several times
    slower: the Levenberg-Marquardt runs of small conv layers (a 16x8x3x3 layer: 4.8 s
    wall with two threads on a loaded machine, 0.7 s with one) and chunk tasks under
    dask's own threads.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf._blas import one_blas_thread
    >>> with one_blas_thread():
    ...     float(np.linalg.norm(np.eye(4)))
    2.0
    """
    return threadpool_limits(1)
