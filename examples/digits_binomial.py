"""Handwritten digits as counts: a binomial CPD against least squares.

What it shows: :func:`sdf.models.cpd` with ``loss="bernoulli"`` on real count data.
Every pixel of the 8x8 digit images is a count of 0..16 (the number of "on" cells of a
4x4 block of the original 32x32 bitmap), i.e. a binomial count with 16 trials. Dividing
by 16 gives frequencies in [0, 1]; the Bernoulli loss on frequencies is the binomial
log-likelihood divided by 16, so its fit is the binomial maximum-likelihood CPD (logit
link: the CPD is the log-odds of a pixel being on). The tensor is sample x pixel row x
pixel column (1797 x 8 x 8), rank 10.

The script hides a random fifth of the pixels (seeded), fits the binomial CPD and a
least-squares CPD of the same frequencies to the rest (both from random starts, 40
iterations; ``compress=False`` skips the least-squares driver's imputation rounds, which
the binomial fit's own least-squares start skips too), and compares how well each
predicts the hidden pixels: binomial deviance per pixel and root-mean-square error in
counts. Both predictions are clipped to [1/64, 63/64] for the deviance: least squares
predicts frequencies outside [0, 1], and the unpenalised binomial fit sends the log-odds
of pixels that are never on in the training pixels (the images' borders) towards minus
infinity, so one hidden "on" pixel there would make its deviance infinite (a small
``sdf.L2`` ridge on the factors in an ``sdf.Model`` would keep them finite). It
then classifies the digits from their sample factor (nearest class mean on half the
samples, tested on the other half) for both fits, and saves ``digits_binomial.png``:
the binomial fit's pixel components (each ``c_r d_r^T`` as an image) and the hidden
pixels' predictions against the truth.

Data: the digits test set of the UCI "Optical Recognition of Handwritten Digits" data
(E. Alpaydin, C. Kaynak, 1998; licence CC BY 4.0), as shipped with scikit-learn
(BSD-3-Clause) and read by ``sklearn.datasets.load_digits``: nothing is downloaded.

Run from anywhere: ``python examples/digits_binomial.py``.
"""

import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_limits

from sdf.algebra import cpd_to_tensor
from sdf.errors import SdfWarning
from sdf.models import cpd

RANK, HIDDEN, CLIP, MAX_ITER = 10, 0.2, 1.0 / 64, 40


def binomial_deviance(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per pixel, the binomial deviance (16 trials) of frequencies ``x`` at ``p``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        on = np.where(x > 0, x * np.log(x / p), 0.0)
        off = np.where(x < 1, (1 - x) * np.log((1 - x) / (1 - p)), 0.0)
    return 2 * 16 * (on + off)


def nearest_mean_accuracy(features: np.ndarray, labels: np.ndarray,
                          rng: np.random.Generator) -> float:
    """Accuracy of the nearest class mean (standardised features), half train, half test."""
    z = (features - features.mean(0)) / features.std(0)
    order = rng.permutation(len(labels))
    train, test = order[: len(order) // 2], order[len(order) // 2:]
    means = np.stack([z[train][labels[train] == k].mean(0) for k in range(10)])
    guess = np.argmin(((z[test][:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    return float(np.mean(guess == labels[test]))


def main() -> None:
    digits = load_digits()
    X = digits.images / 16.0
    labels = digits.target
    rng = np.random.default_rng(0)
    hidden = rng.random(X.shape) < HIDDEN
    holed = np.where(hidden, np.nan, X)
    print(f"digits {X.shape}: pixel counts 0..16 as frequencies, "
          f"{int(hidden.sum())} of {X.size} pixels hidden")
    fits = {}
    # The products here are small (rank 10): one BLAS thread is the fastest.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", SdfWarning)
        fits["binomial"] = cpd(holed, RANK, loss="bernoulli", seed=1, max_iter=MAX_ITER)
        fits["least squares"] = cpd(holed, RANK, seed=1, max_iter=MAX_ITER, compress=False)
    truth = X[hidden]
    predictions = {}
    for name, dec in fits.items():
        M = cpd_to_tensor(dec.factors)
        p = 0.5 * (1.0 + np.tanh(0.5 * M)) if name == "binomial" else M
        predictions[name] = p[hidden]
        clipped = np.clip(predictions[name], CLIP, 1 - CLIP)
        deviance = float(np.mean(binomial_deviance(clipped, truth)))
        rmse = 16 * float(np.sqrt(np.mean((predictions[name] - truth) ** 2)))
        accuracy = nearest_mean_accuracy(dec.factors[0], labels, np.random.default_rng(2))
        print(f"{name:>14}: held-out deviance per pixel {deviance:.3f}, RMSE {rmse:.2f} "
              f"counts, digit class from the sample factor {100 * accuracy:.1f} % "
              f"({dec.time:.1f} s, stop {dec.stop.name})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dec = fits["binomial"]
    fig, axes = plt.subplots(2, RANK // 2 + 1, figsize=(12, 4.2), layout="constrained")
    for r, ax in enumerate(axes[:, : RANK // 2].T.ravel()):
        image = np.outer(dec.factors[1][:, r], dec.factors[2][:, r])
        top = float(np.abs(image).max())
        ax.imshow(image, cmap="RdBu_r", vmin=-top, vmax=top)
        ax.set_title(f"component {r}", fontsize="small")
        ax.set_axis_off()
    gs = axes[0, -1].get_gridspec()
    for ax in axes[:, -1]:
        ax.remove()
    ax = fig.add_subplot(gs[:, -1])
    counts = np.round(16 * truth).astype(int)
    for name, marker in (("binomial", "o"), ("least squares", "x")):
        means = [16 * predictions[name][counts == k].mean() for k in range(17)]
        ax.plot(range(17), means, marker=marker, label=name)
    ax.plot([0, 16], [0, 16], "--", color="0.5", linewidth=1)
    ax.set_xlabel("hidden pixel count")
    ax.set_ylabel("mean prediction")
    ax.legend(fontsize="small")
    out = Path(__file__).with_name("digits_binomial.png")
    fig.savefig(out, dpi=90)
    print(f"figure written to {out}")


if __name__ == "__main__":
    main()
