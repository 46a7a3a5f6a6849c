"""Speed of data-aware tensorized linear layers (TT, CP, Tucker), one BLAS thread.

Run as a script (prints the table and writes
benchmarks/results/bench_tensorized_aware.txt).

Each case compresses a weight with a decaying spectrum (random singular vectors, singular
values ``k ** -0.6``) at 30 % of its parameters with calibration inputs ``X = max(N(0.3,
1), 0)`` through :func:`sdf.models.compress.tensorize_linear`, once with the current
alternating least squares and once with the baseline kept below: the former per-core
solve (Cholesky, then two general LU solves with the factor; the normal matrix by one
einsum) and the former sweep (every core solved ``2 d - 1`` times, exact steps). Both run
the same 10 sweeps from the same start in this process. For Tucker the baseline is the
former engine fit (LMLRA weight and response terms, Gauss-Newton) from the same HOOI
start, the new fit the alternating exact block minimisation (10 sweeps); for the large
Tucker rows (the engine fit would take minutes there) the baseline is that same
minimisation with the former input-factor update (its normal matrix from the design matrix
of every calibration row against every output core row). Columns: CPU seconds, their ratio,
and the objective ``w_w ||W_hat - W||^2 + w_r ||X (W_hat - W)^T||^2`` (the fit's own
weights) recomputed from each returned layer, next to the data-free layer's objective and
CPU seconds.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterator, Sequence  # noqa: E402

import numpy as np  # noqa: E402

import sdf.models.compress._fit as _fit  # noqa: E402
import sdf.models.compress._formats as fmt  # noqa: E402
import sdf.models.compress._response_fits as _rf  # noqa: E402
import sdf.models.compress._tucker_als as tals  # noqa: E402
import sdf.models.compress.tensorized as tz  # noqa: E402
from sdf.decomp import lmlra_hooi  # noqa: E402
from sdf.models.compress.result import CompressOptions, FitInfo  # noqa: E402
from sdf.models.compress import tensorize_linear  # noqa: E402

CASES = [("tt", 1024, 512, 100), ("tt", 2048, 512, 100), ("tt", 10, 2048, 64),
         ("cp", 10, 2048, 64), ("tucker", 10, 2048, 64), ("tucker", 1024, 512, 100),
         ("tucker", 2048, 512, 100)]
ENGINE_BASELINE_MAX_OUT = 100  # Tucker rows with more outputs: the former ALS update


# ----------------------------------------------------------------------------- baseline
def old_solve_spd(N: np.ndarray, B: np.ndarray) -> np.ndarray:
    try:
        C = np.linalg.cholesky(N)
        return np.linalg.solve(np.swapaxes(C, -1, -2), np.linalg.solve(C, B))
    except np.linalg.LinAlgError:
        return np.linalg.pinv(N, hermitian=True) @ B


def old_tt_core_update(cores: list[np.ndarray], k: int, WM: np.ndarray, metric: fmt.Metric
                       ) -> np.ndarray:
    a, o, i, b = cores[k].shape
    L, R = fmt._tt_left(cores, k), fmt._tt_right(cores, k)
    Il, Ir = L.shape[1], R.shape[2]
    WM6 = WM.reshape(L.shape[0], o, R.shape[1], Il, i, Ir)
    rhs = np.einsum("yxa,bvz,yovxkz->akbo", L, R, WM6, optimize=True)
    if metric.full is not None:
        PL = np.einsum("yxa,yzc->xazc", L, L, optimize=True)
        PR = np.einsum("byx,dyz->bxdz", R, R, optimize=True)
        M6 = metric.full.reshape(Il, i, Ir, Il, i, Ir)
        N = np.einsum("xazc,bpdq,xkpzlq->akbcld", PL, PR, M6, optimize=True)
        sol = old_solve_spd(N.reshape(a * i * b, -1), rhs.reshape(a * i * b, o))
        return sol.reshape(a, i, b, o).transpose(0, 3, 1, 2)
    assert metric.diag is not None
    PL = np.einsum("yxa,yxc->xac", L, L, optimize=True)
    PR = np.einsum("byx,dyx->xbd", R, R, optimize=True)
    m3 = metric.diag.reshape(Il, i, Ir)
    N = np.einsum("xkp,xac,pbd->kabcd", m3, PL, PR, optimize=True).reshape(i, a * b, a * b)
    sol = old_solve_spd(N, rhs.transpose(1, 0, 2, 3).reshape(i, a * b, o))
    return sol.reshape(i, a, b, o).transpose(1, 3, 0, 2)


def old_tt_als(W: np.ndarray, cores: Sequence[np.ndarray], metric: fmt.Metric, n_out: int,
               sweeps: int, tol: float) -> fmt.ALSResult:
    cores = [np.array(G, dtype=float) for G in cores]
    d = len(cores)
    target = np.array(W, dtype=float)
    f_old = metric.value((fmt.tt_dense(cores) - target)[:n_out])
    order = list(range(d - 1, -1, -1)) + list(range(1, d))
    done = 0
    for done in range(1, sweeps + 1):
        fmt._free_rows(target, fmt.tt_dense(cores), n_out)
        WM = metric.apply(target)
        for pos, k in enumerate(order):
            cores[k] = old_tt_core_update(cores, k, WM, metric)
            step = -1 if pos < d - 1 else 1
            if 0 <= k + step < d and pos < len(order) - 1:
                fmt._move_gauge(cores, k, step)
        f = metric.value((fmt.tt_dense(cores) - target)[:n_out])
        if f_old - f <= tol * max(f_old, 1e-300):
            f_old = min(f, f_old)
            break
        f_old = f
    return fmt.ALSResult(cores, done, f_old)


def old_fit_tucker(W: np.ndarray, Wp: np.ndarray, osz: Sequence[int], isz: Sequence[int],
                   rank: int, calib: _fit.Calibration | None, w_w: float, w_r: float,
                   sweeps: int, opts: CompressOptions) -> tuple[list[np.ndarray], FitInfo]:
    T = Wp.reshape(*osz, *isz)
    res = lmlra_hooi(T, tz._tucker_core(osz, isz, rank), max_iter=opts.max_iter)
    assert calib is not None
    n_in = calib.gram.shape[0]
    calib_root = calib.root()
    root = np.zeros((len(calib_root), int(np.prod(isz))))
    root[:, :n_in] = calib_root
    factors, core, info = _rf.fit_tucker(T, len(osz), root, w_w, w_r, res.factors, res.core,
                                         opts)
    return [*factors, core], info


def old_input_factor_solve(Y: np.ndarray, V: Sequence[np.ndarray], core: np.ndarray, k: int,
                           root: np.ndarray, w_w: float, w_r: float,
                           M: np.ndarray | None) -> np.ndarray:
    isz = [v.shape[0] for v in V]
    i, s = V[k].shape
    Ipre, Ipost = int(np.prod(isz[:k])), int(np.prod(isz[k + 1:]))
    Kt = core.reshape(-1, *[v.shape[1] for v in V])
    for j, Vj in enumerate(V):
        if j != k:
            Kt = np.moveaxis(np.tensordot(Vj, Kt, axes=(1, j + 1)), 0, j + 1)
    r = Kt.shape[0]
    K = Kt.reshape(r, Ipre, s, Ipost)
    Km = K.transpose(0, 1, 3, 2).reshape(-1, s)
    N = w_w * np.kron(np.eye(i), Km.T @ Km)
    Y4 = Y.reshape(r, Ipre, i, Ipost)
    rhs = w_w * np.einsum("rpaq,rpxq->xa", K, Y4, optimize=True).reshape(-1)
    q = root.shape[0]
    R4 = root.reshape(q, Ipre, i, Ipost)
    target = Y @ root.T
    step = max(1, int(4e6 // max(q * i * s, 1)))
    for lo in range(0, r, step):
        J = np.einsum("rpaq,kpxq->rkxa", K[lo:lo + step], R4, optimize=True).reshape(-1, i * s)
        N += w_r * (J.T @ J)
        rhs += w_r * (J.T @ target[lo:lo + step].reshape(-1))
    return old_solve_spd(N, rhs).reshape(i, s)


@contextmanager
def baseline(engine_tucker: bool) -> Iterator[None]:
    """The former solve, sweep and Tucker fit (or Tucker input-factor update) in place of
    the current ones."""
    saved = fmt._solve_spd, fmt.tt_als, tz._fit_tucker, tals._input_factor_solve
    fmt._solve_spd, fmt.tt_als = old_solve_spd, old_tt_als  # type: ignore[assignment]
    if engine_tucker:
        tz._fit_tucker = old_fit_tucker
    else:
        tals._input_factor_solve = old_input_factor_solve
    try:
        yield
    finally:
        fmt._solve_spd, fmt.tt_als, tz._fit_tucker, tals._input_factor_solve = saved


# ----------------------------------------------------------------------------- cases
def problem(out: int, n_in: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    k = min(out, n_in)
    U = np.linalg.qr(rng.standard_normal((out, k)))[0]
    V = np.linalg.qr(rng.standard_normal((n_in, k)))[0]
    W = (U * np.arange(1, k + 1) ** -0.6) @ V.T
    return W, np.maximum(rng.standard_normal((rows, n_in)) + 0.3, 0.0)


def run(format: str, W: np.ndarray, X: np.ndarray | None) -> tuple[float, np.ndarray, int]:
    t0 = time.process_time()
    layer = tensorize_linear(W, format, ratio=0.3, X=X)  # type: ignore[arg-type]
    return time.process_time() - t0, layer.dense(), layer.info.iterations


def main() -> str:
    lines = [__doc__.strip().splitlines()[0], "",
             f"{'case':<22} {'free s':>7} {'free obj':>9} | {'base s':>7} {'base obj':>9} "
             f"| {'new s':>6} {'new obj':>9} {'sweeps':>6} | {'speed-up':>8}"]
    print("\n".join(lines), flush=True)
    for format, out, n_in, rows in CASES:
        W, X = problem(out, n_in, rows)
        w_w, w_r = _fit.term_weights(W, _fit.Calibration.from_rows(X), 0.9)

        def objective(W_hat: np.ndarray) -> float:
            E = W_hat - W
            return float(w_w * np.vdot(E, E) + w_r * np.vdot(X @ E.T, X @ E.T))

        t_free, W_free, _ = run(format, W, None)
        with baseline(out <= ENGINE_BASELINE_MAX_OUT):
            t_base, W_base, _ = run(format, W, X)
        t_new, W_new, sweeps = run(format, W, X)
        line = (f"{format} {out}x{n_in}, {rows} rows".ljust(22)
                + f" {t_free:7.2f} {objective(W_free):9.5f} | {t_base:7.2f} "
                f"{objective(W_base):9.5f} | {t_new:6.2f} {objective(W_new):9.5f} "
                f"{sweeps:6d} | {t_base / t_new:7.1f}x")
        print(line, flush=True)
        lines.append(line)
    text = "\n".join(lines) + "\n"
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "bench_tensorized_aware.txt").write_text(text)
    return text


if __name__ == "__main__":
    main()
