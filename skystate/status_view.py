"""``skystate status`` (and ``skystate refresh``'s report): records rendered for people.

Reads the atomically written state file directly (no lock, no TinyDB), so it is fast
and safe while an apply runs. Before that, the CLI has the API server look at the UP
clusters whose record may be stale (autostop set, jobs active; see
``reconcile.status_check``) and record what they show; one it could not observe within
its budget is passed in ``unknown`` and shown as ``UNKNOWN``, never as a stale UP. A job
shows its last observed status (read live from its agent when ``live``); sync and health
come from ``reconcile.health`` (computed from the records).
"""

from __future__ import annotations

import time
from typing import Any

from skystate.reconcile.health import job_status_fields, status_fields
from skystate.reconcile.store import group_nodes, read_snapshot

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


def _ago(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    seconds = max(0, int(time.time() - timestamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


_HEALTH_STYLE = {"Healthy": "green", "Progressing": "yellow", "Degraded": "red",
                 "Missing": "red"}
_SYNC_STYLE = {"Synced": "green", "OutOfSync": "yellow"}
_STATUS_STYLE = {"UP": "green", "SUCCEEDED": "green", "RUNNING": "green", "INIT": "yellow",
                 "PENDING": "yellow", "SETTING_UP": "yellow", "STOPPED": "yellow",
                 "FAILED": "red", "FAILED_SETUP": "red", "FAILED_DRIVER": "red",
                 "CANCELLED": "dim", "VANISHED": "red", "UNKNOWN": "red"}


def job_status_style() -> Any:
    """How a cluster or job status is coloured on a terminal."""
    from skystate.tables import by_first_word

    return by_first_word(_STATUS_STYLE)


def _status_text(row: Record) -> str:
    if row["status"] is None:
        return "VANISHED"
    return str(row["status"]) + (" (autostop)" if row["stopped_by_autostop"] else "")


def status_listing(clusters: list[Record], jobs: list[Record]) -> list[Any]:
    """``skystate status`` as tables (``skystate.tables``): clusters, errors, jobs."""
    from skystate.tables import Column, Note, Table, by_first_word

    if not clusters:
        return [Note("No clusters.")]
    status = by_first_word(_STATUS_STYLE)
    sync = by_first_word(_SYNC_STYLE)
    health = by_first_word(_HEALTH_STYLE)
    cluster_table = Table(title="Clusters", columns=[
        Column("NAME"), Column("STATUS", style=status), Column("HEALTH", 1, health),
        Column("INFRA", 1), Column("RESOURCES", 2), Column("SYNC", 3, sync),
        Column("AUTOSTOP", 4), Column("LAUNCHED", 4), Column("$/H", 5, justify="right"),
        Column("OWNER", 6), Column("RECONCILED", 7)],
        rows=[[row["name"], _status_text(row), row["health_status"], str(row["infra"]),
               row["resources"], row["sync_status"], row["autostop"], _ago(row["launched_at"]),
               f"{row['hourly_price']:.2f}", f"{row['owner']} ({row['managed_by']})",
               _ago(row["last_reconcile_at"])] for row in clusters])
    parts: list[Any] = [cluster_table]
    errors = [f"  {r['name']}: {r['last_error']}" for r in clusters if r["last_error"]]
    errors += [f"  {r['cluster']}/{r['name']}: {r['last_error']}" for r in jobs
               if r["last_error"]]
    if errors:
        parts.append(Note("Last errors:", style="red", lines=errors))
    if jobs:
        parts += [Note(""), Table(title="Jobs", columns=[
            Column("CLUSTER"), Column("NAME"), Column("ID", justify="right"),
            Column("STATUS", style=status), Column("HEALTH", 2, health),
            Column("SUBMITTED", 1), Column("SYNC", 3, sync), Column("LOG", 4)],
            rows=[[row["cluster"], row["name"], str(row["job_id"] or "-"), str(row["status"]),
                   row["health_status"], _ago(row["submitted_at"]), row["sync_status"],
                   row["log_path"] or "-"] for row in jobs])]
    return parts


_CATEGORY_STYLE = {"tracked": "green", "leaked": "yellow", "vanished": "red",
                   "foreign": "dim", "unknown": "red"}


def refresh_listing(report: Any) -> list[Any]:
    """A ``RefreshReport`` as tables: what each provider showed and what was done."""
    from skystate.tables import Column, Note, Table, by_first_word

    entries = sorted(report.clusters, key=lambda c: c.name)
    parts: list[Any] = [Table(
        title="Rebuild from provider tags" if report.rebuild else "Refresh",
        empty="No clusters seen or recorded.",
        columns=[Column("CLUSTER"), Column("PROVIDER"),
                 Column("FOUND", style=by_first_word(_CATEGORY_STYLE)), Column("RECORD", 1),
                 Column("BEFORE", 2), Column("AFTER", 2), Column("OWNER", 3),
                 Column("NODES", 4, justify="right")],
        rows=[[e.name, e.provider, e.category.value, e.action, str(e.before or "-"),
               str(e.after or "-"), str(e.owner or "-"), str(e.nodes)] for e in entries])]
    errors = [f"  {e.name}: {e.error}" for e in entries if e.error]
    if errors:
        parts.append(Note("Errors:", style="red", lines=errors))
    counts: dict[str, int] = {}
    for entry in report.clusters:
        counts[entry.category.value] = counts.get(entry.category.value, 0) + 1
    summary = ", ".join(f"{n} {c}" for c, n in sorted(counts.items())) or "no clusters"
    parts.append(Note(f"Summary: {summary}."))
    for provider, error in sorted(report.provider_errors.items()):
        parts.append(Note(f"{provider}: {error} (its clusters are unknown: kept as recorded)",
                          style="red"))
    return parts
