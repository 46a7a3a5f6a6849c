"""Benchmarks of tensorized layers, factorized embeddings and low-rank regression heads.

Run as a script (prints the tables and writes benchmarks/results/bench_tensorized.txt).

(a) A linear layer at 10 % of its parameters: held-out output error of TT-matrix, CP and
    Tucker forms (data-free and data-aware) against the plain truncated SVD at the same
    parameter budget, on (1) the first layer of an MLP trained on scikit-learn's digits
    (``MLPClassifier``, inputs are 8x8 images; the digits data ship with scikit-learn,
    BSD-3-Clause), (2) the first dense layer of a small CNN trained on the same data
    (:func:`sdf.models.compress.nets.train_cnn_digits`; both trained in this process or
    loaded from the cache the tests fill), with each network's test accuracy after the
    swap, and (3) an unstructured Gaussian weight. For d = 2 the TT-matrix and CP-matrix
    are the same model (a truncated SVD of the rearranged weight, Van Loan's nearest sum
    of Kronecker products).
(b) An embedding table (10000 x 32, Gaussian: no structure to exploit) at 10 % of its
    parameters as a TT-matrix: look-up time of a batch of ids against dense indexing
    ``E[ids]``, and the error on the rows a Zipf-distributed corpus uses, unweighted
    against count-weighted fits.
(c) A flatten + dense softmax head on 8 fixed random 3x3 conv filters + ReLU over the
    digits (features 8 x 8 x 8, 10 classes), trained here by L-BFGS: test accuracy of
    Tucker and CP heads at several parameter shares against the dense head.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import io  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from contextlib import redirect_stdout  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from sdf.errors import SdfWarning  # noqa: E402
from sdf.models.compress import (CompressOptions, Piece, compress_head,  # noqa: E402
                                 compress_linear, conv2d, factorize_embedding, nets,
                                 tensorize_linear, truncated_svd)

RESULTS = Path(__file__).resolve().parent / "results" / "bench_tensorized.txt"


def _rel(Y_hat: np.ndarray, Y: np.ndarray) -> float:
    return float(np.linalg.norm(Y_hat - Y) / np.linalg.norm(Y))


def _svd_rank(out: int, n_in: int, ratio: float) -> int:
    return max(1, int(ratio * out * n_in // (out + n_in)))


def _linear_rows(W, X_calib, X_test, ratio, accuracy=None):
    """Rows (method, params, held-out error, error / SVD error, accuracy) for one weight."""
    out, n_in = W.shape
    Y = X_test @ W.T
    r = _svd_rank(out, n_in, ratio)
    A, B = truncated_svd(W, r)
    rows = [("SVD (truncated)", r * (out + n_in), A @ B.T)]
    aware = compress_linear(W, rank=r, X=X_calib)
    rows.append(("SVD data-aware", r * (out + n_in), aware.dense()))
    for format, order in (("tt", 2), ("tt", 3), ("cp", 2), ("cp", 3), ("tucker", 2)):
        for X in (None, X_calib):
            layer = tensorize_linear(W, format, ratio=ratio, order=order, X=X,
                                     options=CompressOptions(max_iter=100))
            label = (f"{format.upper()} d={order} {layer.out_sizes}x{layer.in_sizes}"
                     f"{' data-aware' if X is not None else ''}")
            rows.append((label, layer.n_params, layer.dense()))
    base = _rel(X_test @ rows[0][2].T, Y)
    table = []
    for label, params, W_hat in rows:
        err = _rel(X_test @ W_hat.T, Y)
        acc = None if accuracy is None else accuracy(W_hat)
        table.append((label, params, err, err / base, acc))
    return table


def _print_linear(title, W, table, dense_accuracy=None):
    print(f"{title}: weight {W.shape}, {W.size} parameters, budget 10 %")
    if dense_accuracy is not None:
        print(f"test accuracy of the network with the dense layer: {dense_accuracy:.4f}")
    print(f"{'method':44} {'params':>6} {'held-out err':>12} {'/ SVD':>6} {'accuracy':>8}")
    for label, params, err, ratio, acc in table:
        a = "" if acc is None else f"{acc:8.4f}"
        print(f"{label:44} {params:6d} {err:12.4f} {ratio:6.3f} {a:>8}")


def bench_linear() -> None:
    digits = nets.load_digits_split(seed=0)
    cache = os.path.join(tempfile.gettempdir(), "sdfusion-compress-cache")
    mlp = nets.cached_net("mlp-digits-v1", lambda: nets.train_mlp_digits(digits), cache)
    cnn = nets.cached_net("cnn-digits-v1", lambda: nets.train_cnn_digits(digits), cache)
    cases = [("(a1) MLP fc1 (inputs: 8x8 digit images)", mlp, "fc1"),
             ("(a2) CNN fc1 (inputs: 32 x 4 x 4 feature maps)", cnn, "fc1")]
    for title, net, name in cases:
        layer = net.layers[name]
        W = np.array(layer.weight)

        def accuracy(W_hat, net=net, name=name, layer=layer):
            piece = Piece("linear", W_hat, bias=layer.bias)
            return net.accuracy(digits.X_test, digits.y_test, replace={name: [piece]})

        calib = net.layer_inputs(digits.X_calib)[name]
        test = net.layer_inputs(digits.X_test)[name]
        _print_linear(title, W, _linear_rows(W, calib, test, 0.1, accuracy), accuracy(W))
        print()
    rng = np.random.default_rng(0)
    G = rng.standard_normal((128, 64))
    Xc, Xt = rng.standard_normal((500, 64)), rng.standard_normal((500, 64))
    _print_linear("(a3) Gaussian weight, Gaussian inputs", G, _linear_rows(G, Xc, Xt, 0.1))


def bench_embedding() -> None:
    rng = np.random.default_rng(0)
    vocab, dim = 10000, 32
    E = rng.standard_normal((vocab, dim))
    corpus = (rng.zipf(1.1, 200000) - 1) % vocab
    counts = np.bincount(corpus, minlength=vocab).astype(float)
    used = counts > 0
    print(f"(b) embedding {vocab} x {dim} (Gaussian), budget 10 %; corpus of "
          f"{corpus.size} Zipf(1.1) ids, {int(used.sum())} distinct rows used")
    print(f"{'fit':26} {'params':>6} {'err all':>8} {'err used':>8} {'err top-100':>11} "
          f"{'fit s':>6}")
    top = np.argsort(-counts)[:100]
    fits = {}
    for label, ids in (("TT, unweighted", None), ("TT, count-weighted", corpus)):
        t0 = time.perf_counter()
        emb = factorize_embedding(E, "tt", ratio=0.1, ids=ids, order=3)
        dt = time.perf_counter() - t0
        E_hat = emb.dense()
        w_err = np.sqrt(counts @ np.sum((E_hat - E) ** 2, 1) / (counts @ np.sum(E ** 2, 1)))
        print(f"{label:26} {emb.n_params:6d} {emb.weight_error:8.4f} {w_err:8.4f} "
              f"{_rel(E_hat[top], E[top]):11.4f} {dt:6.1f}")
        fits[label] = emb
    emb = fits["TT, count-weighted"]
    uniform = rng.integers(0, vocab, 100000)
    for label, batch in (("Zipf corpus", corpus[:100000]), ("uniform ids", uniform)):
        t_dense = min(_timed(lambda: E[batch]) for _ in range(5))
        t_tt = min(_timed(lambda: emb.lookup(batch)) for _ in range(3))
        print(f"look-up of {batch.size} ids ({label}, {np.unique(batch).size} distinct): "
              f"dense indexing {t_dense * 1e3:.1f} ms, TT {t_tt * 1e3:.1f} ms "
              f"(ratio {t_tt / t_dense:.0f})")
    err = np.abs(emb.lookup(corpus[:1000]) - emb.dense()[corpus[:1000]]).max()
    print(f"TT ranks {emb.rank}, sizes {emb.vocab_sizes} x {emb.dim_sizes}; "
          f"max |lookup - dense rows| {err:.1e}")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _softmax_head(A, y, K, lam=1e-3):
    n, D = A.shape
    Y = np.eye(K)[y]

    def loss(w):
        W, b = w[:K * D].reshape(K, D), w[K * D:]
        Z = A @ W.T + b
        Z -= Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        P /= P.sum(axis=1, keepdims=True)
        G = (P - Y) / n
        value = -np.sum(Y * np.log(P + 1e-300)) / n + lam / 2 * np.sum(W * W)
        return value, np.concatenate([(G.T @ A + lam * W).ravel(), G.sum(axis=0)])

    w = minimize(loss, np.zeros(K * D + K), jac=True, method="L-BFGS-B",
                 options={"maxiter": 500}).x
    return w[:K * D].reshape(K, D), w[K * D:]


def bench_head() -> None:
    from sklearn.datasets import load_digits

    data = load_digits()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(data.target))
    tr, te = idx[:1200], idx[1200:]
    filters = rng.standard_normal((8, 1, 3, 3))

    def features(images):
        return np.maximum(conv2d(images.reshape(-1, 1, 8, 8) / 16.0, filters, padding=1), 0)

    F_tr, F_te = features(data.data[tr]), features(data.data[te])
    W, b = _softmax_head(F_tr.reshape(len(tr), -1), data.target[tr], 10)

    def accuracy(scores):
        return float(np.mean(scores.argmax(axis=1) == data.target[te]))

    dense = accuracy(F_te.reshape(len(te), -1) @ W.T + b)
    print(f"(c) softmax head on 8x8x8 conv features of the digits: dense head {W.size + 10} "
          f"parameters, test accuracy {dense:.4f}")
    print(f"{'head':22} {'share':>5} {'rank':>14} {'params':>6} {'MACs':>5} {'accuracy':>8} "
          f"{'/ dense':>7}")
    opts = CompressOptions(max_iter=100)
    for share in (0.05, 0.1, 0.2):
        for format in ("tucker", "cp"):
            for X in (None, F_tr[:500]):
                head = compress_head(W, ratio=share, X=X, bias=b, format=format,
                                     feature_shape=(8, 8, 8), options=opts)
                acc = accuracy(head.forward(F_te))
                label = f"{format}{' data-aware' if X is not None else ''}"
                print(f"{label:22} {share:5.2f} {str(head.rank):>14} {head.n_params:6d} "
                      f"{head.macs:5d} {acc:8.4f} {acc / dense:7.3f}")


def main() -> None:
    buf = io.StringIO()
    with redirect_stdout(buf), warnings.catch_warnings():
        warnings.simplefilter("ignore", SdfWarning)
        t0 = time.perf_counter()
        bench_linear()
        print()
        bench_embedding()
        print()
        bench_head()
        print(f"\ntotal time {time.perf_counter() - t0:.0f} s")
    text = buf.getvalue()
    print(text, end="")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
