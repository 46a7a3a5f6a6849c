"""Cost of the usability layer: up-front option checks, progress bars, labelled tables.

Every driver now validates its options before fitting (``make_options`` with the
driver's own parameters, ``check_display``) and multi-fit work can show a progress bar.
This measures, in one process, against the same calls without the feature:

1. the up-front check alone (``check_fit_options`` for ``cpd``), per call, against one
   small ``cpd`` fit (a 10 x 12 x 14 rank-3 tensor);
2. ``rankest(T, 4, n_starts=2)`` on a 20 x 15 x 10 tensor with ``progress=True`` (the
   text bar, written to an in-memory stream) against ``progress=False``;
3. the same with ``display=1`` (every internal fit's labelled iteration table, printed to
   an in-memory stream) against no display.

Times are the median of 5 repetitions of CPU time (``time.process_time``); ratios below
1.05 mean the feature costs less than the timing noise. Run:
``python benchmarks/bench_usability_overhead.py``; the table is also written to
``benchmarks/results/bench_usability_overhead.txt``.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from sdf.algebra import cpd_to_tensor  # noqa: E402
from sdf.errors import SdfWarning  # noqa: E402
from sdf.models import cpd, rankest  # noqa: E402
from sdf.models._common import check_fit_options  # noqa: E402
from sdf.models.rank import RankCriteria  # noqa: E402

REPEATS = 5


def _cpu(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def _planted(shape: tuple[int, ...], rank: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    T = cpd_to_tensor([rng.standard_normal((n, rank)) for n in shape])
    return T + 0.01 * np.linalg.norm(T) / np.sqrt(T.size) * rng.standard_normal(shape)


def main() -> None:
    warnings.simplefilter("ignore", SdfWarning)
    rows = []
    small = _planted((10, 12, 14), 3, 0)
    fit = _cpu(lambda: cpd(small, 3, seed=0))
    check = _cpu(lambda: [check_fit_options(cpd, {"max_iter": 50}) for _ in range(100)]) / 100
    rows.append(("option check per cpd call", fit, fit + check, (fit + check) / fit))

    T = _planted((20, 15, 10), 3, 1)
    crit = RankCriteria(stability_repeats=0)

    def scan(**kw):
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            rankest(T, 4, n_starts=2, seed=0, criteria=crit, **kw)

    sys.modules["tqdm.auto"] = None  # type: ignore[assignment]  # the text bar
    base = _cpu(lambda: scan())
    bar = _cpu(lambda: scan(progress=True))
    table = _cpu(lambda: scan(display=1))
    rows.append(("rankest progress=True (text bar)", base, bar, bar / base))
    rows.append(("rankest display=1 (labelled tables)", base, table, table / base))

    lines = [f"{'feature':40} {'without [s]':>12} {'with [s]':>10} {'ratio':>7}"]
    lines += [f"{name:40} {a:12.4f} {b:10.4f} {r:7.3f}" for name, a, b, r in rows]
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).resolve().parent / "results" / "bench_usability_overhead.txt"
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
