"""Warnings that point at the user's line, however deep inside sdf they are issued."""

from __future__ import annotations

import sys
import warnings
from types import FrameType

__all__ = ["warn_user"]


def _stacklevel() -> int:
    """The stacklevel of the first caller outside the package (``sdf`` and its
    subpackages, ``sdf.models`` and ``sdf.viz`` included), counted from the caller of
    :func:`warn_user`."""
    frame: FrameType | None = sys._getframe(2)  # the function that called warn_user
    level = 1
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not (name == "sdf" or name.startswith("sdf.")):
            return level
        frame = frame.f_back
        level += 1
    return level


def warn_user(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the first line outside sdf that led here."""
    warnings.warn(message, category, stacklevel=_stacklevel() + 1)
