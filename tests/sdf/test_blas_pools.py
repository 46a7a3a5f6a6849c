"""One multi-threaded BLAS pool during fits (sdf._blas)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import sdf
import sdf._blas as blas
from sdf.models import cpd


class FakePool:
    """A BLAS library's thread pool as threadpoolctl's controllers show it."""

    def __init__(self, threads: int) -> None:
        self.num_threads = threads
        self.history: list[int] = []

    def set_num_threads(self, threads: int) -> None:
        self.history.append(threads)
        self.num_threads = threads


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> list[FakePool]:
    found = [FakePool(4), FakePool(1)]
    monkeypatch.setattr(blas, "_other_pools", lambda: found)
    monkeypatch.delenv("SDF_KEEP_BLAS_THREADS", raising=False)
    return found


def test_other_pools_run_on_one_thread_and_are_restored(pools: list[FakePool]) -> None:
    with blas.one_blas_pool():
        assert [p.num_threads for p in pools] == [1, 1]
    assert [p.num_threads for p in pools] == [4, 1]
    # a pool on one thread already is left alone: no count is ever raised
    assert pools[1].history == []


def test_nested_blocks_set_once_and_restore_at_the_outermost(pools: list[FakePool]) -> None:
    with blas.one_blas_pool():
        with blas.one_blas_pool():
            assert pools[0].num_threads == 1
        assert pools[0].num_threads == 1
    assert pools[0].history == [1, 4]


def test_restored_after_an_error(pools: list[FakePool]) -> None:
    with pytest.raises(ZeroDivisionError):
        with blas.one_blas_pool():
            1 / 0
    assert pools[0].num_threads == 4


def test_threads_share_the_block(pools: list[FakePool]) -> None:
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with blas.one_blas_pool():
            inside.set()
            release.wait(5)

    worker = threading.Thread(target=other)
    worker.start()
    inside.wait(5)
    with blas.one_blas_pool():
        assert pools[0].num_threads == 1
    assert pools[0].num_threads == 1  # the worker is still inside
    release.set()
    worker.join()
    assert pools[0].num_threads == 4


@pytest.mark.parametrize("value, kept", [("1", True), ("0", False), ("", False)])
def test_environment_switch(pools: list[FakePool], monkeypatch: pytest.MonkeyPatch,
                            value: str, kept: bool) -> None:
    monkeypatch.setenv("SDF_KEEP_BLAS_THREADS", value)
    with blas.one_blas_pool():
        assert pools[0].num_threads == (4 if kept else 1)


def test_decorated_entry_points_keep_their_signature_and_run_inside(
        pools: list[FakePool]) -> None:
    assert cpd.__name__ == "cpd" and "rank" in (cpd.__doc__ or "")
    seen: list[int] = []

    def record(info: sdf.IterationInfo) -> None:
        seen.append(pools[0].num_threads)

    rng = np.random.default_rng(0)
    truth = [rng.standard_normal((n, 2)) for n in (4, 5, 6)]
    T = np.einsum("ir,jr,kr->ijk", *truth)
    model = sdf.Model(T=sdf.CPD(T, [sdf.Variable(A + 0.01 * rng.standard_normal(A.shape))
                                    for A in truth]))
    model.fit(callback=record)
    assert seen and set(seen) == {1}
    assert pools[0].num_threads == 4


def test_real_pools_numpy_keeps_its_threads() -> None:
    """With numpy's and scipy's own OpenBLAS loaded (PyPI wheels), scipy's runs on one
    thread inside the block and numpy's keeps its count; with one shared library nothing
    changes."""
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS)

    def counts() -> dict[str, int]:
        return {i["filepath"]: i["num_threads"] for i in threadpool_info()
                if i["user_api"] == "blas"}

    before = counts()
    others = {p.filepath for p in blas._other_pools()}
    with blas.one_blas_pool():
        during = counts()
    assert counts() == before
    for path, threads in before.items():
        assert during[path] == (1 if path in others else threads)
    assert len(others) <= len(before) - 1 or not others


@pytest.mark.parametrize("module, name", [
    ("sdf.fit", "fit_model"), ("sdf.decomp", "lmlra_hooi"), ("sdf.decomp", "mlsvd_rsi"),
    ("sdf.models", "btd"), ("sdf.models", "cmtf"), ("sdf.models", "cpd"),
    ("sdf.models", "cpd_rbs"), ("sdf.models", "fuse"), ("sdf.models", "ll1"),
    ("sdf.models", "lmlra"), ("sdf.models", "parafac2"), ("sdf.models", "tt"),
    ("sdf.models", "tr"), ("sdf.models", "rankest"), ("sdf.models", "mlrankest"),
    ("sdf.models", "stability"), ("sdf.models.compress", "compress_conv"),
    ("sdf.models.compress", "compress_linear"), ("sdf.models.compress", "compress_network"),
    ("sdf.models.compress", "compress_shared"), ("sdf.models.compress", "compress_head"),
    ("sdf.models.compress", "factorize_embedding"),
    ("sdf.models.compress", "tensorize_linear"), ("sdf.models.compress", "refit_network"),
    ("sdf.models.compress", "compress_sklearn_mlp"),
])
def test_entry_points_run_with_one_pool(module: str, name: str) -> None:
    """Every public entry point that fits is wrapped by ``with_one_blas_pool``."""
    import importlib

    entry = getattr(importlib.import_module(module), name)
    assert entry.__code__ is blas.with_one_blas_pool(len).__code__
    assert entry.__wrapped__.__name__ == name
