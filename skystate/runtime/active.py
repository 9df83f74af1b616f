"""The head agent's in-memory view of its active jobs, kept in step with the job table.

A scheduling step costs O(what changed), not a rescan of every active job: the view loads
the active jobs once, then reads only what other processes wrote since — rows submitted
after the last one seen, and jobs cancelled since the last sync (index on
``(status, end_at)``) — and only when sqlite's ``data_version`` says another connection
committed. The agent's own transitions update the view directly (``start``, ``finish``).
A full reload every ``RESYNC_SECONDS`` is the safety net for a writer this does not know
about; the conditional transitions in ``jobdb`` keep every step correct meanwhile (a job
cancelled under the agent never moves on).
"""

from __future__ import annotations

import time
from typing import Any

from skystate.enums import JobStatus
from skystate.runtime.jobdb import ACTIVE, STARTED, JobDB
from skystate.runtime.resources import Demand, Usage

RESYNC_SECONDS = 30.0
CLOCK_MARGIN = 5.0  # cancellations are looked up this far before the last sync

Job = dict[str, Any]


def _devices(job: Job) -> dict[int, list[int]]:
    return {int(r): list(ids) for r, ids in (job.get("devices") or {}).items()}


class ActiveJobs:
    """PENDING jobs in submission order, started jobs by id, and what they use."""

    def __init__(self, db: JobDB) -> None:
        self.db = db
        self.pending: dict[int, Job] = {}
        self.started: dict[int, Job] = {}
        self.usage = Usage()
        self._last_id = 0
        self._version: int | None = None
        self._synced_at = 0.0  # wall clock, as end_at is written
        self._reload_due = 0.0  # monotonic

    def sync(self) -> None:
        """Catch up with submits and cancels made by other processes."""
        if time.monotonic() >= self._reload_due:
            self.reload()
            return
        version = self.db.data_version()  # read first: a commit after it shows next time
        if version == self._version:
            return
        self._version = version
        now = time.time()
        for job in self.db.jobs_after(self._last_id):
            self._last_id = max(self._last_id, int(job["job_id"]))
            if job["status"] == JobStatus.PENDING:
                self.pending[int(job["job_id"])] = job
        for job_id in self.db.cancelled_since(self._synced_at - CLOCK_MARGIN):
            self.pending.pop(job_id, None)
            self.finish(job_id)  # the canceller killed its processes
        self._synced_at = now

    def invalidate(self) -> None:
        """Reload at the next sync (after a failed step left the view unsure)."""
        self._reload_due = 0.0

    def reload(self) -> None:
        """Rebuild the view from the table (at start, then every ``RESYNC_SECONDS``)."""
        self._version = self.db.data_version()
        self._synced_at = time.time()
        self._reload_due = time.monotonic() + RESYNC_SECONDS
        self._last_id = self.db.max_id()
        self.pending, self.started = {}, {}
        for job in self.db.jobs(statuses=ACTIVE):
            target = self.started if job["status"] in STARTED else self.pending
            target[int(job["job_id"])] = job
        self.usage = Usage.of_jobs(self.started.values())

    def start(self, job: Job, status: JobStatus, pid: int, devices: dict[int, list[int]]
              ) -> None:
        """A phase was launched and recorded: PENDING → started, or setup → run."""
        job_id = int(job["job_id"])
        if self.pending.pop(job_id, None) is not None or job_id not in self.started:
            self.usage.take(Demand.from_dict(job["demand"]), int(job["num_nodes"]), devices)
        self.started[job_id] = {**job, "status": status, "pid": pid, "devices": devices}

    def drop_pending(self, job_id: int) -> None:
        self.pending.pop(job_id, None)

    def finish(self, job_id: int) -> None:
        """A started job ended (or was cancelled): free what it used."""
        job = self.started.pop(job_id, None)
        if job is not None:
            self.usage.release(Demand.from_dict(job["demand"]), int(job["num_nodes"]),
                               _devices(job))
