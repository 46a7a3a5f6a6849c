"""Amino acids: structured (nonnegative, smooth) CPD against the unconstrained CPD.

What it shows: how transforms put prior knowledge into a factor. The same rank-3 CPD of
real fluorescence data is fitted twice:

* unconstrained: ``CPD(X, [a, b, c])`` with free factors;
* structured: ``CPD(X, [nonneg(a), nonneg(b), nonneg(matvec(Phi, w))])``: nonnegative
  concentrations and excitation spectra, and smooth emission spectra: the square of a
  weighted sum of K = 15 Gaussian radial basis functions (the columns of ``Phi``) on a
  fixed grid of centers over the emission axis scaled to t in [0, 1] (widths 1.5 grid
  steps). Only the weights are unknowns: 15 per component instead of 201. (``tf.rbf``
  also fits centers and widths; that makes the problem far more nonlinear, and from a
  random start it ends in a poor local minimum.)

The script prints the relative error, iterations, stop reason and number of unknowns of
both fits, the most negative value of each unconstrained factor (the artefacts the
constraints remove), the spectral peaks, the factor match between the two fits, and saves
``amino_acids.png`` (the two fits' factors side by side).

Data: excitation-emission matrices of 5 samples mixing tryptophan, tyrosine and
phenylalanine, 61 excitation (240-300 nm) x 201 emission (250-450 nm) wavelengths;
R. Bro, "PARAFAC. Tutorial and applications", Chemom. Intell. Lab. Syst. 38 (1997)
149-171 (see data/README.md for provenance).

Run from anywhere: ``python examples/amino_acids.py``.
"""

from pathlib import Path

import numpy as np
import xarray as xr

import sdf
from quickstart import load_amino_acids  # the shared loader of the shipped data
from sdf import transforms as tf

HERE = Path(__file__).resolve().parent
RANK = 3
N_KERNELS = 15
SEED = 0


def unconstrained(X: xr.DataArray) -> sdf.Result:
    a, b, c = (sdf.Variable.random((n, RANK), seed=SEED + k, name=dim)
               for k, (dim, n) in enumerate(zip(X.dims, X.shape)))
    return sdf.Model(eem=sdf.CPD(X, [a, b, c])).fit(method="nls", max_iter=300)


def structured(X: xr.DataArray) -> tuple[sdf.Model, sdf.Result]:
    em = X.coords["emission"].values
    t = (em - em.min()) / (em.max() - em.min())  # emission axis scaled to [0, 1]
    # Gaussian radial basis functions on a fixed grid of centres over [0, 1], widths of
    # 1.5 grid steps: the emission factor is nonneg(Phi @ w), only the weights w unknown.
    centers = np.linspace(0.0, 1.0, N_KERNELS)
    width = 1.5 / (N_KERNELS - 1)
    Phi = np.exp(-(((t[:, None] - centers[None, :]) / width) ** 2))
    rng = np.random.default_rng(SEED)
    w = sdf.Variable(0.5 + 0.1 * rng.standard_normal((N_KERNELS, RANK)), name="emission_w")
    emission = tf.nonneg(tf.matvec(Phi, w, name="rbf_sum"), name="emission")
    a = sdf.Variable.random((X.sizes["sample"], RANK), seed=SEED + 10, name="sample")
    b = sdf.Variable.random((X.sizes["excitation"], RANK), seed=SEED + 11, name="excitation")
    model = sdf.Model(eem=sdf.CPD(X, [tf.nonneg(a), tf.nonneg(b), emission]))
    return model, model.fit(method="nls", max_iter=300)


def main() -> None:
    X = load_amino_acids()
    free = unconstrained(X)
    model, smooth = structured(X)
    print(model.summary())
    n_free = sum(v.size for v in free.variables.values())
    n_smooth = sum(v.size for v in smooth.variables.values())
    print(f"\n{'fit':<34}{'relerr':>8}{'iters':>7}{'unknowns':>10}  stop")
    for label, res, n in (("unconstrained", free, n_free),
                          ("nonneg + smooth (rbf) emission", smooth, n_smooth)):
        print(f"{label:<34}{100 * res.relerr['eem']:7.2f}%{res.iterations:7d}{n:10d}  "
              f"{res.message}")

    # Negative parts of the unconstrained factors (sign-aligned, unit-norm columns).
    from sdf.viz import align_signs, normalize_columns
    from sdf.viz._common import as_decomposition

    dec = align_signs(normalize_columns(as_decomposition(free, "eem")))
    mins = ", ".join(f"{dim} {F.min():+.3f}" for dim, F in zip(X.dims, dec.factors))
    print(f"smallest entry of the unconstrained unit-norm factors: {mins}")

    from sdf.models import fms

    print(f"factor match score unconstrained vs structured: "
          f"{fms(free.factors('eem'), smooth.factors('eem')):.5f}")
    _, B, C = smooth.factors["eem"]
    order = np.argsort(X.emission.values[C.argmax(axis=0)])
    for r in order:
        print(f"  structured component {r}: excitation peak "
              f"{X.excitation.values[B[:, r].argmax()]:.0f} nm, emission peak "
              f"{X.emission.values[C[:, r].argmax()]:.0f} nm")

    out = HERE / "amino_acids.png"
    _figure(free, smooth).savefig(out, dpi=110)
    print(f"figure written to {out}")


def _figure(free: sdf.Result, smooth: sdf.Result):
    from sdf.viz import plot_factors

    drawn = plot_factors({"unconstrained": free, "nonneg + rbf emission": smooth}, term="eem")
    drawn.figure.suptitle("Amino acids, rank-3 CPD: unconstrained vs structured")
    return drawn.figure


if __name__ == "__main__":
    main()
