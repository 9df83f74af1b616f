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

from skystate.reconcile import managed_job_state as state
from skystate.reconcile.store import Store

Record = dict[str, Any]

PHASE_LAUNCH, PHASE_WATCH, PHASE_RETIRE, PHASE_DONE = (
    state.PHASE_LAUNCH, state.PHASE_WATCH, state.PHASE_RETIRE, state.PHASE_DONE)
jobs_dir = state.jobs_dir
create = state.create  # a new record (shared with apply's ManagedJob documents)


def attempt_log(job_id: int, attempt: int) -> Path:
    return jobs_dir(job_id) / f"attempt-{int(attempt)}.log"


def controller_log(job_id: int) -> Path:
    return jobs_dir(job_id) / "controller.log"


def cluster_name(job_id: int, attempt: int) -> str:
    return f"mj-{int(job_id)}-{int(attempt)}"


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
