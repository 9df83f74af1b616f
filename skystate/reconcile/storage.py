"""A TinyDB storage that survives ``kill -9``: memory between flushes, atomic flushes.

TinyDB's own JSONStorage rewrites the file in place (a kill mid-write leaves it torn)
and re-serialises the whole file on every insert (O(n²) for n inserts). This storage
keeps the data in memory in the one writer and writes it only on ``flush()``: to a
temp file in the same folder, fsync, ``os.replace``, fsync of the folder. A reader
therefore always sees either the old file or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from tinydb.storages import Storage


def read_json_file(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return None
    if not raw.strip():
        return None
    return json.loads(raw)


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(json.dumps(data, separators=(",", ":")).encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def sweep_stale_temp_files(path: Path, older_than: float = 60.0) -> None:
    """Temp files of writers killed mid-flush are never read; remove old ones."""
    cutoff = time.time() - older_than
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except FileNotFoundError:
            pass


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class AtomicJSONStorage(Storage):
    """Memory-backed TinyDB storage; ``flush()`` writes it atomically.

    Several processes (the API server's workers) may write the same file: each flush
    replaces the file (a new inode), so ``reload_if_changed`` sees another writer's flush
    by a ``stat`` and re-reads it. Writers serialise through ``Store``'s writer lock.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp = _stamp(self.path)
        self._data: dict[str, dict[str, Any]] | None = read_json_file(self.path)
        self._dirty = False
        self._swept = False

    def reload_if_changed(self) -> bool:
        """Re-read the file if another writer replaced it since we read it."""
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        self._data = read_json_file(self.path)
        self._dirty = False
        return True

    def read(self) -> dict[str, dict[str, Any]] | None:
        return self._data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        self._data = data
        self._dirty = True

    def mark_dirty(self) -> None:
        """The data was changed in place (by the store's keyed tables)."""
        self._dirty = True

    @property
    def dirty(self) -> bool:
        return self._dirty

    def flush(self) -> None:
        if self._dirty and self._data is not None:
            if not self._swept:
                sweep_stale_temp_files(self.path)
                self._swept = True
            write_json_atomic(self.path, self._data)
            self._stamp = _stamp(self.path)
        self._dirty = False

    def discard(self) -> None:
        """Forget unflushed changes (a failed transaction) by re-reading the file."""
        self._stamp = _stamp(self.path)
        self._data = read_json_file(self.path)
        self._dirty = False

    def close(self) -> None:
        """Closing never flushes: only a finished transaction reaches the disk."""
