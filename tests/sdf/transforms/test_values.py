"""Values of transforms against textbook formulas and library functions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
from scipy.special import expit

from sdf import transforms as tf


def test_toeplitz_matches_scipy(rng):
    z = rng.standard_normal(4 + 3 - 1)
    expected = scipy.linalg.toeplitz(z[:4], np.r_[z[0], z[4:]])
    np.testing.assert_array_equal(tf.Toeplitz((4, 3)).value(z), expected)


def test_hankel_matches_scipy(rng):
    z = rng.standard_normal(3 + 5 - 1)
    np.testing.assert_array_equal(tf.Hankel((3, 5)).value(z), scipy.linalg.hankel(z[:3], z[2:]))


def test_vander_matches_numpy(rng):
    z = rng.standard_normal(5)
    np.testing.assert_allclose(tf.Vander(4).value(z), np.vander(z, 4, increasing=True))


def test_cauchy_entries(rng):
    a, b = rng.uniform(0, 1, 3), rng.uniform(2, 3, 2)
    x = tf.Cauchy((3, 2)).value(np.r_[a, b])
    np.testing.assert_allclose(x, 1.0 / np.subtract.outer(a, b))


@pytest.mark.parametrize(
    ("tr", "mask"),
    [
        (tf.Band((4, 5), lower=1, upper=2), np.triu(np.tril(np.ones((4, 5)), 2), -1)),
        (tf.Diag(3), np.eye(3)),
        (tf.Tridiag(4), np.triu(np.tril(np.ones((4, 4)), 1), -1)),
        (tf.Tril((3, 4), k=1), np.tril(np.ones((3, 4)), 1)),
        (tf.Triu(4, k=-1), np.triu(np.ones((4, 4)), -1)),
    ],
    ids=lambda p: p.name if isinstance(p, tf.Transform) else "",
)
def test_patterns_place_free_entries_row_by_row(tr, mask):
    mask = mask.astype(bool)
    z = np.arange(1.0, mask.sum() + 1)
    expected = np.zeros(mask.shape)
    expected[mask] = z  # boolean assignment fills in C order
    np.testing.assert_array_equal(tr.value(z), expected)


def test_sigmoid_respects_bounds(rng):
    z = 20 * rng.standard_normal(100)
    x = tf.Sigmoid((2.0, 5.0)).value(z)
    assert np.all((x >= 2.0) & (x <= 5.0))
    np.testing.assert_allclose(x, 2.0 + 3.0 * expit(z))


def test_abs_smooth_tends_to_abs(rng):
    z = rng.standard_normal(10)
    np.testing.assert_allclose(tf.Abs(eps=1e-8).value(z), np.abs(z), atol=1e-8)


def test_const_freezes_masked_entries():
    values = np.arange(6.0).reshape(2, 3)
    mask = np.array([[True, False, False], [False, False, True]])
    x = tf.Const(values, mask).value(-np.ones((2, 3)))
    np.testing.assert_array_equal(x, [[0.0, -1.0, -1.0], [-1.0, -1.0, 5.0]])
    np.testing.assert_array_equal(tf.Const(values, mask).jvp(None, np.ones((2, 3))), ~mask)


def test_matvec_left_right_and_sparse(rng):
    X, z = rng.standard_normal((5, 4)), rng.standard_normal((4, 2))
    np.testing.assert_allclose(tf.MatVec(X).value(z), X @ z)
    np.testing.assert_allclose(tf.MatVec(X.T, side="right").value(z.T), z.T @ X.T)
    np.testing.assert_allclose(tf.MatVec(sp.csr_array(X)).value(z), X @ z)


def test_gram_inv_invtransp(rng):
    z = rng.standard_normal((4, 4)) + 4 * np.eye(4)
    np.testing.assert_allclose(tf.Gram().value(z), z.T @ z)
    np.testing.assert_allclose(tf.Inv().value(z) @ z, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(tf.Invtransp().value(z), np.linalg.inv(z).T)


def test_invsqrtm_squares_to_inverse(rng):
    B = rng.standard_normal((4, 4))
    S = B @ B.T + np.eye(4)
    x = tf.Invsqrtm().value(S)
    np.testing.assert_allclose(x @ x @ S, np.eye(4), atol=1e-10)
    np.testing.assert_allclose(x, scipy.linalg.inv(scipy.linalg.sqrtm(S)).real, atol=1e-10)


def test_orth_is_the_polar_factor(rng):
    z = rng.standard_normal((6, 3))
    x = tf.Orth().value(z)
    U, _, Vt = np.linalg.svd(z, full_matrices=False)
    np.testing.assert_allclose(x.T @ x, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(x, U @ Vt, atol=1e-12)


def test_normalize_gives_unit_columns(rng):
    x = tf.Normalize().value(rng.standard_normal((5, 3)))
    np.testing.assert_allclose(np.linalg.norm(x, axis=0), 1.0)


def test_kr_is_c_order_khatri_rao(rng):
    a, b, c = rng.standard_normal((2, 3)), rng.standard_normal((4, 3)), rng.standard_normal((3, 3))
    x = tf.Kr(3).value((a, b, c))
    for i in range(2):
        for j in range(4):
            for k in range(3):
                np.testing.assert_allclose(x[(i * 4 + j) * 3 + k], a[i] * b[j] * c[k])


def test_kron_matches_numpy(rng):
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((4, 2))
    np.testing.assert_allclose(tf.Kron(2).value((a, b)), np.kron(a, b))


def test_ll1_repeats_columns():
    z = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(tf.LL1([1, 3, 2]).value(z), [[1, 2, 2, 2, 3, 3]])


def test_select_rows_and_mask(rng):
    z = rng.standard_normal((4, 3))
    np.testing.assert_array_equal(tf.Select([3, -4], axis=0).value(z), z[[3, 0]])
    mask = z > 0
    np.testing.assert_array_equal(tf.Select(mask).value(z), z[mask])


def test_fd_matches_numpy_diff(rng):
    z = rng.standard_normal((6, 2))
    np.testing.assert_allclose(tf.FD(order=2).value(z), np.diff(z, n=2, axis=0))


def test_poly_matches_numpy_polyval(rng):
    t, z = np.linspace(-1, 1, 7), rng.standard_normal((4, 2))
    expected = np.polynomial.polynomial.polyval(t, z).T
    np.testing.assert_allclose(tf.Poly(t).value(z), expected)


def test_rational_is_ratio_of_polynomials(rng):
    t = np.linspace(0, 1, 5)
    num, den = rng.standard_normal(3), rng.uniform(0.1, 0.5, 2)
    x = tf.Rational(t, degree=(2, 2)).value(np.r_[num, den])
    P = np.polynomial.polynomial.polyval(t, num)
    Q = np.polynomial.polynomial.polyval(t, np.r_[1.0, den])
    np.testing.assert_allclose(x, P / Q)


def test_rbf_single_kernel():
    t = np.linspace(-1, 1, 5)
    x = tf.RBF(t).value(np.array([[2.0], [0.5], [0.7]]))
    np.testing.assert_allclose(x[:, 0], 2.0 * np.exp(-((t - 0.5) ** 2) / 0.49))


def test_views_are_read_only(rng):
    z = rng.standard_normal((3, 4))
    for tr in (tf.Identity(), tf.Transpose(), tf.Reshape(-1)):
        x = tr.value(z)
        assert not x.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            x[...] = 0.0
