"""Print a job's log from its cluster's agent; the exit code says how the job ended."""

from __future__ import annotations

import time
from typing import TextIO

from skystate.exceptions import ClusterDoesNotExist, ClusterNotUpError, JobExitCode
from skystate.status import JobStatus


def _exit_code(status: str | None) -> int:
    if status == JobStatus.SUCCEEDED.value:
        return JobExitCode.SUCCEEDED
    if status == JobStatus.CANCELLED.value:
        return JobExitCode.CANCELLED
    if status is None:
        return JobExitCode.NOT_FOUND
    return JobExitCode.FAILED if JobStatus(status).is_terminal() else JobExitCode.NOT_FINISHED


def tail_job_log(cluster: str, job_id: int | None, *, follow: bool, out: TextIO) -> int:
    from skystate.providers.registry import Providers
    from skystate.reconcile.handles import observation_of
    from skystate.reconcile.store import read_snapshot

    tables = read_snapshot()
    record = next((c for c in tables.get("clusters", []) if c["name"] == cluster), None)
    if record is None:
        raise ClusterDoesNotExist(f"cluster {cluster!r} does not exist")
    if record.get("status") != "UP":
        raise ClusterNotUpError(f"cluster {cluster!r} is {record.get('status')}, not UP",
                                cluster_status=record.get("status"))
    nodes = sorted((n for n in tables.get("nodes", []) if n["cluster"] == cluster),
                   key=lambda n: n["rank"])
    observation = observation_of(record, nodes)
    agent = Providers().get(observation.provider).agent(observation)
    jobs = agent.queue()
    if job_id is None:
        if not jobs:
            return JobExitCode.NOT_FOUND
        job_id = max(int(j["job_id"]) for j in jobs)
    offset = 0
    while True:
        status = next((str(j["status"]) for j in agent.queue([job_id])), None)
        text = agent.read_log(job_id)
        out.write(text[offset:])
        out.flush()
        offset = len(text)
        if not follow or status is None or JobStatus(status).is_terminal():
            return _exit_code(status)
        time.sleep(0.2)
