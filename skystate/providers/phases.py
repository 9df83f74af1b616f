"""A line per phase of a long wait, in the request's log (the worker's stdout).

``phase(start, done)`` prints ``start...`` now and ``done()`` with the seconds taken
after; a failure prints nothing more (the error is the request's result). On a terminal
``stream_and_get`` shows the phase in progress (a line ending in ``...``) under a
spinner. Used by providers (provisioning, SSH, the runtime starting) and by the SDK
operations (launching, submitting), so it lives below both.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

__all__ = ["phase"]


@contextlib.contextmanager
def phase(start: str, done: Callable[[], str]) -> Iterator[None]:
    print(f"{start}...", flush=True)
    began = time.monotonic()
    yield
    print(f"{done()} ({time.monotonic() - began:.1f}s)", flush=True)
