"""Closed-form channel SVD and linear SVD with many calibration rows: the responses
``P Wm^T`` (as convolutions of the maps for a conv layer) against the Gram matrix
``P^T P`` of the rows (formed from the im2col patches for a conv layer).

With fewer outputs ``o`` than values per row ``d`` and more rows ``n`` than ``d``, the
whitened closed form needs only ``Wm G Wm^T``: ``n d o`` multiply-adds through the
responses against ``n d^2`` for the Gram matrix (and, for a convolution, no ``n x d``
patch matrix). "before" withholds the responses route (the calibration formed as before,
``_previous_route``: im2col patches and their Gram matrix), "after" is the default; both
in this process, CPU seconds at 1 BLAS thread, best of ``--repeat`` runs. The errors
must agree to rounding.

One layer has more patches (100352) than ``CompressOptions.max_calib_rows`` (20000):
"after" takes the sample from the maps and the output error over every patch as a
convolution; "before" forms the im2col rows of every patch (460 MB) and samples them.
The table is written to benchmarks/results/bench_compress_responses.txt.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_compress_rows import _timed  # noqa: E402

from sdf.models.compress import (CompressOptions, Piece, _fit, compress_conv,  # noqa: E402
                                 compress_linear, conv, im2col)
from sdf.models.compress._roots import PatchMaps  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "bench_compress_responses.txt"


def _relu_maps(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.maximum(rng.standard_normal(shape) + 0.3, 0.0)


def _cases() -> list[tuple[str, Callable[[], Any]]]:
    """(name, fit) per layer; each weight has a slowly decaying spectrum."""
    rng = np.random.default_rng(0)

    def weight(o: int, d: int) -> np.ndarray:
        U = np.linalg.qr(rng.standard_normal((o, o)))[0]
        V = np.linalg.qr(rng.standard_normal((d, o)))[0]
        return (U * (0.97 ** np.arange(o) + 0.01)) @ V.T

    cases: list[tuple[str, Callable[[], Any]]] = []
    for o, i, k, n, hw, stride in [(128, 128, 7, 16, 28, 1), (64, 192, 7, 16, 28, 1),
                                   (128, 256, 3, 16, 28, 2), (128, 512, 3, 16, 28, 1)]:
        W = weight(o, i * k * k).reshape(o, i, k, k)
        X, b = _relu_maps(rng, (n, i, hw, hw)), rng.standard_normal(o)
        cases.append((f"conv {o}x{i}x{k}x{k} s{stride} {n}x{hw}",
                      lambda W=W, X=X, b=b, k=k, stride=stride: compress_conv(
                          W, "channel_svd", ratio=0.5, X=X, bias=b, stride=stride,
                          padding=k // 2)))
    # more patches than CompressOptions.max_calib_rows: the sample taken from the maps,
    # the output error over every patch as a convolution (no im2col of every patch)
    W = weight(64, 576).reshape(64, 64, 3, 3)
    X, b = _relu_maps(rng, (32, 64, 56, 56)), rng.standard_normal(64)
    for method in ("channel_svd", "weight_svd"):
        cases.append((f"conv 64x64x3x3 s1 32x56 {method}",
                      lambda method=method, W=W, X=X, b=b: compress_conv(
                          W, method, ratio=0.5, X=X, bias=b, padding=1)))
    for o, d, n in [(256, 4096, 8192), (512, 2048, 16384)]:
        W, X, b = weight(o, d), _relu_maps(rng, (n, d)), rng.standard_normal(o)
        cases.append((f"linear {o}x{d} n={n}",
                      lambda W=W, X=X, b=b: compress_linear(W, ratio=0.5, X=X, bias=b)))
    return cases


def _previous_route(X: np.ndarray, orig: Piece, opts: CompressOptions, method: str
                    ) -> tuple[_fit.Calibration, PatchMaps | None]:
    """The calibration before the responses: the channel SVD's from every patch's im2col
    rows and their Gram matrix; the other methods' Gram matrix from the maps at stride 1
    (:func:`conv._maps_calibration`), else from the im2col rows; too many patches sampled
    from every patch's im2col rows (the output error over every patch is then taken from
    the maps either way: one product of the same size as the rows')."""
    calib = None if method == "channel_svd" else conv._maps_calibration(X, orig, opts)
    if calib is not None:
        return calib, None
    rows = im2col(X, orig.kernel_size, orig.stride, orig.padding, orig.dilation)
    calib = _fit.Calibration.from_rows(rows, opts.max_calib_rows, opts.seed,
                                       center=orig.bias is not None)
    every_patch = None if not calib.sampled else PatchMaps.from_maps(
        X, orig.kernel_size, orig.stride, orig.padding, orig.dilation)
    return calib, every_patch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    conv_route, from_rows = conv._conv_calibration, _fit.Calibration.from_rows.__func__

    def withhold() -> None:
        conv._conv_calibration = _previous_route  # type: ignore[assignment]
        _fit.Calibration.from_rows = classmethod(  # type: ignore[method-assign]
            lambda cls, *a, outputs=None, **kw: from_rows(cls, *a, **kw))

    def restore() -> None:
        conv._conv_calibration = conv_route  # type: ignore[assignment]
        _fit.Calibration.from_rows = classmethod(from_rows)  # type: ignore[method-assign]

    lines = [
        "Closed-form SVDs with more calibration rows than values per row, fewer outputs: "
        "responses P Wm^T against the Gram matrix.",
        f"ratio=0.5 with a bias; CPU s at 1 BLAS thread, best of {args.repeat}; before = "
        "through the patches' / rows' Gram matrix, same process.",
        f"{'layer':36s} {'before s':>9s} {'after s':>8s} {'ratio':>6s} "
        f"{'calib err before':>17s} {'calib err after':>16s}",
    ]
    print("\n".join(lines), flush=True)
    with threadpool_limits(1):
        for name, fun in _cases():
            withhold()
            try:
                t_before, before = _timed(fun, args.repeat)
            finally:
                restore()
            t_after, after = _timed(fun, args.repeat)
            lines.append(f"{name:36s} {t_before:9.2f} {t_after:8.2f} {t_after / t_before:6.2f} "
                         f"{before.calib_output_error:17.12f} {after.calib_output_error:16.12f}")
            print(lines[-1], flush=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
