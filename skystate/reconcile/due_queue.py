"""``DueQueue``: the keys a controller loop looks at, each at its due time, one at a time.

The managed-jobs and services controllers share it (skystate/jobs/loop.py,
skystate/serve/loop.py). A key is *due* at a monotonic time. ``take_ready`` hands out the
keys whose time has come and marks them busy, so a key is never stepped twice at once.
``done`` frees a key and requeues it after the delay its step returned (None: not
requeued). A key made due meanwhile (a request changed it) keeps the earlier of the two
times. The loop waits on ``wait``, which an event (``due_now``, ``done``, ``wake``) or the
earliest due time ends, so a stop or new work is never stuck behind a sleep.

The clock is a parameter, so the rules are tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class DueQueue(Generic[K]):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._due: dict[K, float] = {}
        self._busy: set[K] = set()
        self._wake = threading.Event()

    def due_now(self, key: K, *, wake: bool = True) -> None:
        """``key`` is due at once (a new key, or one a request changed)."""
        with self._lock:
            self._due[key] = self._clock()
        if wake:
            self._wake.set()

    def forget(self, key: K) -> None:
        """``key`` is no longer looked at (unless made due again)."""
        with self._lock:
            self._due.pop(key, None)

    def take_ready(self) -> list[K]:
        """The keys due now, marked busy (each is given back with ``done``)."""
        now = self._clock()
        with self._lock:
            ready = [k for k, at in self._due.items() if at <= now and k not in self._busy]
            for key in ready:
                self._busy.add(key)
                del self._due[key]
        return ready

    def next_in(self) -> float | None:
        """Seconds until the next key that is not busy is due (None: none is queued)."""
        now = self._clock()
        with self._lock:
            waits = [at - now for k, at in self._due.items() if k not in self._busy]
        return max(0.0, min(waits)) if waits else None

    def done(self, key: K, requeue_after: float | None) -> None:
        """``key``'s step finished; look at it again after ``requeue_after`` seconds
        (None: only when made due again). An earlier due time set meanwhile is kept."""
        with self._lock:
            self._busy.discard(key)
            if requeue_after is not None:
                at = self._clock() + requeue_after
                self._due[key] = min(self._due.get(key, at), at)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def wait(self, cap: float) -> None:
        """Wait until the next key is due, an event, or ``cap`` seconds (the scan period)."""
        until = self.next_in()
        self._wake.wait(cap if until is None else min(cap, until))
        self._wake.clear()

    def is_due(self, key: K) -> bool:
        with self._lock:
            return key in self._due

    def is_busy(self, key: K) -> bool:
        with self._lock:
            return key in self._busy
