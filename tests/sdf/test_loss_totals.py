"""Loss totals, working data and the data-only parts kept for read-only data."""

import numpy as np
import pytest

from sdf.losses import Bernoulli, Beta, Gamma, Gaussian, Huber, Poisson

LOSSES = [Gaussian(), Poisson(), Poisson(link="identity"), Bernoulli(), Gamma(),
          Gamma(link="identity"), Huber(0.5), Beta(0.0), Beta(1.0), Beta(1.5)]


def _data(loss, rng, shape=(50,)):
    if isinstance(loss, Bernoulli):
        return (rng.random(shape) < 0.4).astype(float)
    if isinstance(loss, Poisson):
        return rng.poisson(2.0, shape).astype(float)
    return rng.gamma(2.0, 1.0, shape)


def _model(loss, rng, shape=(50,)):
    return rng.random(shape) + 0.1 if loss.nonnegative_model or loss.name == "beta" \
        else rng.standard_normal(shape)


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_totals_agree_with_evaluate(loss, rng):
    m, x = _model(loss, rng), _data(loss, rng)
    value, slope, weight = loss.evaluate(m, x)
    total, slope2, weight2 = loss.totals(m, x)
    assert total == pytest.approx(float(np.sum(value)), rel=1e-12)
    np.testing.assert_allclose(slope2, slope, rtol=1e-13)
    np.testing.assert_allclose(weight2, weight, rtol=1e-13)


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_read_only_data_give_the_same_values(loss, rng):
    m, x = _model(loss, rng), _data(loss, rng)
    frozen = x.copy()
    frozen.flags.writeable = False
    for _ in range(2):  # the second call reads what the first kept
        np.testing.assert_allclose(loss.value(m, frozen), loss.value(m, x), rtol=1e-14)
        assert loss.totals(m, frozen)[0] == pytest.approx(loss.totals(m, x)[0], rel=1e-13)


def test_writable_data_are_never_read_from_memory(rng):
    loss = Poisson()
    m, x = np.zeros(5), np.arange(5.0)
    before = loss.value(m, x).copy()
    x[:] = 0.0
    after = loss.value(m, x)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, np.ones(5))


def test_bernoulli_pieces_do_not_overflow():
    m = np.array([-800.0, -30.0, 0.0, 30.0, 800.0])
    x = np.array([0.0, 0.0, 1.0, 1.0, 1.0])
    value, slope, weight = Bernoulli().evaluate(m, x)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(weight))
    np.testing.assert_allclose(Bernoulli().mean(m), 1 / (1 + np.exp(-np.clip(m, -700, 700))),
                               rtol=1e-12, atol=1e-300)
    assert value[2] == pytest.approx(np.log(2.0))


def test_working_data_and_nonnegative_models():
    x = np.array([0.0, 1.0, 3.0])
    np.testing.assert_allclose(Poisson().working_data(x), np.log(x + 0.5))
    np.testing.assert_allclose(Bernoulli().working_data(np.array([0.0, 1.0])), [-2.0, 2.0])
    np.testing.assert_allclose(Gamma().working_data(x[1:]), np.log(x[1:]))
    np.testing.assert_allclose(Huber().working_data(x), x)
    assert [loss.nonnegative_model for loss in (Poisson(), Poisson(link="identity"), Beta(),
                                                Gamma(link="identity"), Huber())] == \
        [False, True, True, True, False]
