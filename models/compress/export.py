"""Optional export of pieces to PyTorch (torch is imported only when called)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from numpy.typing import DTypeLike

from sdf.errors import ModelError
from sdf.models.compress.layers import Piece

__all__ = ["export_arrays", "pieces_to_torch"]


def export_arrays(pieces: Sequence[Piece], dtype: DTypeLike = "float32"
                  ) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Every piece's ``(weight, bias)`` in ``dtype``: the parameters an export holds.

    Parameters
    ----------
    pieces : sequence of Piece
    dtype : {"float32", "float64"} or numpy dtype, default "float32"
        Precision of the exported network (PyTorch's default is float32).

    Returns
    -------
    list of (ndarray, ndarray or None)

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import Piece, export_arrays
    >>> [(w.dtype, b) for w, b in export_arrays([Piece("linear", np.eye(2))])]
    [(dtype('float32'), None)]
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ModelError(f"dtype: expected float32 or float64, got {dt}")
    return [(p.weight.astype(dt), None if p.bias is None else p.bias.astype(dt))
            for p in pieces]


def pieces_to_torch(pieces: Sequence[Piece], dtype: DTypeLike = "float32") -> Any:
    """Build a ``torch.nn.Sequential`` that runs the pieces, with ``dtype`` parameters.

    Parameters
    ----------
    pieces : sequence of Piece
    dtype : {"float32", "float64"} or numpy dtype, default "float32"
        Precision of the parameters (and so of the inputs the network takes);
        :func:`export_arrays` gives the same arrays without PyTorch, and
        :func:`~sdf.models.compress.run_pieces` on a float32 input runs the same
        float32 arithmetic in numpy.

    Returns
    -------
    torch.nn.Sequential

    Raises
    ------
    ModuleNotFoundError
        When PyTorch is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import Piece, pieces_to_torch
    >>> seq = pieces_to_torch([Piece("linear", np.eye(2))])  # doctest: +SKIP
    """
    arrays = export_arrays(pieces, dtype)
    import torch
    from torch import nn

    torch_dtype = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
    layers = []
    for p, (weight, bias) in zip(pieces, arrays):
        mod: nn.Linear | nn.Conv2d
        if p.kind == "linear":
            mod = nn.Linear(p.in_features, p.out_features, bias=p.bias is not None)
        else:
            mod = nn.Conv2d(p.in_features, p.out_features, p.kernel_size, stride=p.stride,
                            padding=p.padding, dilation=p.dilation, groups=p.groups,
                            bias=p.bias is not None)
        mod = mod.to(dtype=torch_dtype)
        with torch.no_grad():
            mod.weight.copy_(torch.from_numpy(weight))
            if bias is not None and mod.bias is not None:
                mod.bias.copy_(torch.from_numpy(bias))
        layers.append(mod)
    return nn.Sequential(*layers)
