"""Status rows: cluster and job records as the plain rows ``status`` shows and returns.

Data only (no rendering): ``skystate.status_view`` draws them for people, the SDK's
``status`` and ``apply --wait`` read them. Reads the atomically written state file
directly (no lock, no TinyDB).
"""

from __future__ import annotations

from typing import Any

from skystate.reconcile.health import job_status_fields, status_fields
from skystate.reconcile.store import group_nodes, read_snapshot

__all__ = ["cluster_rows", "resources_str"]

Record = dict[str, Any]


def cluster_rows(names: list[str] | None = None, unknown: dict[str, str] | None = None,
                 live: bool = True) -> tuple[list[Record], list[Record]]:
    """Cluster and job rows from the records; ``unknown`` clusters read ``UNKNOWN``."""
    tables = read_snapshot()
    clusters = sorted(tables.get("clusters", []), key=lambda c: c["name"])
    if names:
        clusters = [c for c in clusters if c["name"] in names]
    jobs = [j for j in tables.get("jobs", []) if any(c["name"] == j["cluster"] for c in clusters)]
    nodes = group_nodes(tables.get("nodes", []))
    unknown = unknown or {}
    rows = []
    for cluster in clusters:
        row = {**_cluster_row(cluster, nodes.get(cluster["name"], [])), **status_fields(cluster)}
        if cluster["name"] in unknown:  # the record may be stale: never show it as the truth
            row.update(status="UNKNOWN", recorded_status=cluster.get("status"),
                       status_error=unknown[cluster["name"]])
        rows.append(row)
    return rows, _job_rows(clusters, jobs, nodes, live=live)


def _cluster_row(record: Record, nodes: list[Record]) -> Record:
    offer = record.get("offer") or {}
    autostop = record.get("autostop")
    return {
        "name": record["name"],
        "status": record.get("status"),
        "vanished_at": record.get("vanished_at"),
        "infra": "/".join(p for p in (offer.get("provider"), offer.get("region"),
                                      offer.get("zone")) if p) or record.get("provider"),
        "resources": resources_str(record),
        "num_nodes": record.get("num_nodes", len(nodes)),
        "autostop": (f"{autostop['idle_minutes']}m" + (" (down)" if autostop["down"] else ""))
        if autostop else "-",
        "owner": record.get("owner"),
        "managed_by": record.get("managed_by"),
        "launched_at": record.get("launched_at"),
        "stopped_by_autostop": bool(record.get("stopped_by_autostop")),
        "last_error": record.get("last_error"),
        "hourly_price": float(offer.get("hourly_price", 0.0)) * int(record.get("num_nodes", 1)),
    }


def resources_str(record: Record) -> str:
    resources = record.get("resources") or {}
    accelerators = resources.get("accelerators") or {}
    inner = ", ".join(f"{k}:{v}" for k, v in accelerators.items()) or (
        f"cpus={resources['cpus']}" if resources.get("cpus") else "CPU")
    return f"{record.get('num_nodes', 1)}x({inner})"


def _job_rows(clusters: list[Record], jobs: list[Record],
              nodes: dict[str, list[Record]], live: bool = True) -> list[Record]:
    """A job's status: live from its agent (``live``, UP clusters), else the last observed."""
    if not jobs:
        return []
    from skystate.providers.registry import Providers
    from skystate.reconcile.refresh import live_job_statuses

    providers = Providers()
    statuses: dict[str, dict[int, str]] = {}
    for cluster in clusters if live else []:
        if cluster.get("status") == "UP" and any(j["cluster"] == cluster["name"] for j in jobs):
            statuses[cluster["name"]] = live_job_statuses(
                cluster, nodes.get(cluster["name"], []), providers)
    by_name = {c["name"]: c for c in clusters}
    rows = []
    for job in sorted(jobs, key=lambda j: (j["cluster"], j["name"])):
        job_id = job.get("job_id")
        status = (statuses.get(job["cluster"], {}).get(int(job_id)) if job_id is not None
                  else None)
        job = {**job, "status": status or job.get("status")}
        rows.append({"cluster": job["cluster"], "name": job["name"], "job_id": job_id,
                     "status": job["status"], "log_path": job.get("log_path"),
                     "submitted_at": job.get("submitted_at"),
                     **job_status_fields(job, by_name.get(job["cluster"]))})
    return rows
