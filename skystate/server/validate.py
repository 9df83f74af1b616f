"""Reject a request whose arguments do not fit its function, before it is queued."""

from __future__ import annotations

import inspect
from typing import Any


def check_name(name: str) -> str | None:
    """Why no request of this name can be queued, or None."""
    from skystate.server.names import KINDS

    if name not in KINDS:
        return f"unknown request {name!r}; known: {', '.join(sorted(KINDS))}"
    return None


def check_args(name: str, args: dict[str, Any]) -> str | None:
    """Why a request cannot be queued (unknown name, arguments its function does not
    take), or None. ``args`` are already decoded."""
    from skystate.server.names import function_of

    problem = check_name(name)
    if problem:
        return problem
    try:
        inspect.signature(function_of(name)).bind(**args)
    except TypeError as exc:
        return f"{name}: {exc}"
    return None
