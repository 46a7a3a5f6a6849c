"""IL-2 muteins: a nonnegative CPD of an incomplete 4-way tensor, rank chosen on held-out data.

What it shows: CPD of data with missing entries (NaN = missing; the objective runs over
the known entries only) and a simple, honest rank choice. 10 % of the known entries are
held out (seeded); for ranks 1..5 a nonnegative CPD is fitted to the rest from a seeded
random start and, from rank 2 on, from the previous rank's solution grown by one column,
and the error on the held-out entries draws the curve. The smallest rank whose held-out
error is within 10 % of the best one (a parsimony rule) is refitted on all known entries.
The script prints the error curve (training and held-out), the fits' iterations and stop
reasons, what the chosen components show, and saves ``il2_mutein.png`` (error curve and
factors; ligands and cell types as bars).

Nonnegativity (``tf.nonneg``, squared factors) is used because the responses are
nonnegative and unconstrained CPDs of this tensor are degenerate from rank 3 on
(components that cancel each other, which ``sdf.models.cpd`` warns about).

Data: IL-2 mutein signalling response (pSTAT5), 13 ligands x 4 times (0.5-4 h) x 12 doses
(0.47 pM - 84 nM) x 8 cell types, 192 entries missing; Orcutt-Jahns et al., 2021, bioRxiv,
as shipped in tensorly 0.10.0 datasets (see data/README.md for provenance and terms).

Run from anywhere: ``python examples/il2_mutein.py``.
"""

from pathlib import Path

import numpy as np
import xarray as xr

import sdf
from sdf import transforms as tf

HERE = Path(__file__).resolve().parent
RANKS = range(1, 6)
N_STARTS = 1
HOLDOUT = 0.10
TOLERANCE = 1.10  # choose the smallest rank within 10 % of the best held-out error
SEED = 0


def load_il2() -> xr.DataArray:
    raw = np.load(HERE / "data" / "il2_mutein.npz")
    return xr.DataArray(
        raw["X"].astype(float),
        dims=("ligand", "time_h", "log10_dose_nM", "cell"),
        coords={"ligand": raw["ligands"], "time_h": raw["times_h"],
                "log10_dose_nM": np.log10(raw["doses_nM"]), "cell": raw["cells"]},
        name="pSTAT5",
    )


def fit(X: xr.DataArray, rank: int, seed: int, init: list[np.ndarray] | None = None,
        max_iter: int = 100) -> sdf.Result:
    """Nonnegative rank-``rank`` CPD of X over its known entries."""
    if init is None:
        variables = [sdf.Variable.random((n, rank), seed=seed + k, name=dim)
                     for k, (dim, n) in enumerate(zip(X.dims, X.shape))]
    else:  # factors given: start from their square roots (nonneg squares them)
        variables = [sdf.Variable(np.sqrt(F), name=dim) for dim, F in zip(X.dims, init)]
    model = sdf.Model(data=sdf.CPD(X, [tf.nonneg(v) for v in variables]))
    return model.fit(method="nls", max_iter=max_iter, tol_fun=1e-9)


def cpd_values(factors: list[np.ndarray], index: tuple[np.ndarray, ...]) -> np.ndarray:
    """Entries of the CPD with these factors at the given multi-indices."""
    rows = [F[i] for F, i in zip(factors, index)]
    return np.einsum("ir,ir,ir,ir->i", *rows)


