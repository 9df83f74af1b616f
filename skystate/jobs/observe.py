"""One look at a managed job's cluster: the provider's answer and the agent's, as Evidence.

An error or a timeout from either is UNKNOWN (``Seen.UNKNOWN``, or UP with no job
status); only a successful provider answer that omits the cluster, or shows it
terminated or stopped, is positive evidence of a preemption.
"""

from __future__ import annotations

from typing import Any

from skystate.jobs.recovery import Evidence
from skystate.jobs.status import Seen
from skystate.providers.base import NodeState
from skystate.providers.registry import Providers


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def observe(record: dict[str, Any] | None, providers: Providers,
            job: dict[str, Any]) -> Evidence:
    """``record``: the job's cluster record as stored now (None: no longer recorded)."""
    name, job_id = job["cluster"], job.get("cluster_job_id")
    if record is None:
        return Evidence(Seen.GONE, detail=f"cluster {name} is no longer recorded")
    try:
        provider = providers.of_record(record)
        found = provider.observe([name])
    except Exception as exc:  # noqa: BLE001 - any failure to observe is unknown
        return Evidence(Seen.UNKNOWN, detail=f"observing {name}: {_err(exc)}")
    observation = next((o for o in found if o.name == name), None)
    if observation is None:
        return Evidence(Seen.GONE, detail=f"{provider.name} no longer lists {name}")
    state = observation.state
    if state is NodeState.TERMINATED:
        return Evidence(Seen.GONE, detail=f"{name} is terminated")
    if state is NodeState.STOPPED:
        return Evidence(Seen.STOPPED, detail=f"{name} is stopped")
    if state is not NodeState.RUNNING:
        return Evidence(Seen.UNKNOWN, detail=f"{name} is {state.value}")
    try:
        rows = provider.agent(observation).queue([int(job_id)], detailed=True)
    except Exception as exc:  # noqa: BLE001 - an agent that does not answer is unknown
        return Evidence(Seen.UP, None, detail=f"the agent of {name}: {_err(exc)}")
    row = next((r for r in rows if int(r["job_id"]) == int(job_id)), None)
    if row is None:
        return Evidence(Seen.UP, None, detail=f"the agent of {name} has no job {job_id}")
    code = row.get("exit_code")
    return Evidence(Seen.UP, str(row["status"]), int(code) if code is not None else None,
                    detail=f"job {job_id} on {name} is {row['status']}")
