"""``kind: ManagedJob`` documents: planned like a ``Job`` (once per spec hash), applied as
managed-job records the jobs controller runs.

- No record of the document (owned by this state directory) → ``submit-job``, shown with
  the offer it would launch on now, its $/hour, spot or on-demand, and its estimated
  cost when ``max_duration`` is given.
- The latest record has the same spec hash → nothing (whatever it ended as).
- A new hash → ``cancel-job`` of the running one (if it still runs), then ``submit-job``.
- Removed from the files → ``cancel-job`` of the running one (``--no-prune``: kept).
- ``protect: true`` (on the document or the running record) refuses both cancels.
Records of other owners (another state directory, the SDK) are never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skystate.providers.base import Offer
from skystate.reconcile.desired_views import MANAGED_BY_STATE, job_task_view
from skystate.reconcile.managed_job_state import create, is_active, request_cancel
from skystate.reconcile.plan import Action, ActionType
from skystate.spec.desired import DesiredState, address, spec_hash
from skystate.spec.documents import ManagedJob, duration_seconds
from skystate.spec.resources import Resources

Record = dict[str, Any]
OfferRanker = Callable[[Resources, int], list[Offer]]
KIND = "ManagedJob"


def managed_job_view(doc: ManagedJob, owner: str) -> Record:
    task = job_task_view(doc)
    task.pop("max_duration", None)
    task.pop("protect", None)
    limit = duration_seconds(doc.max_duration) if doc.max_duration is not None else None
    return {"name": doc.name, "owner": owner, "managed_by": MANAGED_BY_STATE, "task": task,
            "num_nodes": doc.num_nodes or 1, "max_duration_seconds": limit,
            "protect": doc.protect,
            "spec_hash": spec_hash({"task": task, "max_duration_seconds": limit})}


def _resources(task: Record) -> Resources:
    from skystate.reconcile.imperative import task_resources
    from skystate.spec.task import Task

    return task_resources(Task.from_yaml_config(task))


def owned_latest(desired: DesiredState, records: list[Record]) -> dict[str, Record]:
    """The latest record of each document name this state directory owns."""
    latest: dict[str, Record] = {}
    for record in sorted(records, key=lambda r: r["job_id"]):
        if record.get("managed_by") == MANAGED_BY_STATE and \
                record.get("owner") == desired.owner and record.get("doc_name"):
            latest[record["doc_name"]] = record
    return latest


def _hourly(record: Record) -> float:
    attempts = record.get("attempts") or []
    return float(attempts[-1].get("hourly_price") or 0.0) if attempts else 0.0


def plan_managed_jobs(desired: DesiredState, records: list[Record], *,
                      rank_offers: OfferRanker, where: Callable[[str], str], prune: bool,
                      errors: list[str], warnings: list[str]) -> list[Action]:
    latest = owned_latest(desired, records)
    actions: list[Action] = []
    for name, doc in desired.managed_jobs.items():
        addr = address(KIND, name)
        if doc.secrets:  # a plan (and its file) must never hold their values
            errors.append(f"{where(addr)}{addr}: secrets are not supported in ManagedJob "
                          "documents yet (the plan would hold their values); use a Job, or "
                          "sky.jobs.launch")
            continue
        after = managed_job_view(doc, desired.owner)
        record = latest.get(name)
        if record is not None and record.get("spec_hash") == after["spec_hash"]:
            protect = bool(record.get("protect")) != doc.protect
            actions.append(Action(
                type=ActionType.UPDATE if protect else ActionType.NOOP, kind=KIND,
                address=addr, name=name, before=record, after=after,
                reason="protect changed in place" if protect else
                f"spec unchanged (job {record['job_id']} {record.get('status')})"))
            continue
        offers = rank_offers(_resources(after["task"]), after["num_nodes"])
        if not offers:
            errors.append(f"{where(addr)}{addr}: no offer satisfies the request")
            continue
        offer = offers[0]
        hourly = offer.hourly_price * after["num_nodes"]
        if after["max_duration_seconds"]:
            after["estimated_cost"] = round(hourly * after["max_duration_seconds"] / 3600, 4)
        depends: list[str] = []
        if record is not None and is_active(record):
            if record.get("protect") or doc.protect:
                errors.append(f"{where(addr)}{addr} is protected (protect: true) and its spec "
                              f"changed, which cancels its running job {record['job_id']}; "
                              "set protect: false to allow it")
                continue
            cancel = Action(type=ActionType.CANCEL_JOB, kind=KIND, address=addr, name=name,
                            before=record, hourly_before=_hourly(record),
                            reason=f"spec changed: cancel its running job "
                                   f"{record['job_id']} first")
            actions.append(cancel)
            depends.append(cancel.id)
        actions.append(Action(
            type=ActionType.SUBMIT_JOB, kind=KIND, address=addr, name=name, before=record,
            after=after, offer=offer.to_dict(), hourly_after=hourly, depends_on=depends,
            reason="spec changed" if record is not None else "not yet launched"))
    for name, record in latest.items():
        if name in desired.managed_jobs or not is_active(record):
            continue
        addr = address(KIND, name)
        if record.get("protect"):
            errors.append(f"{addr} is protected (protect: true) but no longer in the files; "
                          "restore its file, or set protect: false and apply before deleting")
        elif not prune:
            warnings.append(f"{addr} is no longer in the files; kept (--no-prune)")
        else:
            actions.append(Action(type=ActionType.CANCEL_JOB, kind=KIND, address=addr,
                                  name=name, before=record, hourly_before=_hourly(record),
                                  reason=f"removed from files: cancel job {record['job_id']}"))
    return actions


# --- the executor's side ---------------------------------------------------------------


def apply_managed_job(ctx: Any, action: Action) -> str:
    """``submit-job``: a new record the controller launches; ``cancel-job``: ask it."""
    from skystate.reconcile.users import current_user

    if action.type is ActionType.UPDATE:
        job_id = int((action.before or {})["job_id"])
        with ctx.store.transaction():
            record = ctx.store.managed_job(job_id)
            if record is not None:
                ctx.store.put_managed_job({**record,
                                           "protect": (action.after or {}).get("protect")})
        return f"job {job_id}: protect set to {(action.after or {}).get('protect')}"
    if action.type is ActionType.CANCEL_JOB:
        job_id = int((action.before or {})["job_id"])
        asked = request_cancel(ctx.store, [job_id], action.reason)
        return f"cancel of job {job_id} requested" if asked else f"job {job_id} already ended"
    after = dict(action.after or {})
    job = create(ctx.store, after["task"], after["name"], current_user(),
                 managed_by=MANAGED_BY_STATE, owner=after["owner"], doc_name=after["name"],
                 spec_hash=after["spec_hash"], protect=after.get("protect", False),
                 max_duration_seconds=after.get("max_duration_seconds"))
    return f"managed job {job['job_id']} submitted"
