"""scikit-learn MLPs (weights stored (in, out)) compress through the adapter."""

import numpy as np
import pytest

from sdf.errors import DataError, ModelError
from sdf.models.compress import (compress_sklearn_mlp, sklearn_mlp_forward,
                                 sklearn_mlp_layers)

neural = pytest.importorskip("sklearn.neural_network")


@pytest.fixture(scope="module")
def mlp_and_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 20)) @ np.diag(np.linspace(2, 0.1, 20))
    y = (X[:, 0] - X[:, 1] + 0.5 * X[:, 2] > 0).astype(int)
    mlp = neural.MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=2000,
                               random_state=0).fit(X, y)
    return mlp, X, y


def test_layers_are_the_transposed_coefs_with_their_inputs(mlp_and_data):
    mlp, X, _ = mlp_and_data
    layers = sklearn_mlp_layers(mlp, X)
    assert list(layers) == ["layer0", "layer1", "layer2"]
    for k, spec in enumerate(layers.values()):
        assert np.array_equal(spec.layer.weight, mlp.coefs_[k].T)
        assert np.array_equal(spec.layer.bias, mlp.intercepts_[k])
    hidden = np.maximum(X @ mlp.coefs_[0] + mlp.intercepts_[0], 0)
    assert np.allclose(layers["layer1"].X, hidden)


def test_forward_reproduces_the_classifiers_decisions(mlp_and_data):
    mlp, X, _ = mlp_and_data
    logits = sklearn_mlp_forward(mlp, X)
    assert np.array_equal((logits[:, 0] > 0).astype(int), mlp.predict(X))


def test_compressed_mlp_keeps_its_accuracy_at_half_the_parameters(mlp_and_data):
    mlp, X, y = mlp_and_data
    small = compress_sklearn_mlp(mlp, 0.5, X=X, X_test=X)
    assert small.params_after <= 0.5 * small.params_before
    pieces = {name: c.pieces for name, c in small.layers.items()}
    predicted = (sklearn_mlp_forward(mlp, X, pieces)[:, 0] > 0).astype(int)
    assert np.mean(predicted == y) >= mlp.score(X, y) - 0.05


def test_unfitted_mlp_and_bad_inputs_are_refused(mlp_and_data):
    mlp, X, _ = mlp_and_data
    with pytest.raises(ModelError, match="mlp: expected a fitted scikit-learn MLP"):
        sklearn_mlp_layers(neural.MLPClassifier())
    with pytest.raises(DataError, match=r"X: expected shape \(n_samples, 20\), got \(5, 3\)"):
        sklearn_mlp_layers(mlp, np.ones((5, 3)))
    with pytest.raises(ModelError, match=r"replace: unknown layer\(s\) \['fc1'\]"):
        sklearn_mlp_forward(mlp, X, {"fc1": []})
