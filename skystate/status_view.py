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


def _sync_health(row: Record) -> tuple[str, str]:
    sync = row["sync_status"]
    health = row["health_status"]
    sync_text = f"[yellow]{sync}[/yellow]" if sync == "OutOfSync" else sync
    return sync_text, f"[{_HEALTH_STYLE.get(health, 'white')}]{health}[/]"


def _status_text(row: Record) -> str:
    if row["status"] is None:
        return "VANISHED"
    return str(row["status"]) + (" (autostop)" if row["stopped_by_autostop"] else "")


def render_tables(clusters: list[Record], jobs: list[Record]) -> Any:
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    if not clusters:
        return "No clusters."
    table = Table(title="Clusters", title_justify="left")
    for column in ("NAME", "STATUS", "SYNC", "HEALTH", "INFRA", "RESOURCES", "AUTOSTOP",
                   "OWNER", "LAUNCHED", "RECONCILED", "$/H"):
        table.add_column(column)
    for row in clusters:
        table.add_row(row["name"], _status_text(row), *_sync_health(row), str(row["infra"]),
                      row["resources"], row["autostop"],
                      f"{row['owner']} ({row['managed_by']})", _ago(row["launched_at"]),
                      _ago(row["last_reconcile_at"]), f"{row['hourly_price']:.2f}")
    parts: list[Any] = [table]
    errors = [f"  {r['name']}: {r['last_error']}" for r in clusters if r["last_error"]]
    errors += [f"  {r['cluster']}/{r['name']}: {r['last_error']}" for r in jobs
               if r["last_error"]]
    if errors:
        parts += ["[red]Last errors:[/red]", escape("\n".join(errors))]
    if jobs:
        job_table = Table(title="Jobs", title_justify="left")
        for column in ("CLUSTER", "NAME", "ID", "STATUS", "SYNC", "HEALTH", "SUBMITTED", "LOG"):
            job_table.add_column(column)
        for row in jobs:
            job_table.add_row(row["cluster"], row["name"], str(row["job_id"] or "-"),
                              str(row["status"]), *_sync_health(row), _ago(row["submitted_at"]),
                              row["log_path"] or "-")
        parts += ["", job_table]
    return Group(*parts) if len(parts) > 1 else table


_CATEGORY_STYLE = {"tracked": "green", "leaked": "yellow", "vanished": "red",
                   "foreign": "dim", "unknown": "red"}


def render_refresh(report: Any) -> Any:
    """A ``RefreshReport`` as a table: what each provider showed and what was done."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    title = "Rebuild from provider tags" if report.rebuild else "Refresh"
    table = Table(title=title, title_justify="left")
    for column in ("CLUSTER", "PROVIDER", "FOUND", "OWNER", "BEFORE", "AFTER", "NODES",
                   "RECORD", "ERROR"):
        table.add_column(column)
    for entry in sorted(report.clusters, key=lambda c: c.name):
        style = _CATEGORY_STYLE.get(entry.category.value, "white")
        table.add_row(entry.name, entry.provider, f"[{style}]{entry.category.value}[/]",
                      str(entry.owner or "-"), str(entry.before or "-"),
                      str(entry.after or "-"), str(entry.nodes), entry.action,
                      escape(entry.error or ""))
    counts: dict[str, int] = {}
    for entry in report.clusters:
        counts[entry.category.value] = counts.get(entry.category.value, 0) + 1
    summary = ", ".join(f"{n} {c}" for c, n in sorted(counts.items())) or "no clusters"
    parts: list[Any] = [table if report.clusters else "No clusters seen or recorded.",
                        f"Summary: {summary}."]
    for provider, error in sorted(report.provider_errors.items()):
        parts.append(f"[red]{escape(provider)}: {escape(error)}[/red] "
                     "(its clusters are unknown: kept as recorded)")
    return Group(*parts)
