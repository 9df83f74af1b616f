"""``skystate status`` (and ``skystate refresh``'s report): records rendered for people.

Reads the atomically written state file directly (no lock, no TinyDB), so it is fast
and safe while an apply runs. Before that, the CLI has the API server look at the UP
clusters whose record may be stale (autostop set, jobs active; see
``reconcile.status_check``) and record what they show; one it could not observe within
its budget is passed in ``unknown`` and shown as ``UNKNOWN``, never as a stale UP. The
rows themselves come from ``reconcile.status_rows``; this module only draws them.
"""

from __future__ import annotations

from typing import Any

from skystate.time_cells import ago

Record = dict[str, Any]


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
               row["resources"], row["sync_status"], row["autostop"], ago(row["launched_at"]),
               f"{row['hourly_price']:.2f}", f"{row['owner']} ({row['managed_by']})",
               ago(row["last_reconcile_at"])] for row in clusters])
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
                   row["health_status"], ago(row["submitted_at"]), row["sync_status"],
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
