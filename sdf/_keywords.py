"""Messages for unknown keyword arguments: where, what, the closest known name."""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = ["parameters_of", "takes_any_keyword", "unknown_keywords"]


def takes_any_keyword(function: Callable[..., Any]) -> bool:
    """Whether ``function`` has a ``**kwargs`` parameter."""
    return any(p.kind is inspect.Parameter.VAR_KEYWORD
               for p in inspect.signature(function).parameters.values())


def parameters_of(function: Callable[..., Any]) -> list[str]:
    """The named parameters of ``function`` (not ``*args`` / ``**kwargs``), in order."""
    try:
        return list(_parameter_names(function))
    except TypeError:  # an unhashable callable: not cached
        return list(_parameter_names.__wrapped__(function))


@functools.lru_cache(maxsize=1024)
def _parameter_names(function: Callable[..., Any]) -> tuple[str, ...]:
    # Cached: every term's construction checks its keywords (inspect.signature is slow).
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY,
             inspect.Parameter.POSITIONAL_ONLY)
    return tuple(p.name for p in inspect.signature(function).parameters.values()
                 if p.kind in kinds and p.name != "self")


def unknown_keywords(where: str, unknown: Iterable[str],
                     groups: Mapping[str, Sequence[str]], noun: str = "option") -> str:
    """``"<where>: unknown option(s) 'x' (did you mean 'y'?); known: <groups>"``.

    ``groups`` maps a description (``"cpd's parameters"``) to the names it offers; the
    suggestion is the closest name over all groups (:func:`difflib.get_close_matches`).
    """
    names = sorted(unknown)
    candidates = [name for group in groups.values() for name in group]
    hints = []
    for name in names:
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        if close:
            hints.append(f"{name!r} -> {close[0]!r}" if len(names) > 1 else repr(close[0]))
    hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
    known = " and ".join(f"{label} ({', '.join(group)})" for label, group in groups.items()
                         if group)
    return f"{where}: unknown {noun}(s) {', '.join(map(repr, names))}{hint}; known: {known}"
