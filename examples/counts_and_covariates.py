"""Counts and continuous data sharing a factor: one model, two losses.

What it shows: a count tensor (station x hour x day of trips, say) fitted with the Poisson
loss, fused with a continuous matrix (station x covariate) fitted by least squares; the
two data sets share the station factor ``a``::

    trips  = CPD(counts, [a, b, c], loss="poisson")   # log of the mean count is the CPD
    covars = CPD(Y, [a, d], weight=1 / sigma**2)      # Gaussian, weighted as a likelihood

The Poisson term's value is half its deviance; the Gaussian term gets the weight
``1/sigma^2`` of its noise level so that both enter as log-likelihoods (see
:mod:`sdf.losses`). The script compares the station factor recovered by the fused
Poisson model and by a least-squares model of the same data, prints the per-term
relative errors (deviance-based for the Poisson term) and saves
``counts_and_covariates.png``.

Data: *synthetic*, generated here with a seed (rank 3, 40 stations x 24 hours x 14 days,
mean count about 1.4; 6 covariates with noise level 0.1): no public count data set with a
matching covariate table ships with the project's dependencies.

Run from anywhere: ``python examples/counts_and_covariates.py``.
"""

from pathlib import Path

import numpy as np

import sdf
from sdf import algebra
from sdf.models.diagnostics import fms

RANK, SHAPE, SIGMA = 3, (40, 24, 14), 0.1


def planted(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    truth = [0.7 * rng.standard_normal((n, RANK)) for n in SHAPE]
    counts = rng.poisson(np.exp(algebra.cpd_to_tensor(truth))).astype(float)
    D = rng.standard_normal((6, RANK))
    Y = truth[0] @ D.T + SIGMA * rng.standard_normal((SHAPE[0], 6))
    return truth, counts, Y


def fit(counts: np.ndarray, Y: np.ndarray, loss: str) -> tuple[sdf.Result, list[sdf.Variable]]:
    rng = np.random.default_rng(1)
    a, b, c = (sdf.Variable(0.3 * rng.standard_normal((n, RANK)), name=k)
               for n, k in zip(SHAPE, "abc"))
    d = sdf.Variable(0.3 * rng.standard_normal((6, RANK)), name="d")
    model = sdf.Model(trips=sdf.CPD(counts, [a, b, c], loss=loss, weight=1.0),
                      covars=sdf.CPD(Y, [a, d], weight=1.0 / SIGMA**2))
    return model.fit(max_iter=300), [a, b, c]


def main() -> None:
    truth, counts, Y = planted(np.random.default_rng(0))
    print(f"counts {counts.shape}, mean {counts.mean():.2f}; covariates {Y.shape}")
    results = {}
    for loss in ("poisson", "gaussian"):
        res, factors = fit(counts, Y, loss)
        match = fms([res[f] for f in factors], truth)
        results[loss] = (res, factors)
        print(f"{loss:>8} loss on the counts: FMS {match:.3f}, relative errors "
              f"trips {res.relerr['trips']:.3f}, covars {res.relerr['covars']:.3f}, "
              f"{res.iterations} iterations, {res.stop.name}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res, factors = results["poisson"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    fitted = algebra.cpd_to_tensor([res[f] for f in factors]).ravel()
    ax.scatter(algebra.cpd_to_tensor(truth).ravel(), fitted, s=2, alpha=0.3)
    ax.set_xlabel("true log-mean")
    ax.set_ylabel("fitted log-mean (Poisson loss)")
    fig.tight_layout()
    out = Path(__file__).with_name("counts_and_covariates.png")
    fig.savefig(out, dpi=100)
    print(f"figure written to {out}")


if __name__ == "__main__":
    main()
