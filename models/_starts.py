"""Best of several starts: run a driver from ``n_starts`` seeded starts, keep the best.

Every driver with ``n_starts > 1`` calls :func:`best_of_starts` with a function running
one start (the first with the ``init`` asked for, the others random), each drawing from
the same seeded generator in turn. The fit with the lowest relative error is returned
with every start listed in its ``starts``; the warnings of the starts are held back and
those of the returned fit issued.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from sdf.errors import SdfWarning

from sdf.models._result import StartRecord

__all__ = ["best_of_starts"]

#: A driver's result: a Decomposition or a Parafac2Decomposition (both carry ``starts``).
Fitted = TypeVar("Fitted")


def best_of_starts(run: Callable[[int, np.random.Generator], Fitted], n_starts: int,
                   rng: np.random.Generator) -> Fitted:
    """Run ``run(k, rng)`` for ``k = 0 .. n_starts - 1``; the one of lowest ``relerr``.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models import cpd
    >>> rng = np.random.default_rng(0)
    >>> T = np.einsum("ir,jr,kr->ijk", *(rng.standard_normal((n, 2)) for n in (5, 4, 3)))
    >>> dec = best_of_starts(lambda k, r: cpd(T, 2, seed=r), 3, np.random.default_rng(1))
    >>> len(dec.starts)
    3
    """
    records: list[StartRecord] = []
    best = None
    for k in range(n_starts):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SdfWarning)
            fitted = run(k, rng)
        seconds = time.perf_counter() - t0
        stages = getattr(fitted, "stages", [])
        how = next((s.detail for s in stages if s.name == "init"), "given")
        records.append(StartRecord(index=k, init=how, relerr=float(fitted.relerr),  # type: ignore[attr-defined]
                                   iterations=int(sum(s.iterations for s in stages)),
                                   time=seconds, stop=fitted.result.stop))  # type: ignore[attr-defined]
        if best is None or fitted.relerr < best.relerr:  # type: ignore[attr-defined]
            best = fitted
    assert best is not None
    best.starts = records  # type: ignore[attr-defined]
    for message in best.result.warnings:  # type: ignore[attr-defined]
        warnings.warn(message, SdfWarning, stacklevel=3)
    return best
