"""Managed-job records in the state database, and where each job's logs live.

A record holds everything the controller needs to continue after a restart: its
``phase`` (launch, watch, retire, done), the attempt number and that attempt's cluster,
the counters (``recovery_count``, ``restarts_on_error``), ``unknown_since``,
``next_attempt_at`` (wall clock), the reason of the last failure, and
``cancel_requested_at`` (cancel is desired state: the API writes it, the loop acts).
Writes merge fields onto the record as re-read inside the transaction, so a cancel
written by a request and a controller step never lose each other's fields.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from skystate.home import home
from skystate.jobs.status import ManagedJobStatus
from skystate.reconcile.store import Store

Record = dict[str, Any]

PHASE_LAUNCH = "launch"  # (re)launch attempt ``attempt`` (after ``next_attempt_at``)
PHASE_WATCH = "watch"  # submitted on ``cluster``: observe it, copy its log
PHASE_RETIRE = "retire"  # tear ``cluster`` down, then launch again or end
PHASE_DONE = "done"


def jobs_dir(job_id: int) -> Path:
    return home() / "managed_jobs" / str(int(job_id))


def attempt_log(job_id: int, attempt: int) -> Path:
    return jobs_dir(job_id) / f"attempt-{int(attempt)}.log"


def controller_log(job_id: int) -> Path:
    return jobs_dir(job_id) / "controller.log"


def cluster_name(job_id: int, attempt: int) -> str:
    return f"mj-{int(job_id)}-{int(attempt)}"


def create(store: Store, task: Record | list[Record], name: str | None, user: str) -> Record:
    """Record a new job (PENDING, phase launch); its record with a fresh job_id.
    ``task``: one task's config, or a pipeline's (its tasks run one after another)."""
    tasks = list(task) if isinstance(task, list) else [task]
    task = tasks[0]
    with store.transaction():
        job_id = max((j["job_id"] for j in store.managed_jobs()), default=0) + 1
        now = time.time()
        record: Record = {
            "job_id": job_id, "job_name": name or task.get("name") or f"job-{job_id}",
            "user_name": user, "task": task, "submitted_at": now, "start_at": None,
            "end_at": None, "status": ManagedJobStatus.PENDING.value, "phase": PHASE_LAUNCH,
            "attempt": 1, "cluster": None, "cluster_job_id": None, "recovery_count": 0,
            "restarts_on_error": 0, "launch_failures": 0, "unknown_since": None,
            "next_attempt_at": None, "failure_reason": None, "cancel_requested_at": None,
            "then": None, "end_status": None, "region": None, "cluster_resources": None,
            "avoid_region": None, "attempts": [], "tasks": tasks, "task_index": 0,
            "task_results": [],
            "task_id": f"sky-managed-{time.strftime('%Y-%m-%d-%H-%M-%S')}_"
                       f"{name or task.get('name') or 'job'}_{job_id}",
        }
        store.put_managed_job(record)
    jobs_dir(job_id).mkdir(parents=True, exist_ok=True)
    return record


def update(store: Store, job_id: int, **fields: Any) -> Record:
    """Merge ``fields`` onto the stored record (re-read under the writer lock)."""
    with store.transaction():
        record = store.managed_job(job_id)
        if record is None:
            raise KeyError(f"managed job {job_id} is not recorded")
        record = {**record, **fields}
        store.put_managed_job(record)
    return record


def note(job_id: int, message: str) -> None:
    """One line in the job's controller log: a decision and why."""
    path = controller_log(job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(path, "a") as handle:
        handle.write(f"{stamp} {message}\n")
