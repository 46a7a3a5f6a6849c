"""Benchmarks of layer compression (run as a script; prints ratio tables).

1. CP-conv: weight error of the engine's Gauss-Newton fit (from a GEVD start) against
   TensorLy's ``parafac`` at the same rank (needs the ``bench`` extra; skipped without
   TensorLy).
2. Data-aware against plain truncated SVD: held-out output error at 50 % of the parameters
   on the trained digits MLP.
3. Data-aware Tucker-2 (HOOI start, then the engine): Gauss-Newton against L-BFGS.
4. Time to compress 10 layers of 147k-262k weights to one budget.
"""

import os
import tempfile
import time

import numpy as np

from sdf.models.compress import (CompressOptions, LayerSpec, Piece, compress_conv,
                                 compress_linear, compress_network, nets)


def bench_cp(rng) -> None:
    try:
        import tensorly as tl
        from tensorly.decomposition import parafac
    except ImportError:
        print("CP-conv vs parafac: skipped (tensorly not installed)")
        return
    print(f"{'shape':>18} {'rank':>4} {'GN err':>9} {'parafac err':>11} {'ratio':>6}")
    for shape, rank in [((32, 16, 3, 3), 16), ((64, 32, 3, 3), 24)]:
        W = rng.standard_normal(shape)
        gn = compress_conv(W, "cp", rank=rank, options=CompressOptions(solver="engine",
                                                                      max_iter=300))
        cp = parafac(tl.tensor(W), rank, n_iter_max=300, init="random", random_state=0)
        err = float(np.linalg.norm(tl.cp_to_tensor(cp) - W) / np.linalg.norm(W))
        print(f"{str(shape):>18} {rank:>4} {gn.weight_error:9.4f} {err:11.4f} "
              f"{gn.weight_error / err:6.3f}")


def bench_data_aware() -> None:
    digits = nets.load_digits_split(seed=0)
    cache = os.path.join(tempfile.gettempdir(), "sdfusion-compress-cache")
    mlp = nets.cached_net("mlp-digits-v1", lambda: nets.train_mlp_digits(digits), cache)
    calib, test = mlp.layer_inputs(digits.X_calib), mlp.layer_inputs(digits.X_test)
    print(f"{'layer':6} {'svd err':>8} {'aware err':>9} {'ratio':>6}")
    for name, p in mlp.layers.items():
        a = compress_linear(p.weight, ratio=0.5, bias=p.bias)
        b = compress_linear(p.weight, ratio=0.5, bias=p.bias, X=calib[name], balance=0.99)
        ea, eb = a.output_error(test[name]), b.output_error(test[name])
        print(f"{name:6} {ea:8.4f} {eb:9.4f} {eb / ea:6.3f}")


def bench_tucker2() -> None:
    """Data-aware Tucker-2 on the digits CNN's conv2: the engine's Gauss-Newton and L-BFGS."""
    digits = nets.load_digits_split(seed=0)
    cache = os.path.join(tempfile.gettempdir(), "sdfusion-compress-cache")
    cnn = nets.cached_net("cnn-digits-v1", lambda: nets.train_cnn_digits(digits), cache)
    p = cnn.layers["conv2"]
    X, X_test = cnn.layer_inputs(digits.X_calib)["conv2"], cnn.layer_inputs(digits.X_test)["conv2"]
    geo = dict(stride=p.stride, padding=p.padding, bias=p.bias)
    plain = compress_conv(p.weight, "tucker2", ratio=0.5, **geo).output_error(X_test)
    print(f"{'method':7} {'iters':>5} {'time s':>7} {'calib err':>9} {'held-out/HOOI':>13}")
    for method in ("minf", "nls"):
        t0 = time.perf_counter()
        res = compress_conv(p.weight, "tucker2", ratio=0.5, X=X, balance=0.99,
                            options=CompressOptions(engine_method=method), **geo)
        dt = time.perf_counter() - t0
        print(f"{method:7} {res.info.iterations:5d} {dt:7.2f} {res.calib_output_error:9.4f} "
              f"{res.output_error(X_test) / plain:13.4f}")


def bench_time(rng) -> None:
    specs = {}
    for k in range(10):
        if k % 2:
            specs[f"conv{k}"] = LayerSpec(Piece("conv2d", rng.standard_normal((128, 128, 3, 3)),
                                                padding=1), input_hw=(16, 16))
        else:
            specs[f"fc{k}"] = LayerSpec(Piece("linear", rng.standard_normal((512, 512))))
    t0 = time.perf_counter()
    compress_network(specs, 0.5)
    print(f"10 layers (2.0M weights) to one budget: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    bench_cp(rng)
    bench_data_aware()
    bench_tucker2()
    bench_time(rng)
