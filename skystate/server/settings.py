"""Settings that reach clusters through the API server: they follow the request.

An agent started by a request (``launch``, ``apply``, ``start``) reads its settings from
the environment of the process that starts it: the server's worker. So every request
carries the client's values of ``CLUSTER_SETTINGS`` (``None``: unset in the client) and
the worker runs it with exactly those. The server's own values (``skystate api info``)
are used by what the server does on its own: the watch loop, and requests requeued
after a restart. A client whose values differ from the server's is told so, once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

CLUSTER_SETTINGS = ("SKYSTATE_TIME_SCALE",)
"""Environment variables read by what requests start on clusters (the agents)."""

Settings = dict[str, str | None]
_TOLD: set[str] = set()


def current() -> Settings:
    """This process's values of ``CLUSTER_SETTINGS`` (None: unset)."""
    return {name: os.environ.get(name) for name in CLUSTER_SETTINGS}


def checked(given: Mapping[str, object] | None) -> Settings:
    """A request's settings, validated (ValueError: a name that is not one of ours)."""
    result: Settings = {}
    for name, value in (given or {}).items():
        if name not in CLUSTER_SETTINGS:
            raise ValueError(f"setting {name!r} is not one a request can carry "
                             f"({', '.join(CLUSTER_SETTINGS)})")
        if value is not None and (not isinstance(value, str) or len(value) > 256):
            raise ValueError(f"setting {name!r} must be a string (at most 256 characters)")
        result[name] = value
    return result


@contextmanager
def applied(settings: Mapping[str, str | None]) -> Iterator[None]:
    """Run with the request's settings in ``os.environ``; the worker's own come back."""
    saved = {name: os.environ.get(name) for name in settings}
    try:
        _set(settings)
        yield
    finally:
        _set(saved)


def _set(values: Mapping[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def differences(server: Mapping[str, str | None], client: Mapping[str, str | None]
                ) -> list[str]:
    """``NAME: server X, this shell Y`` for each setting the two see differently."""
    shown = [f"{name}: server {_text(server.get(name))}, this shell {_text(client.get(name))}"
             for name in CLUSTER_SETTINGS if server.get(name) != client.get(name)]
    return shown


def tell_once(where: str, server: Mapping[str, str | None] | None) -> None:
    """A note on stderr (once per server per process) when this shell's values differ."""
    if server is None or where in _TOLD:
        return
    _TOLD.add(where)
    shown = differences(server, current())
    if shown:
        print(f"skystate: note: the API server at {where} runs with other settings "
              f"({'; '.join(shown)}). Your requests carry this shell's values; the server's "
              "own work (watch loop, requests it resumes after a restart) uses its own.",
              file=sys.stderr)


def _text(value: str | None) -> str:
    return "unset" if value is None else f"{value!r}"
