"""Quick start: a nonnegative rank-3 CPD of real fluorescence data, with a figure.

Data: excitation-emission matrices of 5 samples mixing three amino acids (tryptophan,
tyrosine, phenylalanine), 61 excitation x 201 emission wavelengths; see data/README.md
(R. Bro, "PARAFAC. Tutorial and applications", Chemom. Intell. Lab. Syst. 38 (1997)).

Run from anywhere: ``python examples/quickstart.py``; writes ``quickstart.png`` next to
this script and prints a short report.
"""

from pathlib import Path

import numpy as np
import xarray as xr

import sdf
from sdf import transforms as tf

HERE = Path(__file__).resolve().parent


def load_amino_acids() -> xr.DataArray:
    raw = np.load(HERE / "data" / "amino_acids.npz")
    return xr.DataArray(
        raw["X"].astype(float),
        dims=("sample", "excitation", "emission"),
        coords={"sample": np.arange(1, 6),
                "excitation": ("excitation", raw["excitation_nm"].astype(float),
                               {"units": "nm"}),
                "emission": ("emission", raw["emission_nm"].astype(float), {"units": "nm"})},
        name="fluorescence",
    )


def main() -> None:
    X = load_amino_acids()
    rank = 3
    # One variable per mode; squaring (tf.nonneg) keeps spectra and amounts nonnegative.
    a, b, c = (sdf.Variable.random((n, rank), seed=k, name=dim)
               for k, (dim, n) in enumerate(zip(X.dims, X.shape)))
    model = sdf.Model(eem=sdf.CPD(X, [tf.nonneg(a), tf.nonneg(b), tf.nonneg(c)]))
    print(model.summary())
    result = model.fit(method="nls", max_iter=300)
    print(f"\nstopped after {result.iterations} iterations: {result.message}")
    print(f"relative error of the rank-{rank} fit: {100 * result.relerr['eem']:.2f} %")
    factors = result.factors["eem"]
    peaks = [X.coords[d].values[f.argmax(axis=0)] for d, f in zip(X.dims[1:], factors[1:])]
    for r in range(rank):
        print(f"component {r}: excitation peak {peaks[0][r]:.0f} nm, "
              f"emission peak {peaks[1][r]:.0f} nm")
    out = HERE / "quickstart.png"
    fig = _figure(result, X)
    fig.savefig(out, dpi=110)
    print(f"figure written to {out}")


def _figure(result: sdf.Result, X: xr.DataArray):
    from sdf.viz import plot_factors

    drawn = plot_factors(result, term="eem")
    fig = drawn.figure
    row = drawn.axes[0]
    x_labels = ("sample", "excitation wavelength (nm)", "emission wavelength (nm)")
    for ax, x_label in zip(row, x_labels):
        ax.set_xlabel(x_label)
    # One legend under the panels, so that it hides no peak.
    handles, labels = row[0].get_legend_handles_labels()
    row[0].get_legend().remove()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    fig.suptitle("Amino acids: nonnegative rank-3 CPD (5 samples, fluorescence spectra)")
    return fig


if __name__ == "__main__":
    main()
