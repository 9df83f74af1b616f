"""The state lock: one writer at a time, and a clear message naming the holder.

``flock`` is released by the kernel when its holder dies, so a dead holder's lock is
broken automatically; the holder file only tells people who holds a live one.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from skystate.exceptions import StateLockedError
from skystate.home import state_lock_path


def _holder_path(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".holder.json")


def describe_holder(lock_path: Path | None = None) -> str:
    path = _holder_path(lock_path or state_lock_path())
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return "an unknown process"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return (f"pid {info.get('pid')} on {info.get('host')} ({info.get('command')}, "
            f"since {since})")


@contextmanager
def state_lock(timeout: float = 30.0, purpose: str = "") -> Iterator[None]:
    from filelock import FileLock, Timeout

    path = state_lock_path()
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise StateLockedError(
            f"the state is locked by {describe_holder(path)}; waited {timeout:g}s"
        ) from None
    holder = _holder_path(path)
    holder.write_text(json.dumps({
        "pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
        "command": purpose or " ".join(["skystate", *sys.argv[1:]])[:200],
    }))
    try:
        yield
    finally:
        try:
            holder.unlink()
        except FileNotFoundError:
            pass
        lock.release()
