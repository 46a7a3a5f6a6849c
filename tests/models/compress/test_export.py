import numpy as np
import pytest

from sdf.models.compress import compress_conv


def test_to_torch_matches_numpy_forward(rng):
    torch = pytest.importorskip("torch")
    res = compress_conv(rng.standard_normal((6, 4, 3, 3)), "cp", rank=3, padding=1, stride=2)
    x = rng.standard_normal((2, 4, 7, 7))
    y = res.to_torch("float64")(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(y, res.forward(x), atol=1e-10)
