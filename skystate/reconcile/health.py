"""Sync and health status per resource, Argo CD style.

**Sync** says whether the resource matches what was asked: ``Synced`` (the last plan had
nothing to do for it, or the last apply of it succeeded), ``OutOfSync`` (a plan has a
change for it, its last apply failed, or an observation contradicts its recorded spec:
vanished, externally stopped with ``power: up``, up with ``power: stopped``, still
provisioning), ``Unknown`` (never compared since it was adopted).

**Health** says how the resource itself is doing: ``Healthy``, ``Progressing``
(provisioning; a job queued or running), ``Degraded`` (its last apply failed; stopped
behind our back; a job failed or was cancelled) or ``Missing`` (recorded but confirmed
gone; a job whose cluster is gone).

Both are computed from records (cheap: ``skystate status`` calls them on every row);
applies record ``sync_status``, ``last_reconcile_at`` and ``last_error`` through
``record_outcomes``. A plan, when there is one, is the exact source of sync.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from skystate.enums import JobStatus

if TYPE_CHECKING:
    from skystate.reconcile.outcomes import ActionOutcome
    from skystate.reconcile.plan import Action, Plan
    from skystate.reconcile.store import Store

Record = dict[str, Any]

MANAGED_BY_SDK = "sdk"  # desired_views' constant; not imported: status must start fast


class SyncStatus(str, enum.Enum):
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    UNKNOWN = "Unknown"


class HealthStatus(str, enum.Enum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    MISSING = "Missing"


STATUS_FIELDS = ("sync_status", "health_status", "last_reconcile_at", "last_error")


# --- clusters ----------------------------------------------------------------------


def cluster_health(record: Mapping[str, Any]) -> HealthStatus:
    status = record.get("status")
    if status is None:
        return HealthStatus.MISSING
    if record.get("last_error"):
        return HealthStatus.DEGRADED
    if status == "INIT":
        return HealthStatus.PROGRESSING
    if _stopped_behind_our_back(record):
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


def cluster_sync(record: Mapping[str, Any], action: Action | None = None) -> SyncStatus:
    if action is not None:
        return SyncStatus.OUT_OF_SYNC if action.is_change else SyncStatus.SYNCED
    status = record.get("status")
    if status in (None, "INIT") or _stopped_behind_our_back(record):
        return SyncStatus.OUT_OF_SYNC
    if record.get("managed_by") != MANAGED_BY_SDK and (
            record.get("power") == "stopped" and status == "UP"):
        return SyncStatus.OUT_OF_SYNC
    recorded = record.get("sync_status")
    if recorded:
        return SyncStatus(recorded)
    return SyncStatus.SYNCED if record.get("managed_by") == MANAGED_BY_SDK else (
        SyncStatus.UNKNOWN)


def _stopped_behind_our_back(record: Mapping[str, Any]) -> bool:
    """Stopped while its files say ``power: up``, and not by its own autostop."""
    return (record.get("managed_by") != MANAGED_BY_SDK and record.get("status") == "STOPPED"
            and record.get("power") == "up" and not record.get("stopped_by_autostop"))


def status_fields(record: Mapping[str, Any], action: Action | None = None) -> Record:
    """The four status fields of a cluster record (what ``annotate`` adds)."""
    return {
        "sync_status": cluster_sync(record, action).value,
        "health_status": cluster_health(record).value,
        "last_reconcile_at": record.get("last_reconcile_at"),
        "last_error": record.get("last_error"),
    }


def annotate(records: Iterable[Mapping[str, Any]], plan: Plan | None = None) -> list[Record]:
    """Cluster records with ``sync_status``, ``health_status``, ``last_reconcile_at`` and
    ``last_error`` added (from ``plan``'s actions when given, else from the records)."""
    actions = {a.address: a for a in plan.actions} if plan is not None else {}
    return [{**r, **status_fields(r, actions.get(f"Cluster/{r['name']}"))}
            for r in records]


# --- jobs --------------------------------------------------------------------------


def job_health(job: Mapping[str, Any], cluster: Mapping[str, Any] | None) -> HealthStatus:
    if cluster is None or cluster.get("status") is None:
        return HealthStatus.MISSING
    if job.get("last_error"):
        return HealthStatus.DEGRADED
    status = job.get("status")
    if status is None or status not in JobStatus.__members__:
        return HealthStatus.PROGRESSING
    if status == JobStatus.SUCCEEDED.value:
        return HealthStatus.HEALTHY
    return HealthStatus.DEGRADED if JobStatus(status).is_terminal() else (
        HealthStatus.PROGRESSING)


def job_status_fields(job: Mapping[str, Any], cluster: Mapping[str, Any] | None,
                      action: Action | None = None) -> Record:
    if action is not None:
        sync = SyncStatus.OUT_OF_SYNC if action.is_change else SyncStatus.SYNCED
    elif cluster is None or cluster.get("status") is None:
        sync = SyncStatus.OUT_OF_SYNC
    else:
        sync = SyncStatus(job.get("sync_status") or SyncStatus.UNKNOWN.value)
    return {
        "sync_status": sync.value,
        "health_status": job_health(job, cluster).value,
        "last_reconcile_at": job.get("last_reconcile_at"),
        "last_error": job.get("last_error"),
    }


# --- recording (inside the writer's transaction) -------------------------------------


def record_outcomes(store: Store, actions: Iterable[Action],
                    outcomes: Iterable[ActionOutcome] = (), now: float | None = None) -> None:
    """Record sync, reconcile time and error of every resource a plan covered.

    A resource the plan left unchanged is written only when its sync status changes, so
    a no-op reconcile does not bump the state version (saved plans stay applicable).
    """
    now = time.time() if now is None else now
    results = {o.action.address: o for o in outcomes}
    for action in actions:
        outcome = results.get(action.address)
        if outcome is None and action.is_change:
            continue  # not applied (another request's plan); nothing to say
        record = _record_of(store, action)
        if record is None:
            continue  # torn down or cancelled: the record is gone
        if outcome is None:
            if record.get("sync_status") == SyncStatus.SYNCED.value:
                continue
            fields: Record = {"sync_status": SyncStatus.SYNCED.value, "last_reconcile_at": now,
                              "last_error": None}
        elif outcome.status == "succeeded":
            fields = {"sync_status": SyncStatus.SYNCED.value, "last_reconcile_at": now,
                      "last_error": None}
        else:
            fields = {"sync_status": SyncStatus.OUT_OF_SYNC.value, "last_reconcile_at": now,
                      "last_error": outcome.message}
        _put(store, action, {**record, **fields})


def _record_of(store: Store, action: Action) -> Record | None:
    if action.kind == "Cluster":
        return store.cluster(action.name)
    if action.kind == "Job" and action.cluster:
        return store.job(action.cluster, action.name)
    return None


def _put(store: Store, action: Action, record: Record) -> None:
    if action.kind == "Cluster":
        store.put_cluster(record)
    else:
        store.put_job(record)
