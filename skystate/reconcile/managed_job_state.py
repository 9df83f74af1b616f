"""Managed-job records as state: how one is made and how a cancel is asked for.

The jobs controller (``skystate.jobs``) owns what a record means while it runs; making
a record and asking for a cancel are plain state writes, shared by the ``sky.jobs``
requests and by apply (``kind: ManagedJob`` documents), so they live here, below both.
A record is active until its ``phase`` is ``done``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from skystate.home import home
from skystate.reconcile.store import Store

Record = dict[str, Any]

PHASE_LAUNCH = "launch"  # (re)launch attempt ``attempt`` (after ``next_attempt_at``)
PHASE_WATCH = "watch"  # submitted on ``cluster``: observe it, copy its log
PHASE_RETIRE = "retire"  # tear ``cluster`` down, then launch again or end
PHASE_DONE = "done"


def jobs_dir(job_id: int) -> Path:
    return home() / "managed_jobs" / str(int(job_id))


def is_active(record: Record) -> bool:
    return record.get("phase") != PHASE_DONE


def create(store: Store, task: Record | list[Record], name: str | None, user: str,
           **extra: Any) -> Record:
    """Record a new job (PENDING, phase launch); its record with a fresh job_id.
    ``task``: one task's config, or a pipeline's (its tasks run one after another);
    ``extra``: more fields (a document's owner, spec hash, ``max_duration_seconds``)."""
    tasks = list(task) if isinstance(task, list) else [task]
    first = tasks[0]
    label = name or first.get("name") or "job"
    with store.transaction():
        job_id = max((j["job_id"] for j in store.managed_jobs()), default=0) + 1
        now = time.time()
        record: Record = {
            "job_id": job_id, "job_name": name or first.get("name") or f"job-{job_id}",
            "user_name": user, "task": first, "submitted_at": now, "start_at": None,
            "end_at": None, "status": "PENDING", "phase": PHASE_LAUNCH,
            "attempt": 1, "cluster": None, "cluster_job_id": None, "recovery_count": 0,
            "restarts_on_error": 0, "launch_failures": 0, "unknown_since": None,
            "next_attempt_at": None, "failure_reason": None, "cancel_requested_at": None,
            "then": None, "end_status": None, "region": None, "cluster_resources": None,
            "avoid_region": None, "attempts": [], "tasks": tasks, "task_index": 0,
            "task_results": [],
            "task_id": f"sky-managed-{time.strftime('%Y-%m-%d-%H-%M-%S')}_{label}_{job_id}",
            **extra,
        }
        store.put_managed_job(record)
    jobs_dir(job_id).mkdir(parents=True, exist_ok=True)
    return record


def request_cancel(store: Store, job_ids: list[int], reason: str = "") -> list[int]:
    """Ask the controller to cancel (a field it converges on); the IDs still active."""
    now = time.time()
    asked = []
    with store.transaction():
        for job_id in job_ids:
            fresh = store.managed_job(job_id)
            if fresh is None or not is_active(fresh):
                continue
            if not fresh.get("cancel_requested_at"):
                store.put_managed_job({**fresh, "cancel_requested_at": now,
                                       "cancel_reason": reason or None})
            asked.append(fresh["job_id"])
    return asked
