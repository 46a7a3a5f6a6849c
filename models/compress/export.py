"""Optional export of pieces to PyTorch (torch is imported only when called)."""

from __future__ import annotations

from typing import Any, Sequence

from sdf.models.compress.layers import Piece

__all__ = ["pieces_to_torch"]


def pieces_to_torch(pieces: Sequence[Piece]) -> Any:
    """Build a ``torch.nn.Sequential`` that runs the pieces (float64 parameters).

    Parameters
    ----------
    pieces : sequence of Piece

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
    import torch
    from torch import nn

    layers = []
    for p in pieces:
        if p.kind == "linear":
            mod = nn.Linear(p.in_features, p.out_features, bias=p.bias is not None)
        else:
            mod = nn.Conv2d(p.in_features, p.out_features, p.kernel_size, stride=p.stride,
                            padding=p.padding, dilation=p.dilation, groups=p.groups,
                            bias=p.bias is not None)
        mod = mod.double()
        with torch.no_grad():
            mod.weight.copy_(torch.from_numpy(p.weight.copy()))
            if p.bias is not None:
                mod.bias.copy_(torch.from_numpy(p.bias.copy()))
        layers.append(mod)
    return nn.Sequential(*layers)
