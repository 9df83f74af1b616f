"""DesiredState: what a state directory asks for, validated and with references resolved."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skystate.spec.documents import Cluster, Job, ManagedJob, Project, Service


@dataclass(frozen=True)
class Source:
    """Where a document was written, for messages that point at it."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def address(kind: str, name: str, cluster: str | None = None) -> str:
    """The stable key of a resource: ``Cluster/train``, ``Job/train/finetune``."""
    return f"{kind}/{cluster}/{name}" if cluster else f"{kind}/{name}"


# ``json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)``, with one
# encoder built once (plans hash every resource twice or three times).
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def spec_hash(data: Any) -> str:
    """A short content hash of a canonical JSON form (key order and spelling free)."""
    blob = _CANONICAL_JSON.encode(data)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class DesiredState:
    project: Project
    owner: str
    root: Path | None = None
    clusters: dict[str, Cluster] = field(default_factory=dict)
    jobs: dict[tuple[str, str], Job] = field(default_factory=dict)  # (cluster, name)
    managed_jobs: dict[str, ManagedJob] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)  # address -> Source

    def source_of(self, addr: str) -> Source | None:
        return self.sources.get(addr)
