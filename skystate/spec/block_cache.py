"""A memo of validated immutable blocks, keyed by exactly what was written.

A large state directory repeats a few distinct blocks (``resources: {infra: local,
cpus: 1}``) thousands of times. Validating one is pure: the same written data always
gives the same (frozen) model, so each distinct block is validated once and the model is
shared. The key keeps every type apart (``1``, ``1.0``, ``True`` and ``"1"`` are four
keys) and the key order of mappings; anything but plain YAML data (an SDK object such as
``sky.AWS()``) is not memoised. Only successes are kept: a bad block is validated again
each time, so its errors are reported where it is written.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_SCALARS = (int, float, bool, type(None))
_MAPPING = object()  # tags that no written scalar can equal
_LIST = object()


class _NotPlain(Exception):
    """The value holds something other than YAML data: it is not memoised."""


def _freeze(value: Any) -> Hashable:
    kind = type(value)
    if kind is str:
        return value
    if kind is dict:
        return (_MAPPING, *((_freeze(k), _freeze(v)) for k, v in value.items()))
    if kind is list:
        return (_LIST, *(_freeze(v) for v in value))
    if kind in _SCALARS:
        return (kind, value)
    raise _NotPlain


def block_key(value: Any) -> Hashable | None:
    """A hashable key equal only for identically written data, or None (not plain data)."""
    try:
        return _freeze(value)
    except (_NotPlain, RecursionError):
        return None


class BlockCache(Generic[T]):
    """At most ``limit`` validated blocks (emptied when full: the working set of one state
    directory is its few distinct blocks)."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._found: dict[Hashable, T] = {}

    def get(self, key: Hashable | None) -> T | None:
        return None if key is None else self._found.get(key)

    def put(self, key: Hashable | None, value: T) -> T:
        if key is not None:
            if len(self._found) >= self._limit:
                self._found.clear()
            self._found[key] = value
        return value

    def __len__(self) -> int:
        return len(self._found)
