"""How times read in every listing (status, jobs queue, serve status): one format, so a
"3m ago" or a "1h05m" means the same thing in each table."""

from __future__ import annotations

import time


def ago(stamp: float | None) -> str:
    """``12s ago``, ``3m ago``, ``2h ago``, ``4d ago``; ``-`` for no time."""
    if not stamp:
        return "-"
    seconds = max(0, int(time.time() - stamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def span(seconds: float | None) -> str:
    """A length of time: ``4m07s`` under an hour, ``1h05m`` from there; ``-`` for none."""
    if seconds is None:
        return "-"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
