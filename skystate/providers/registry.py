"""Build providers from a ``providers:`` config, importing each only when used."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from skystate.exceptions import NotSupportedError
from skystate.providers.base import Provider

DEFAULT_PROVIDER = "local"
IMPLEMENTED = ("local", "ssh")


class Providers:
    """The providers of one project (or of ``config.yaml``), constructed lazily."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self._built: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        provider = self._built.get(name)
        if provider is None:
            provider = self._build(name)
            self._built[name] = provider
        return provider

    def _build(self, name: str) -> Provider:
        section = dict(self.config.get(name) or {})
        if name == "local":
            from skystate.providers.local import LocalProvider

            return LocalProvider(
                accelerators=section.get("accelerators") or {},
                cpus_per_node=section.get("cpus"),
                memory_gib_per_node=section.get("memory"),
            )
        if name == "ssh":
            from skystate.providers.ssh import SSHProvider

            return SSHProvider(pools=section.get("pools") or {})
        raise NotSupportedError(
            f"provider {name!r} is not available in this version of skystate "
            f"(available: {', '.join(IMPLEMENTED)})"
        )

    def built(self) -> list[Provider]:
        return list(self._built.values())
