"""ActualState: the recorded world, as the planner reads it (frozen snapshot)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from skystate.enums import JobStatus

Record = dict[str, Any]

ACTIVE_JOB_STATUSES = frozenset(
    s.value for s in JobStatus if not s.is_terminal()
)


@dataclass(frozen=True)
class ActualState:
    version: int = 0
    clusters: dict[str, Record] = field(default_factory=dict)
    jobs: dict[tuple[str, str], Record] = field(default_factory=dict)
    services: dict[str, Record] = field(default_factory=dict)  # skystate.serve's records

    @classmethod
    def from_tables(cls, tables: dict[str, list[Record]]) -> ActualState:
        meta = tables.get("meta") or [{}]
        return cls(
            version=int(meta[0].get("version", 0)),
            clusters={c["name"]: c for c in tables.get("clusters", [])},
            jobs={(j["cluster"], j["name"]): j for j in tables.get("jobs", [])},
            services={s["name"]: s for s in tables.get("services", [])},
        )

    @classmethod
    def from_store(cls, store: Any) -> ActualState:
        # The services table comes with skystate.serve (its Store methods); a store
        # without them has no services.
        services = store.services() if hasattr(store, "services") else []
        return cls(
            version=store.version,
            clusters={c["name"]: c for c in store.clusters()},
            jobs={(j["cluster"], j["name"]): j for j in store.jobs()},
            services={s["name"]: s for s in services},
        )


def job_is_active(record: Record) -> bool:
    return record.get("status") in ACTIVE_JOB_STATUSES or record.get("status") is None
