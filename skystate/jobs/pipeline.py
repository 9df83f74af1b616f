"""Pipelines: a managed job whose tasks run one after another, each on its own cluster.

SkyPilot's chain DAG (a multi-document task YAML: a header ``{name: ...}``, then the
tasks; or ``sky.Dag`` in code) is one managed job. The record keeps every task's config
(``tasks``), the index of the one running (``task_index``; ``task`` is its config) and
the outcome of each finished task (``task_results``). When a task ends it is recorded;
a success launches the next task (a fresh attempt, counters reset), anything else ends
the job and the later tasks are CANCELLED (they never ran), as SkyPilot shows them.
A single-task job is the one-task case of the same record. Pure functions, no I/O.
"""

from __future__ import annotations

from typing import Any

from skystate.jobs import records as rec
from skystate.jobs.status import ManagedJobStatus as S

Record = dict[str, Any]


def tasks_of(job: Record) -> list[Record]:
    return list(job.get("tasks") or [job.get("task") or {}])


def task_name(task: Record, index: int) -> str:
    return str(task.get("name") or f"task-{index}")


def _result(job: Record, index: int, status: str, now: float | None) -> Record:
    """The row a finished task keeps (what ``jobs queue`` shows for it)."""
    task = tasks_of(job)[index]
    if index != int(job.get("task_index") or 0):  # a later task that never ran
        return {"task_id": index, "task_name": task_name(task, index), "status": status,
                "start_at": None, "end_at": now, "recovery_count": 0,
                "restarts_on_error": 0, "region": None, "cluster_resources": None,
                "failure_reason": "an earlier task of the pipeline did not succeed"
                if status == S.CANCELLED.value and not job.get("cancel_requested_at")
                else None}
    return {"task_id": index, "task_name": task_name(task, index), "status": status,
            "start_at": job.get("start_at"), "end_at": now,
            "recovery_count": job.get("recovery_count", 0),
            "restarts_on_error": job.get("restarts_on_error", 0),
            "region": job.get("region"), "cluster_resources": job.get("cluster_resources"),
            "failure_reason": job.get("failure_reason")}


def finish_task(job: Record, status: str, now: float) -> Record:
    """The fields that end the current task with ``status``: the next task's launch,
    or the end of the job (later tasks CANCELLED when this one did not succeed)."""
    tasks, index = tasks_of(job), int(job.get("task_index") or 0)
    results = [dict(r) for r in job.get("task_results") or [] if r["task_id"] < index]
    results.append(_result(job, index, status, now))
    if status == S.SUCCEEDED.value and index + 1 < len(tasks) \
            and not job.get("cancel_requested_at"):
        return {"phase": rec.PHASE_LAUNCH, "task_index": index + 1, "task": tasks[index + 1],
                "attempt": job["attempt"] + 1, "status": S.PENDING.value,
                "task_results": results, "cluster": None, "cluster_job_id": None,
                "then": None, "end_status": None, "next_attempt_at": None,
                "unknown_since": None, "recovery_count": 0, "restarts_on_error": 0,
                "launch_failures": 0, "start_at": None, "region": None,
                "cluster_resources": None, "avoid_region": None, "failure_reason": None,
                "last_recovery_reason": None}
    later = S.CANCELLED.value
    results += [_result(job, i, later, now) for i in range(index + 1, len(tasks))]
    return {"phase": rec.PHASE_DONE, "status": status, "end_at": now, "cluster": None,
            "task_results": results}


def task_env_id(job: Record) -> str:
    """``SKYPILOT_TASK_ID``: stable across a task's attempts, distinct per pipeline task."""
    if len(tasks_of(job)) == 1:
        return str(job["task_id"])
    return f"{job['task_id']}-{int(job.get('task_index') or 0)}"


def task_rows(job: Record) -> list[tuple[int, Record]]:
    """(task index, the fields that differ per task) for each of the job's tasks: finished
    ones from their results, the current one from the record, later ones PENDING."""
    tasks, index = tasks_of(job), int(job.get("task_index") or 0)
    finished = {r["task_id"]: r for r in job.get("task_results") or []}
    rows = []
    for i, task in enumerate(tasks):
        if i in finished:
            rows.append((i, dict(finished[i])))
        elif i == index:
            rows.append((i, _result(job, i, job["status"], job.get("end_at"))))
        else:
            rows.append((i, {**_result(job, i, S.PENDING.value, None), "failure_reason": None}))
        rows[-1][1]["task_name"] = task_name(task, i)
    return rows
