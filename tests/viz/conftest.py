"""Fixtures for the figure tests: Agg backend, small fitted results, figures closed."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

import sdf  # noqa: E402

SHAPE = (6, 7, 8)
RANK = 2


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _planted(seed: int = 0, shape=SHAPE, rank=RANK):
    rng = np.random.default_rng(seed)
    factors = [rng.standard_normal((n, rank)) for n in shape]
    return factors, sdf.algebra.cpd_to_tensor(factors)


@pytest.fixture
def planted():
    """``planted(seed, shape, rank)`` -> (factors, their CPD tensor)."""
    return _planted


def labelled(T: np.ndarray) -> xr.DataArray:
    """T with dims sample/emission/excitation; string sample coordinates."""
    I, J, K = T.shape
    return xr.DataArray(T, dims=("sample", "emission", "excitation"), coords={
        "sample": [f"s{i}" for i in range(I)], "emission": np.linspace(300.0, 400.0, J),
        "excitation": np.linspace(250.0, 300.0, K)})


def fit(data, rank=RANK, method="nls"):
    variables = [sdf.Variable.random((n, rank), seed=s, name=k)
                 for s, (k, n) in enumerate(zip("abc", np.shape(data)))]
    return sdf.Model(T=sdf.CPD(data, variables)).fit(method=method, max_iter=60)


@pytest.fixture(scope="session")
def result_xr():
    """A fit to labelled dense data."""
    _, T = _planted(0)
    return fit(labelled(T))


@pytest.fixture(scope="session")
def result_missing():
    """A fit to labelled data with 25% of the entries missing."""
    _, T = _planted(1)
    T = T.copy()
    T[np.random.default_rng(5).random(T.shape) < 0.25] = np.nan
    return fit(labelled(T))
