"""Neural network compression as structured data fusion.

A layer's weight is one data set, its response on calibration inputs another, and layers
reading the same input can share factors: each compression is one model on the sdf engine
(numpy in, numpy out). See :func:`compress_linear`, :func:`compress_conv`,
:func:`compress_shared` and :func:`compress_network`; tensorized layers
(:func:`tensorize_linear`), factorized embeddings (:func:`factorize_embedding`) and
low-rank regression heads (:func:`compress_head`); :func:`refit_network` refits a
compressed network's pieces to the original network's outputs.
"""

from sdf.models.compress.budget import (allocate_ranks, layer_cost, max_rank, rank_for_ratio,
                                        rank_for_tol)
from sdf.models.compress.contraction import LowRankHead, compress_head
from sdf.models.compress.conv import CONV_METHODS, compress_conv
from sdf.models.compress.embedding import FactorizedEmbedding, factorize_embedding
from sdf.models.compress.export import export_arrays, pieces_to_torch
from sdf.models.compress.layers import (Piece, conv2d, count_macs, count_params, im2col,
                                        run_pieces)
from sdf.models.compress.linear import closed_form_data_aware, compress_linear, truncated_svd
from sdf.models.compress.network import (LayerSpec, NetworkCompression, SharedCompression,
                                         compress_network, compress_shared)
from sdf.models.compress.onnx_io import onnx_latency, read_onnx, run_onnx, write_onnx
from sdf.models.compress.refit import RefitOptions, RefitResult, RefitStage, refit_network
from sdf.models.compress.result import (CompressedLayer, CompressOptions, FitInfo, RankCurve)
from sdf.models.compress.sequential import Op, SequentialNet, as_sequential
from sdf.models.compress.sklearn_mlp import (compress_sklearn_mlp, sklearn_mlp_forward,
                                              sklearn_mlp_layers)
from sdf.models.compress.tensorized import TensorizedLinear, factor_sizes, tensorize_linear

__all__ = [
    "CONV_METHODS",
    "CompressOptions",
    "CompressedLayer",
    "FactorizedEmbedding",
    "FitInfo",
    "LayerSpec",
    "LowRankHead",
    "NetworkCompression",
    "Op",
    "Piece",
    "RankCurve",
    "RefitOptions",
    "RefitResult",
    "RefitStage",
    "SequentialNet",
    "SharedCompression",
    "TensorizedLinear",
    "allocate_ranks",
    "as_sequential",
    "closed_form_data_aware",
    "compress_conv",
    "compress_head",
    "compress_linear",
    "compress_network",
    "compress_shared",
    "compress_sklearn_mlp",
    "conv2d",
    "count_macs",
    "count_params",
    "export_arrays",
    "factor_sizes",
    "factorize_embedding",
    "im2col",
    "layer_cost",
    "max_rank",
    "onnx_latency",
    "pieces_to_torch",
    "rank_for_ratio",
    "rank_for_tol",
    "read_onnx",
    "refit_network",
    "run_onnx",
    "run_pieces",
    "sklearn_mlp_forward",
    "sklearn_mlp_layers",
    "tensorize_linear",
    "truncated_svd",
    "write_onnx",
]
