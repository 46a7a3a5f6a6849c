import numpy as np
import pytest

import sdf.models.compress._formats as fmt
from sdf.errors import DataError, ModelError
from sdf.models.compress import CompressOptions, factorize_embedding


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """These problems are small: one BLAS thread is fastest and does not fight other jobs."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        yield


@pytest.mark.parametrize("format, rank", [("tt", 5), ("cp", 6)])
def test_lookup_equals_dense_rows(format, rank, rng):
    E = rng.standard_normal((1000, 16))
    emb = factorize_embedding(E, format, rank=rank)
    ids = rng.integers(0, 1000, size=(3, 7))
    rows = emb.lookup(ids)
    assert rows.shape == (3, 7, 16)
    np.testing.assert_allclose(rows, emb.dense()[ids], atol=1e-10)


@pytest.mark.parametrize("format", ["tt", "cp"])
def test_lookup_never_forms_the_table(format, rng, monkeypatch):
    emb = factorize_embedding(rng.standard_normal((125, 8)), format, rank=3)
    ids = np.arange(125)
    expected = emb.lookup(ids)

    def refuse(*args):
        raise AssertionError("the look-up formed the table")

    for name in ("tt_dense", "cp_dense", "unpaired_matrix", "paired_tensor"):
        monkeypatch.setattr(fmt, name, refuse)
    np.testing.assert_array_equal(emb.lookup(ids), expected)


def test_mixed_radix_digits_first_most_significant():
    np.testing.assert_array_equal(fmt.digits(np.array([0, 7, 23]), (2, 3, 4)),
                                  [[0, 0, 0], [0, 1, 3], [1, 2, 3]])


def test_tt_exact_at_full_rank_with_padded_vocab(rng):
    E = rng.standard_normal((997, 12))  # prime vocabulary: padded
    emb = factorize_embedding(E, "tt", rank=10**4, sweeps=0)
    assert np.prod(emb.vocab_sizes) > 997 and emb.weight_error < 1e-12
    np.testing.assert_allclose(emb.lookup(np.array([0, 500, 996])), E[[0, 500, 996]],
                               atol=1e-10)


def test_param_counts_exact_and_ratio_respected(rng):
    E = rng.standard_normal((1000, 16))
    emb = factorize_embedding(E, "tt", ratio=0.1)
    r = emb.rank
    v, e = emb.vocab_sizes, emb.dim_sizes
    assert emb.n_params == sum(r[k] * e[k] * v[k] * r[k + 1] for k in range(3))
    assert emb.n_params <= 0.1 * 16000 and emb.params_before == 16000
    cp = factorize_embedding(E, "cp", ratio=0.1, sweeps=0, options=CompressOptions(max_iter=5))
    assert cp.n_params == cp.rank * sum(a * b for a, b in zip(cp.vocab_sizes, cp.dim_sizes))
    assert cp.n_params <= 1600 < (cp.rank + 1) * sum(a * b for a, b in
                                                     zip(cp.vocab_sizes, cp.dim_sizes))


@pytest.mark.parametrize("format", ["tt", "cp"])
def test_frequency_weighting_lowers_error_on_used_rows(format, rng):
    E = rng.standard_normal((1000, 16))
    ids = (rng.zipf(1.2, 20000) - 1) % 1000
    opts = CompressOptions(max_iter=50)
    plain = factorize_embedding(E, format, ratio=0.15, options=opts)
    aware = factorize_embedding(E, format, ratio=0.15, ids=ids, options=opts)
    counts = np.bincount(ids, minlength=1000)
    err = lambda m: (np.sqrt(counts @ np.sum((m.dense() - E) ** 2, 1)  # noqa: E731
                             / (counts @ np.sum(E ** 2, 1))))
    assert aware.weighted_error == pytest.approx(err(aware), rel=1e-10)
    assert aware.weighted_error < 0.8 * err(plain)


@pytest.mark.parametrize("format", ["tt", "cp"])
def test_balance_one_holds_unseen_rows_near_their_values(format, rng):
    """Rows 32-63 never occur: the counts say nothing of them, the weight term's least
    share keeps them closer than the zero rows the counted term alone gave (relative
    error 1.0), at the same count-weighted error."""
    E = rng.standard_normal((64, 16))
    ids = rng.integers(0, 32, 500)
    res = factorize_embedding(E, format, ratio=0.3, ids=ids, balance=1.0)
    unseen = np.linalg.norm(res.dense()[32:] - E[32:]) / np.linalg.norm(E[32:])
    assert unseen < 0.99
    near = factorize_embedding(E, format, ratio=0.3, ids=ids, balance=0.999)
    assert res.weighted_error <= near.weighted_error + 1e-9


def test_bad_ids_and_arguments(rng):
    E = rng.standard_normal((100, 8))
    with pytest.raises(DataError, match=r"ids must lie in \[0, 100\)"):
        factorize_embedding(E, rank=2, ids=np.array([0, 100]))
    with pytest.raises(DataError, match="ids must be integers"):
        factorize_embedding(E, rank=2, ids=np.array([0.5]))
    with pytest.raises(ModelError, match="format must be 'tt' or 'cp'"):
        factorize_embedding(E, "tucker", rank=2)  # type: ignore[arg-type]
    emb = factorize_embedding(E, rank=2)
    with pytest.raises(DataError, match=r"lookup: ids must lie in \[0, 100\)"):
        emb.lookup(np.array([-1]))
    assert "FactorizedEmbedding('embedding', tt" in repr(emb)
