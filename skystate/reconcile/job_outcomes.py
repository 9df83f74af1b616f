"""Job records hold the last *observed* status of their run, never a stale submit-time one.

A job record is written at submit (``PENDING``); what happens to the run afterwards is in
the head node's job table. These functions read that table and fold it into the
records, so a finished job keeps its final status (SUCCEEDED, FAILED, ...) after its
cluster stops. They are called wherever the writer (the API server) looks at a cluster:
``status``'s check of autostop clusters, ``refresh``, and a ``stop`` (before and after).

A stopped local or ssh node keeps its job table, and reading it needs no agent, so the
outcome is read even after an autostop; a stopped cloud instance cannot be read, so
there the status seen while it was UP (the last ``status`` before the stop) stays.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from skystate.providers.base import ClusterObservation
from skystate.providers.registry import Providers
from skystate.reconcile.actual import job_is_active
from skystate.reconcile.handles import observation_of
from skystate.reconcile.store import Store

Record = dict[str, Any]


def jobs_to_watch(jobs: Iterable[Record]) -> dict[str, list[Record]]:
    """Job records whose run may have moved on (submitted, not recorded final), by cluster."""
    watched: dict[str, list[Record]] = {}
    for job in jobs:
        if job.get("job_id") is not None and job_is_active(job):
            watched.setdefault(str(job["cluster"]), []).append(job)
    return watched


def read_job_statuses(record: Record, providers: Providers,
                      observation: ClusterObservation | None = None,
                      nodes: list[Record] | None = None) -> dict[int, str]:
    """``{job_id: status}`` from the cluster's job table (raises when it cannot be read)."""
    seen = observation if observation is not None else observation_of(record, nodes or [])
    agent = providers.of_record(record).agent(seen)
    return {int(j["job_id"]): str(j["status"]) for j in agent.queue()}


def record_job_statuses(store: Store, cluster: str, statuses: Mapping[int, str],
                        now: float | None = None) -> list[str]:
    """Write observed statuses into the cluster's job records (inside a transaction).

    Only records whose status changed are written (a no-op look never bumps the state
    version); returns ``name: OLD -> NEW`` for each change.
    """
    now = time.time() if now is None else now
    changed = []
    for job in store.jobs(cluster):
        job_id = job.get("job_id")
        if job_id is None or int(job_id) not in statuses:
            continue
        status = str(statuses[int(job_id)])
        if status == job.get("status"):
            continue
        store.put_job({**job, "status": status, "status_observed_at": now})
        store.add_event(f"Job/{cluster}/{job['name']}", "observe",
                        f"{job.get('status')} -> {status}", f"job {job_id}")
        changed.append(f"{job['name']}: {job.get('status')} -> {status}")
    return changed

