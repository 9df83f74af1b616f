"""A request's task secrets: kept out of ``requests.db``, in a side file while it runs.

The request row stores its args with every ``secrets`` value replaced by ``<redacted>``
(so neither the database, its WAL, nor any listing holds them). The values go to
``requests/<request_id>.secrets.json`` (0600, in the owner-only home) and are put back
into the args only when the request is handed to a worker. The file is removed when the
request finishes (any way: success, failure, cancel, the server dying while it ran).

Why a file and not only the server's memory: a request still PENDING when the server
stops must run after a restart with the secrets it was submitted with.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

REDACTED = "<redacted>"
_KEY = "secrets"


def _secret_maps(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[
        str | int, ...], dict[str, Any]]]:
    """Every ``secrets`` mapping in encoded args (``{"__map__": {...}}`` or plain)."""
    found: list[tuple[tuple[str | int, ...], dict[str, Any]]] = []
    if isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_secret_maps(item, (*path, index)))
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == _KEY and isinstance(item, dict):
                inner = item.get("__map__", item)
                if isinstance(inner, dict):
                    found.append(((*path, key), inner))
                    continue
            found.extend(_secret_maps(item, (*path, key)))
    return found


def _replaced(value: Any, path: tuple[str | int, ...], values: dict[str, Any]) -> Any:
    if not path:
        if isinstance(value, dict) and isinstance(value.get("__map__"), dict):
            return {**value, "__map__": values}
        return values
    head, rest = path[0], path[1:]
    if isinstance(value, list) and isinstance(head, int) and head < len(value):
        return [_replaced(v, rest, values) if i == head else v for i, v in enumerate(value)]
    if isinstance(value, dict) and head in value:
        return {k: _replaced(v, rest, values) if k == head else v for k, v in value.items()}
    return value


def redact(args: Any) -> tuple[Any, list[list[Any]]]:
    """(args with secret values redacted, the secrets as [[path, values], ...])."""
    kept: list[list[Any]] = []
    for path, values in _secret_maps(args):
        if values:
            kept.append([list(path), dict(values)])
            args = _replaced(args, path, {k: REDACTED for k in values})
    return args, kept


def restore(args: Any, kept: list[list[Any]]) -> Any:
    for path, values in kept:
        args = _replaced(args, tuple(path), values)
    return args


class SecretFiles:
    """The side files of one server's requests (``<folder>/<id>.secrets.json``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, request_id: str) -> Path:
        return self.folder / f"{request_id}.secrets.json"

    def keep(self, request_id: str, args: Any) -> Any:
        """Write the request's secrets aside (if any); the args to store in its row."""
        stored, kept = redact(args)
        if kept:
            path = self._path(request_id)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(kept, handle)
        return stored

    def restore(self, request_id: str, args: Any) -> Any:
        """Stored args with the request's secrets put back (as stored if none are kept)."""
        try:
            kept = json.loads(self._path(request_id).read_text())
        except (OSError, ValueError):
            return args
        return restore(args, kept)

    def drop(self, request_id: str) -> None:
        with contextlib.suppress(OSError):
            self._path(request_id).unlink()

    def scrub(self, request_id: str, value: Any) -> Any:
        """A request's result or error with any of its secret values masked."""
        try:
            kept = json.loads(self._path(request_id).read_text())
        except (OSError, ValueError):
            return value
        text = json.dumps(value)
        for _, values in kept:
            for secret in values.values():
                if isinstance(secret, str) and secret:
                    text = text.replace(json.dumps(secret)[1:-1], REDACTED)
        return json.loads(text)

    def sweep(self, unfinished: Callable[[str], bool]) -> None:
        """Server start: drop the side files of requests that finished or are gone."""
        for path in self.folder.glob("*.secrets.json"):
            request_id = path.name[: -len(".secrets.json")]
            if not unfinished(request_id):
                self.drop(request_id)
