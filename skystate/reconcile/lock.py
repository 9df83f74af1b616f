"""The state lock: one writer at a time, and a clear message naming the holder.

One mechanism: an exclusive ``flock`` on ``SKYSTATE_HOME/state.lock``. The kernel drops it
when its holder dies (however it dies, ``kill -9`` included), so a dead holder never blocks
anyone and no process ever has to delete a lock it cannot prove dead — which is what lets
two writers in with lock files that are "broken" by age. The lock guards the one state
file, so it covers applies of every directory (and imperative calls) on this home.

``state.lock.holder.json`` says who holds it: pid, host, command, request id (the API
server passes the request being run), and since when. It is written after the lock is
taken and removed before it is released; one that is still there when the lock is free
was left by a holder that died, and the next holder reports it and replaces it.

Other hosts: on a local filesystem no other host can hold the lock. With
``SKYSTATE_HOME`` on NFS, Linux maps ``flock`` to NFS byte-range locks, which are leases:
the server drops the lock of a host that stops renewing it (NFSv4 lease time, 90 s by
default), so a dead host's lock is broken after that time, by the server, atomically.
"""

from __future__ import annotations

import contextvars
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from skystate.exceptions import StateLockedError
from skystate.home import state_lock_path

DEFAULT_LOCK_TIMEOUT = 30.0
"""Seconds a writer waits for the lock before failing (``--lock-timeout``)."""

WAIT_NOTICE_AFTER = 1.0
"""A writer that has waited this long says whom it is waiting for (once)."""

_POLL = 0.05

log = logging.getLogger("skystate.lock")

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "skystate_request_id", default=None)
"""The request being run in this context (set by the API server); recorded in the holder."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) the state lock."""

    pid: int
    host: str
    since: float
    command: str
    request_id: str | None = None

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        request = f", request {self.request_id}" if self.request_id else ""
        return (f"pid {self.pid} on {self.host} ({self.command}{request}, since {when}, "
                f"{max(0.0, time.time() - self.since):.0f}s ago)")

    def is_on_this_host(self) -> bool:
        return self.host == socket.gethostname()


def holder_path(lock_path: Path | None = None) -> Path:
    path = lock_path or state_lock_path()
    return path.with_name(path.name + ".holder.json")


def read_holder(lock_path: Path | None = None) -> LockHolder | None:
    """The holder record, or None if there is none (or it is being written)."""
    try:
        data = json.loads(holder_path(lock_path).read_text())
        return LockHolder(pid=int(data["pid"]), host=str(data["host"]),
                          since=float(data["since"]), command=str(data.get("command", "")),
                          request_id=data.get("request_id"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def describe_holder(lock_path: Path | None = None) -> str:
    holder = read_holder(lock_path)
    return holder.describe() if holder else "an unknown process"


def _pid_alive(pid: int) -> bool:
    from skystate.runtime.procs import is_zombie_or_gone

    return pid > 0 and not is_zombie_or_gone(pid)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_for_flock(fd: int, path: Path, timeout: float) -> None:
    started = time.monotonic()
    noticed = False
    while not _try_flock(fd):
        waited = time.monotonic() - started
        if waited >= timeout:
            raise StateLockedError(
                f"the state is locked by {describe_holder(path)}; waited {timeout:g}s "
                f"(--lock-timeout); try again when it has finished")
        if not noticed and waited >= min(WAIT_NOTICE_AFTER, timeout):
            log.warning("waiting up to %gs for the state lock held by %s", timeout,
                        describe_holder(path))
            noticed = True
        time.sleep(min(_POLL, max(0.0, timeout - waited)))


def _report_dead_holder(path: Path) -> None:
    """A holder record left while the lock was free: its writer died holding it."""
    stale = read_holder(path)
    if stale is None or stale.pid == os.getpid():
        return
    if stale.is_on_this_host():
        reason = "still running but no longer holding it" if _pid_alive(stale.pid) \
            else "the process is gone"
    else:
        reason = "its host released it (lease expired or lock dropped)"
    log.warning("took over the state lock from %s: %s", stale.describe(), reason)


def _write_holder(path: Path, purpose: str, request_id: str | None) -> None:
    holder = LockHolder(pid=os.getpid(), host=socket.gethostname(), since=time.time(),
                        command=purpose or " ".join(["skystate", *sys.argv[1:]])[:200],
                        request_id=request_id)
    target = holder_path(path)
    temp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(asdict(holder)))
    os.replace(temp, target)  # readers never see a half-written record


@contextmanager
def state_lock(timeout: float = DEFAULT_LOCK_TIMEOUT, purpose: str = "",
               request_id: str | None = None) -> Iterator[LockHolder | None]:
    """Hold the state lock; wait up to ``timeout`` s, then raise naming the holder.

    ``request_id`` defaults to ``current_request_id`` of the calling context. Not
    re-entrant: a nested ``state_lock`` in the same process waits for itself.
    """
    path = state_lock_path()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _wait_for_flock(fd, path, timeout)
        _report_dead_holder(path)
        _write_holder(path, purpose, request_id or current_request_id.get())
        try:
            yield read_holder(path)
        finally:
            try:
                holder_path(path).unlink()
            except FileNotFoundError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
