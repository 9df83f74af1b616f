"""Build providers from a ``providers:`` config, importing each only when used."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from skystate.exceptions import NotSupportedError
from skystate.providers.base import Offer, OfferQuery, Provider
from skystate.providers.enabled import Enabled, enabled_providers

DEFAULT_PROVIDER = "local"
IMPLEMENTED = ("local", "ssh", "aws", "gcp")


class Providers:
    """The providers of one project (or of ``config.yaml``), constructed lazily."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self._built: dict[str, Provider] = {}
        self._enabled: Enabled | None = None

    def enabled(self) -> Enabled:
        """The providers a request without infra is optimized over (computed once, no I/O
        beyond a few file checks; see providers/enabled.py)."""
        if self._enabled is None:
            self._enabled = enabled_providers(self.config)
        return self._enabled

    def offers(self, name: str, query: OfferQuery) -> list[Offer]:
        """``name``'s offers. A cloud's offers are its catalog rows in its configured regions
        (exactly what its provider's ``offers`` returns), read without building the provider,
        which would import its API and SSH layers: a plan stays fast."""
        if name in ("aws", "gcp") and name not in self._built and not os.environ.get(
                "SKYSTATE_FAULTS"):
            from skystate.providers import catalog

            return catalog.offers(name, query, (self.config.get(name) or {}).get("regions"))
        return self.get(name).offers(query)

    def get(self, name: str) -> Provider:
        provider = self._built.get(name)
        if provider is None:
            provider = self._build(name)
            if os.environ.get("SKYSTATE_FAULTS"):  # tests only: see providers/faults.py
                from skystate.providers.faults import with_faults

                provider = with_faults(provider)
            self._built[name] = provider
        return provider

    def of_record(self, record: Mapping[str, Any]) -> Provider:
        """The provider of a recorded cluster, with the settings it was created with.

        A cluster made from a state directory is later stopped, queried or torn down from
        anywhere (CLI, SDK, status); its record carries its provider's config section so
        those calls do not depend on the caller's ``providers:``.
        """
        name = str(record.get("provider") or DEFAULT_PROVIDER)
        section = record.get("provider_config")
        if section is None or section == (self.config.get(name) or {}):
            return self.get(name)
        key = f"{name}:{json.dumps(section, sort_keys=True)}"
        provider = self._built.get(key)
        if provider is None:
            provider = Providers({name: section}).get(name)
            self._built[key] = provider
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
        if name == "gcp":
            from skystate.providers.gcp import GCPProvider

            return GCPProvider.from_config(section)
        if name == "aws":
            from skystate.providers.aws import AWSProvider

            return AWSProvider(section)
        if name == "ssh":
            from skystate.providers.ssh import SSHProvider

            return SSHProvider(pools=section.get("pools") or {})
        raise NotSupportedError(
            f"provider {name!r} is not available in this version of skystate "
            f"(available: {', '.join(IMPLEMENTED)})"
        )
