"""glibc keeps freed memory for the next arrays once sdf computes (sdf._heap)."""

from __future__ import annotations

import io
import os
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sdf
import sdf._heap as heap

glibc_only = pytest.mark.skipif(platform.system() != "Linux"
                                or platform.libc_ver()[0] != "glibc",
                                reason="glibc's malloc only")

# A fresh process frees one 12 MB array (glibc's thresholds rise to 12 MB and 24 MB),
# then allocates and frees three such arrays 20 times: each time the freed 36 MB at the
# top of the heap exceed the trim threshold and go back to the kernel, and the next
# arrays fault their pages in again. Prints the page faults of the loop.
_ARRAYS = textwrap.dedent("""
    import resource
    import numpy as np
    from sdf.models import cpd
    if {fit}:
        cpd(np.random.default_rng(0).standard_normal((4, 5, 6)), 2, seed=0)
    n = 12 * 2 ** 20 // 8
    np.ones(n)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        arrays = [np.ones(n) for _ in range(3)]
        del arrays
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _loop_faults(fit: bool, env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", _ARRAYS.format(fit=fit)], env=env,
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@glibc_only
def test_after_a_fit_freed_arrays_are_reused_without_page_faults() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SDF_KEEP_MALLOC"}
    untouched = _loop_faults(False, env)
    after_fit = _loop_faults(True, env)
    # 20 x 36 MB of fresh pages: 20,000-30,000 faults here (4 kB pages and the huge pages
    # numpy asks for); kept: about 1,000
    assert untouched > 10_000
    assert after_fit < untouched / 10
    # the opt-out leaves glibc's own behaviour
    assert _loop_faults(True, {**env, "SDF_KEEP_MALLOC": "1"}) > 10_000


def test_opt_out_and_other_c_libraries_leave_malloc_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    class FakeLibc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    looked: list[bool] = []

    def find(libc: FakeLibc | None) -> FakeLibc | None:
        looked.append(True)
        return libc

    monkeypatch.setattr(heap, "_set", False)
    monkeypatch.setattr(heap, "_looked", False)
    monkeypatch.setattr(heap, "_glibc", lambda: find(FakeLibc()))
    monkeypatch.setenv("SDF_KEEP_MALLOC", "1")
    assert heap.keep_freed_memory() is False and calls == [] and looked == []
    # another C library: looked for once, never called
    monkeypatch.setattr(heap, "_glibc", lambda: find(None))
    monkeypatch.delenv("SDF_KEEP_MALLOC")
    assert heap.keep_freed_memory() is False and heap.keep_freed_memory() is False
    assert calls == [] and len(looked) == 1
    # with glibc: the mmap threshold at 32 MB, the trim threshold at 64 MB, once
    monkeypatch.setattr(heap, "_looked", False)
    monkeypatch.setattr(heap, "_glibc", lambda: find(FakeLibc()))
    assert heap.keep_freed_memory() is True
    assert heap.keep_freed_memory() is True
    assert calls == [(-3, 32 * 2 ** 20), (-1, 64 * 2 ** 20)] and len(looked) == 2


def test_fits_run_the_same_with_the_heap_kept() -> None:
    """The thresholds change where arrays live, never the numbers: the same fit in a
    process that keeps glibc's own behaviour gives the same factors (reused memory is
    not zeroed as fresh pages are: a computation reading an ``np.empty`` array before
    writing it would differ)."""
    X = np.random.default_rng(1).standard_normal((6, 7, 8))
    res = sdf.models.cpd(X, 3, seed=0)
    script = textwrap.dedent("""
        import sys
        import numpy as np
        from sdf.models import cpd
        X = np.random.default_rng(1).standard_normal((6, 7, 8))
        np.save(sys.stdout.buffer, cpd(X, 3, seed=0).factors[0])
    """)
    env = {**os.environ, "SDF_KEEP_MALLOC": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         check=True)
    other = np.load(io.BytesIO(out.stdout))
    np.testing.assert_allclose(res.factors[0], other, rtol=1e-12, atol=1e-12)
