"""``skystate status``: clusters and jobs from the state file, job statuses live.

Reads the atomically written state file directly (no lock, no TinyDB), so it is fast
and safe while an apply runs.
"""

from __future__ import annotations

import time
from typing import Any

from skystate.reconcile.store import group_nodes, read_snapshot

Record = dict[str, Any]


def cluster_rows(names: list[str] | None = None) -> tuple[list[Record], list[Record]]:
    tables = read_snapshot()
    clusters = sorted(tables.get("clusters", []), key=lambda c: c["name"])
    if names:
        clusters = [c for c in clusters if c["name"] in names]
    jobs = [j for j in tables.get("jobs", []) if any(c["name"] == j["cluster"] for c in clusters)]
    nodes = group_nodes(tables.get("nodes", []))
    return [_cluster_row(c, nodes.get(c["name"], [])) for c in clusters], _job_rows(
        clusters, jobs, nodes)


def _cluster_row(record: Record, nodes: list[Record]) -> Record:
    offer = record.get("offer") or {}
    autostop = record.get("autostop")
    return {
        "name": record["name"],
        "status": record.get("status"),
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
              nodes: dict[str, list[Record]]) -> list[Record]:
    from skystate.providers.registry import Providers
    from skystate.reconcile.refresh import live_job_statuses

    providers = Providers()
    live: dict[str, dict[int, str]] = {}
    for cluster in clusters:
        if cluster.get("status") == "UP" and any(j["cluster"] == cluster["name"] for j in jobs):
            live[cluster["name"]] = live_job_statuses(cluster, nodes.get(cluster["name"], []),
                                                      providers)
    rows = []
    for job in sorted(jobs, key=lambda j: (j["cluster"], j["name"])):
        job_id = job.get("job_id")
        status = live.get(job["cluster"], {}).get(int(job_id)) if job_id is not None else None
        rows.append({"cluster": job["cluster"], "name": job["name"], "job_id": job_id,
                     "status": status or job.get("status"), "log_path": job.get("log_path"),
                     "submitted_at": job.get("submitted_at")})
    return rows


def _ago(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    seconds = max(0, int(time.time() - timestamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def render_tables(clusters: list[Record], jobs: list[Record]) -> Any:
    from rich.console import Group
    from rich.table import Table

    if not clusters:
        return "No clusters."
    table = Table(title="Clusters", title_justify="left")
    for column in ("NAME", "STATUS", "INFRA", "RESOURCES", "AUTOSTOP", "OWNER", "LAUNCHED",
                   "$/H"):
        table.add_column(column)
    for row in clusters:
        status = row["status"] + (" (autostop)" if row["stopped_by_autostop"] else "")
        table.add_row(row["name"], status, str(row["infra"]), row["resources"], row["autostop"],
                      f"{row['owner']} ({row['managed_by']})", _ago(row["launched_at"]),
                      f"{row['hourly_price']:.2f}")
    if not jobs:
        return table
    job_table = Table(title="Jobs", title_justify="left")
    for column in ("CLUSTER", "NAME", "ID", "STATUS", "SUBMITTED", "LOG"):
        job_table.add_column(column)
    for row in jobs:
        job_table.add_row(row["cluster"], row["name"], str(row["job_id"] or "-"),
                          str(row["status"]), _ago(row["submitted_at"]), row["log_path"] or "-")
    return Group(table, "", job_table)
