"""Coupled EEM: an excitation-emission tensor fused with a concentration matrix.

What it shows: structured data fusion of two data sets that share one factor. The
fluorescence tensor ``X`` (sample x excitation x emission) and a concentration matrix
``Y`` (sample x analyte) share the sample-mode factor ``a``::

    eem  = CPD(X, [a, nonneg(b), nonneg(c)])     # spectra kept nonnegative
    conc = CPD(Y, [a, d])                        # the same variable `a` couples the terms

fitted jointly with Gauss-Newton from a random start. The script prints the model
summary, per-term relative errors, iterations and stop reason, how well the coupled
sample factor matches the reference, the spectral peaks, and saves ``coupled_eem.png``.

Data: excitation-emission matrices of 5 samples mixing tryptophan, tyrosine and
phenylalanine, 61 excitation (240-300 nm) x 201 emission (250-450 nm) wavelengths;
R. Bro, "PARAFAC. Tutorial and applications", Chemom. Intell. Lab. Syst. 38 (1997)
149-171 (see data/README.md for provenance).

The concentration matrix is *synthetic*: the file holds no concentrations, so ``Y`` is
built from the sample-mode factor of a reference nonnegative rank-3 CPD of ``X`` (each
column scaled to a maximum of 1, as relative concentrations), plus Gaussian noise of 2 %
of its Frobenius norm (seeded). It stands in for a table of measured concentrations.

Run from anywhere: ``python examples/coupled_eem.py``.
"""

from pathlib import Path

import numpy as np
import xarray as xr

import sdf
from quickstart import load_amino_acids  # the shared loader of the shipped data
from sdf import transforms as tf

HERE = Path(__file__).resolve().parent
RANK = 3
SEED = 0


def reference_fit(X: xr.DataArray) -> sdf.Result:
    """Nonnegative rank-3 CPD of X alone (the source of the synthetic concentrations)."""
    a, b, c = (sdf.Variable.random((n, RANK), seed=100 + k, name=f"ref_{dim}")
               for k, (dim, n) in enumerate(zip(X.dims, X.shape)))
    model = sdf.Model(eem=sdf.CPD(X, [tf.nonneg(a), tf.nonneg(b), tf.nonneg(c)]))
    return model.fit(method="nls", max_iter=300)


def make_concentrations(A_ref: np.ndarray, rng: np.random.Generator) -> xr.DataArray:
    """Relative concentrations (columns scaled to max 1) plus 2 % Gaussian noise."""
    C = A_ref / A_ref.max(axis=0)
    noise = rng.standard_normal(C.shape)
    Y = C + 0.02 * np.linalg.norm(C) / np.linalg.norm(noise) * noise
    return xr.DataArray(Y, dims=("sample", "analyte"),
                        coords={"sample": np.arange(1, 6), "analyte": ["an0", "an1", "an2"]},
                        name="concentration")


def main() -> None:
    rng = np.random.default_rng(SEED)
    X = load_amino_acids()
    ref = reference_fit(X)
    A_ref = ref.factors["eem"][0]
    Y = make_concentrations(A_ref, rng)
    print(f"reference nonnegative CPD of X alone: relerr {100 * ref.relerr['eem']:.2f} %, "
          f"{ref.iterations} iterations ({ref.message})")
    print(f"synthetic concentrations Y {Y.shape}: reference sample factor + 2 % noise\n")

    # The coupled model, from a random start (independent of the reference's start).
    a = sdf.Variable.random((X.sizes["sample"], RANK), seed=SEED + 1, name="a")
    b = sdf.Variable.random((X.sizes["excitation"], RANK), seed=SEED + 2, name="b")
    c = sdf.Variable.random((X.sizes["emission"], RANK), seed=SEED + 3, name="c")
    d = sdf.Variable.random((Y.sizes["analyte"], RANK), seed=SEED + 4, name="d")
    model = sdf.Model(
        eem=sdf.CPD(X, [a, tf.nonneg(b), tf.nonneg(c)]),
        conc=sdf.CPD(Y, [a, d]),
    )
    print(model.summary())
    result = model.fit(method="nls", max_iter=300)

    print(f"\ncoupled fit: {result.iterations} iterations, stop: {result.message}")
    for name in model.terms:
        print(f"  relative error {name:<5} {100 * result.relerr[name]:6.2f} %")
    from sdf.models import fms

    print(f"factor match score, sample mode vs reference:  "
          f"{fms([result['a']], [A_ref]):.5f}")
    print(f"factor match score, all 3 modes vs reference:  "
          f"{fms(result.factors['eem'], ref.factors['eem']):.5f}")
    A = result["a"]
    print(f"unconstrained sample factor a: smallest entry {A.min() / np.abs(A).max():+.3f} "
          f"of its largest magnitude")
    # Components numbered as in the figure: by emission peak (Phe, Tyr, Trp).
    factors = by_emission_peak(result, X)
    for k, who in enumerate(AMINO_ACIDS):
        ex = X.excitation.values[factors["excitation_factor"].values[:, k].argmax()]
        em = X.emission.values[factors["emission_factor"].values[:, k].argmax()]
        print(f"  component {k} ({who}): excitation peak {ex:.0f} nm, emission peak {em:.0f} nm")

    out = HERE / "coupled_eem.png"
    figure(ref, result, X).savefig(out, dpi=110)
    print(f"figure written to {out}")


#: Known maxima (ex/em, nm): Phe ~257/282, Tyr ~275/303, Trp ~280/350: emission order.
AMINO_ACIDS = ("phenylalanine", "tyrosine", "tryptophan")


def by_emission_peak(result: sdf.Result, X: xr.DataArray) -> xr.Dataset:
    """The EEM term's factors (sample, excitation, emission), components in the order of
    their emission peaks: component k is AMINO_ACIDS[k] in the report and the figure."""
    ds = result.to_xarray()[[f"{dim}_factor" for dim in X.dims]]
    order = np.argsort(X.emission.values[ds["emission_factor"].values.argmax(axis=0)])
    return ds.isel(component=order).assign_coords(component=np.arange(RANK))


def figure(ref: sdf.Result, result: sdf.Result, X: xr.DataArray):
    from sdf.viz import plot_factors

    drawn = plot_factors({"reference (X only)": by_emission_peak(ref, X),
                          "coupled X + Y": by_emission_peak(result, X)})
    # One legend under the panels, so that it hides no peak; numbered as in the report.
    handles = drawn.axes[0][0].get_legend_handles_labels()[0]
    for row in drawn.axes:
        row[0].get_legend().remove()
    drawn.figure.legend(handles, [f"component {k}: {who}" for k, who in
                                  enumerate(AMINO_ACIDS)], loc="outside lower center",
                        ncols=RANK)
    drawn.figure.suptitle("Amino acids EEM coupled with a (synthetic) concentration matrix")
    return drawn.figure


if __name__ == "__main__":
    main()
