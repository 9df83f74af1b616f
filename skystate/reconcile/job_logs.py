"""Print a job's log from its cluster's agent; the exit code says how the job ended."""

from __future__ import annotations

import time
from typing import TextIO

from skystate.enums import JobStatus
from skystate.exceptions import JobExitCode


def exit_code_of(status: str | None) -> int:
    if status == JobStatus.SUCCEEDED.value:
        return JobExitCode.SUCCEEDED
    if status == JobStatus.CANCELLED.value:
        return JobExitCode.CANCELLED
    if status is None:
        return JobExitCode.NOT_FOUND
    return JobExitCode.FAILED if JobStatus(status).is_terminal() else JobExitCode.NOT_FINISHED


def tail_job_log(cluster: str, job_id: int | None, *, follow: bool, out: TextIO,
                 tail: int = 0) -> int:
    """SkyPilot's ``tail_logs``: 0 if the job succeeded, 100 if it failed."""
    from skystate.reconcile.imperative import up_cluster_agent

    _, agent = up_cluster_agent(cluster)
    if job_id is None:
        jobs = agent.queue()
        if not jobs:
            out.write(f"No jobs on cluster {cluster} yet.\n")
            return JobExitCode.NOT_FOUND
        job_id = max(int(j["job_id"]) for j in jobs)
    elif not agent.queue([job_id]):
        ids = sorted(int(j["job_id"]) for j in agent.queue())
        known = f"its jobs are {_id_ranges(ids)}" if ids else "it has no jobs yet"
        out.write(f"Job {job_id} does not exist on cluster {cluster} ({known}; "
                  f"see `skystate queue {cluster}`).\n")
        return JobExitCode.NOT_FOUND
    offset = 0
    first = True
    while True:
        status = next((str(j["status"]) for j in agent.queue([job_id])), None)
        text = agent.read_log(job_id)
        chunk = text[offset:]
        if first and tail > 0:
            chunk = "".join(chunk.splitlines(keepends=True)[-tail:])
        first = False
        out.write(chunk)
        out.flush()
        offset = len(text)
        if not follow or status is None or JobStatus(status).is_terminal():
            return exit_code_of(status)
        time.sleep(0.2)


def _id_ranges(ids: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``1-3, 7``."""
    ranges: list[list[int]] = []
    for job_id in ids:
        if ranges and job_id == ranges[-1][1] + 1:
            ranges[-1][1] = job_id
        else:
            ranges.append([job_id, job_id])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)