def main() -> None:
    X = load_il2()
    rng = np.random.default_rng(SEED)
    known = np.argwhere(~np.isnan(X.values))
    held = known[rng.permutation(len(known))[: int(HOLDOUT * len(known))]]
    index = tuple(held.T)
    train = X.copy()
    train.values[index] = np.nan
    truth = X.values[index]
    print(f"data {dict(X.sizes)}: {int(np.isnan(X.values).sum())} entries missing, "
          f"{len(held)} known entries held out")

    print(f"\n{'rank':>4} {'train relerr':>13} {'held-out relerr':>16}  best start")
    curve, best_fits = [], []
    for rank in RANKS:
        fits = [fit(train, rank, seed=SEED + 100 * rank + 10 * s) for s in range(N_STARTS)]
        if best_fits:  # one more start: the previous rank's solution plus a small column
            grown = [np.hstack([F, 0.1 * F.mean() * rng.random((F.shape[0], 1))])
                     for F in best_fits[-1].factors["data"]]
            fits.append(fit(train, rank, seed=0, init=grown))
        best = min(fits, key=lambda r: r.objective)
        held_err = np.linalg.norm(cpd_values(best.factors["data"], index) - truth) \
            / np.linalg.norm(truth)
        curve.append((best.relerr["data"], held_err))
        best_fits.append(best)
        print(f"{rank:4d} {100 * best.relerr['data']:12.2f}% {100 * held_err:15.2f}%  "
              f"{best.iterations} iterations, {best.message}")
    held_out = np.array([h for _, h in curve])
    k = int(np.flatnonzero(held_out <= TOLERANCE * held_out.min())[0])
    rank = RANKS[k]
    final = fit(X, rank, seed=SEED, init=best_fits[k].factors["data"], max_iter=100)
    print(f"\nchosen rank {rank}: the smallest within 10 % of the best held-out error "
          f"({100 * held_out.min():.2f} % at rank {RANKS[int(held_out.argmin())]});\n"
          f"refit on all known entries: relerr {100 * final.relerr['data']:.2f} %, "
          f"{final.iterations} iterations, {final.message}")
    _describe(final, X)

    out = HERE / "il2_mutein.png"
    _figure(curve, rank, final).savefig(out, dpi=100)
    print(f"figure written to {out}")


def _describe(result: sdf.Result, X: xr.DataArray) -> None:
    L, T, D, C = result.factors["data"]
    for r in range(L.shape[1]):
        share = C[:, r] / C[:, r].sum()
        print(f"  component {r}: strongest in ligand {str(X.ligand.values[L[:, r].argmax()])!r}, "
              f"cell {str(X.cell.values[C[:, r].argmax()])!r} ({share.max():.0%} of its cell "
              f"weight), peak at {X.time_h.values[T[:, r].argmax()]:g} h, half of its "
              f"dose response at {10 ** _half_dose(D[:, r], X.log10_dose_nM.values):.2g} nM")


def _half_dose(curve: np.ndarray, log_dose: np.ndarray) -> float:
    """log10 dose where the dose factor first reaches half its maximum (from low doses)."""
    order = np.argsort(log_dose)
    x, y = log_dose[order], curve[order]
    above = np.flatnonzero(y >= 0.5 * y.max())[0]
    if above == 0:
        return float(x[0])
    return float(np.interp(0.5 * y.max(), y[above - 1: above + 1], x[above - 1: above + 1]))


def _figure(curve: list[tuple[float, float]], rank: int, final: sdf.Result):
    import matplotlib.pyplot as plt

    from sdf.viz import plot_factors, plot_rankest

    fig = plt.figure(figsize=(14, 7.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[0.8, 1.0])
    ax_curve, ax_note = top.subplots(1, 2, width_ratios=[1.0, 2.0])
    errs = np.array(curve)
    drawn_curve = plot_rankest(list(RANKS), errs[:, 0], chosen=rank, ax=ax_curve)
    (held,) = ax_curve.plot(list(RANKS), errs[:, 1], "s--", color="C3")
    handles = [drawn_curve.line, held] + ([drawn_curve.chosen] if drawn_curve.chosen else [])
    ax_curve.legend(handles, ["training entries", "held-out entries", "chosen rank"],
                    fontsize="small")
    ax_curve.set_title("nonnegative CPD: error against rank")
    drawn = plot_factors(final, term="data", fig=bottom)
    for ax in (drawn.axes[0][0], drawn.axes[0][3]):
        ax.tick_params(axis="x", labelsize=7, labelrotation=90)
    ax_note.set_axis_off()
    ax_note.text(0.0, 0.5, "IL-2 mutein pSTAT5 responses\n13 ligands x 4 times x 12 doses "
                 "x 8 cell types\nmissing entries: NaN, fitted on known entries only\n"
                 f"rank {rank}: smallest within 10 % of the best error\non 10 % held-out entries",
                 va="center", fontsize=11)
    return fig


if __name__ == "__main__":
    main()
