"""Exceptions raised by sdfusion.

Every error derives from :class:`SdfError`; the ones caused by bad input also derive from
:class:`ValueError` so that generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "DegeneracyWarning",
    "FileFormatError",
    "ModelError",
    "OptionError",
    "SdfError",
    "SdfWarning",
    "TransformError",
]


class SdfError(Exception):
    """Base class of all sdfusion errors."""


class DataError(SdfError, ValueError):
    """A data set cannot be used as given (Inf entries, empty, bad mask or indices...)."""


class ModelError(SdfError, ValueError):
    """A model is inconsistent; the message names the place (term, factor, variable)."""


class TransformError(ModelError):
    """A transform got parameters or inputs it cannot work with."""


class OptionError(ModelError):
    """An unknown or invalid solver option (a model-level error: ``fit`` cannot start)."""


class FileFormatError(SdfError, ValueError):
    """A file is not a readable sdfusion file (truncated, foreign or of a newer format)."""


class SdfWarning(UserWarning):
    """Base class of the warnings sdfusion issues about a fit (also kept in ``Result.warnings``)."""


class DegeneracyWarning(SdfWarning):
    """Components of a CPD cancel each other: congruence near -1 with large norms."""
