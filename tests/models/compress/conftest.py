"""Fixtures: seeded rng and two small networks trained once on the digits data.

The trained weights are cached in a file under the system temp directory (never in the
repository), so later sessions load them instead of training again.
"""

import os
import tempfile

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sdf.models.compress import nets  # noqa: E402

CACHE = os.path.join(tempfile.gettempdir(), "sdfusion-compress-cache")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def digits():
    return nets.load_digits_split(seed=0)


@pytest.fixture(scope="session")
def mlp(digits):
    return nets.cached_net("mlp-digits-v1", lambda: nets.train_mlp_digits(digits, seed=0), CACHE)


@pytest.fixture(scope="session")
def cnn(digits):
    return nets.cached_net("cnn-digits-v1", lambda: nets.train_cnn_digits(digits, seed=0), CACHE)
