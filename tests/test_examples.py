"""The example scripts run as-is from another directory, report their numbers and write a PNG.

Each script runs in a subprocess with a temporary working directory (the scripts must
find their data relative to themselves) and a non-interactive matplotlib backend, once per
session (the ``example_runs`` fixture of ``conftest.py``: the docs build takes its
gallery from the same runs).
"""

from __future__ import annotations

import re

import pytest
from _example_runs import EXAMPLES, ExampleRuns

# script -> regular expressions its report must contain (one per line of interest)
REPORTS = {
    "quickstart.py": [
        r"stopped after \d+ iterations: ",
        r"relative error of the rank-3 fit: \d+\.\d+ %",
    ],
    "coupled_eem.py": [
        r"Model: 2 terms, 4 variables, \d+ unknowns",
        r"coupled fit: \d+ iterations, stop: ",
        r"relative error eem +\d+\.\d+ %",
        r"relative error conc +\d+\.\d+ %",
        r"(?m)factor match score, sample mode vs reference: +(0\.9\d+|1\.0+)$",
        r"\(tryptophan\): excitation peak \d+ nm, emission peak 3[45]\d nm",
    ],
    "amino_acids.py": [
        r"unconstrained +\d+\.\d+% +\d+ +801 ",
        r"nonneg \+ smooth \(rbf\) emission +\d+\.\d+% +\d+ +243 ",
        r"(?m)factor match score unconstrained vs structured: (0\.9\d+|1\.0+)$",
    ],
    "nutrimouse.py": [
        r"\(a\) gene \+ lipid coupled by mouse: relative errors gene \d+\.\d %, lipid \d+\.\d %",
        r"\(b\) folded coupled CPDs: relative errors gene \d+\.\d %, lipid \d+\.\d %",
        r"genotype contrast",
        r"separating coc most",
    ],
    "il2_mutein.py": [
        r"192 entries missing",
        r"(?m)^ +5 +\d+\.\d+% +\d+\.\d+%",
        r"chosen rank \d: ",
    ],
    "bigdata_zarr.py": [
        r"wrote 64/64 chunks",
        r"randomized MLSVD \(4 passes\) to core \(5, 5, 5\)",
        r"relative error 1\.0\d+ % \(noise level 1 %\)",
        r"factor match score against the planted factors: (0\.99\d+|1\.0+)",
        r"peak resident memory: \d+ MB for a \d+ MB store",
    ],
    "harmonic_retrieval.py": [
        r"CPD: \d+ iterations, relative error \d+\.\d+ % \(noise level \d+\.\d+ %\)",
        r"largest pole error: \d\.\de-0[3-9]",
    ],
    "bss.py": [
        r"cumulant CPD: \d+ iterations, relative error \d+\.\d+ %",
        r"(?s)cumulant CPD.*?Amari index of the estimated mixing matrix: 0\.0[0-4]\d*",
        r"(?s)SOBI.*?Amari index of the estimated mixing matrix: 0\.0[0-4]\d*",
        r"(?m)^Laplacian noise +0\.9\d+ +0\.9\d+$",
    ],
    "counts_and_covariates.py": [
        r"poisson loss on the counts: FMS 0\.9\d+",
        r"gaussian loss on the counts: FMS 0\.\d+",
    ],
    "doa_ula.py": [
        r"tensor \(7, 100, 4\) \(sensors x snapshots x subarrays\), complex128",
        r"Vandermonde-structured CPD: \d+ iterations, relative error \d+\.\d+ %",
        r"generators z: complex, \|z\| = 1\.000, 1\.000, 1\.000",
        r"largest angle error: 0\.0\d+ degrees",
    ],
    "compress_onnx.py": [
        r"numpy forward vs onnxruntime: largest difference \d\.\de-0[5-9]",
        r"at 30% of the parameters \(\d+/17226\): accuracy svd 0\.9\d+, data-aware 0\.9\d+, "
        r"data-aware \+ refit 0\.9\d+",
        r"compressed ONNX: 7 nodes \(Gemm, Relu\)",
        r"onnxruntime: accuracy 0\.9\d+; batch of 256, 1 thread: ",
        r"figure written to",
    ],
    "digits_binomial.py": [
        r"digits \(1797, 8, 8\): pixel counts 0\.\.16 as frequencies, \d+ of 115008 pixels hidden",
        r"binomial: held-out deviance per pixel \d+\.\d+, RMSE \d+\.\d+ counts",
        r"least squares: held-out deviance per pixel \d+\.\d+, RMSE \d+\.\d+ counts",
    ],
    "compress_network.py": [
        r"data-aware: \d+/\d+ parameters, accuracy 0\.9\d+ -> 0\.9\d+",
        r"(?m)^fc1 +svd",
        r"figure written to",
    ],
}


def _relerrs_below_one(stdout: str) -> None:
    for value in re.findall(r"relative errors? [^\n]*?(\d+\.\d+) ?%", stdout):
        assert 0.0 < float(value) < 100.0


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(REPORTS))
def test_example_runs_and_reports(script: str, example_runs: ExampleRuns) -> None:
    png = EXAMPLES / script.replace(".py", ".png")
    run = example_runs.run(script)
    proc, start = run.proc, run.start
    assert proc.returncode == 0, f"{script} failed:\n{proc.stderr[-3000:]}"
    for pattern in REPORTS[script]:
        assert re.search(pattern, proc.stdout), (
            f"{script}: no line matching {pattern!r} in its report:\n{proc.stdout}")
    _relerrs_below_one(proc.stdout)
    assert f"figure written to {png}" in proc.stdout
    assert png.is_file() and png.stat().st_mtime >= start - 1.0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not run.left, f"the script wrote into the working directory: {run.left}"
