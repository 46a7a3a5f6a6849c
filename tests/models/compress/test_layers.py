import numpy as np
import pytest

from sdf.errors import DataError, ModelError
from sdf.models.compress import Piece, conv2d, count_macs, count_params, im2col, run_pieces


def _conv_loop(x, W, s, p, d, g):
    n, c, h, w = x.shape
    o, cg, kh, kw = W.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    ho = (h + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    wo = (w + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    y = np.zeros((n, o, ho, wo))
    og = o // g
    for oo in range(o):
        gi = oo // og
        for a in range(ho):
            for b in range(wo):
                patch = xp[:, gi * cg:(gi + 1) * cg,
                           a * s[0]:a * s[0] + d[0] * (kh - 1) + 1:d[0],
                           b * s[1]:b * s[1] + d[1] * (kw - 1) + 1:d[1]]
                y[:, oo, a, b] = np.einsum("ncij,cij->n", patch, W[oo])
    return y


@pytest.mark.parametrize("s,p,d,g", [((1, 1), (0, 0), (1, 1), 1), ((2, 1), (1, 2), (1, 2), 2),
                                     ((2, 2), (1, 1), (2, 1), 4)])
def test_conv2d_matches_loop(rng, s, p, d, g):
    x = rng.standard_normal((2, 4, 9, 8))
    W = rng.standard_normal((8, 4 // g, 3, 2))
    y = conv2d(x, W, stride=s, padding=p, dilation=d, groups=g)
    np.testing.assert_allclose(y, _conv_loop(x, W, s, p, d, g), atol=1e-12)


def test_im2col_times_weight_is_conv(rng):
    x = rng.standard_normal((3, 5, 7, 7))
    W = rng.standard_normal((6, 5, 3, 3))
    y = conv2d(x, W, stride=2, padding=1)
    P = im2col(x, 3, stride=2, padding=1)
    y2 = (P @ W.reshape(6, -1).T).reshape(3, 4, 4, 6).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(y, y2, atol=1e-12)


def test_piece_counts(rng):
    p = Piece("conv2d", rng.standard_normal((8, 4, 3, 3)), bias=np.zeros(8), stride=2, padding=1)
    assert p.n_params == 8 * 4 * 9 + 8
    assert p.macs((8, 8)) == 8 * 4 * 9 * 16
    dw = Piece("conv2d", rng.standard_normal((8, 1, 3, 3)), groups=8, padding=1)
    assert count_params([p, dw]) == p.n_params + 72
    assert count_macs([p, dw], (8, 8)) == p.macs((8, 8)) + 72 * 16
    assert run_pieces([p, dw], rng.standard_normal((1, 4, 8, 8))).shape == (1, 8, 4, 4)


def test_piece_does_not_alias_input(rng):
    W = rng.standard_normal((3, 2))
    p = Piece("linear", W)
    W[0, 0] = 100.0
    assert p.weight[0, 0] != 100.0


def test_piece_rejects_bad_weight():
    with pytest.raises(ModelError, match="a conv2d weight needs 4 dims"):
        Piece("conv2d", np.zeros((3, 3)))
    with pytest.raises(ModelError, match="bias has 2 entries"):
        Piece("linear", np.zeros((3, 3)), bias=np.zeros(2))


def test_piece_rejects_bad_input():
    with pytest.raises(DataError, match="input has 4 features"):
        Piece("linear", np.zeros((3, 3))).forward(np.zeros((2, 4)))
    with pytest.raises(DataError, match=r"input must have shape \(N, 2, H, W\)"):
        conv2d(np.zeros((1, 3, 4, 4)), np.zeros((2, 2, 3, 3)))
