"""What each ``sky.jobs`` request does on the API server (the seed's names and returns).

``launch`` and ``cancel`` only write records (the controller converges on them);
``queue`` reads them; ``tail_logs`` prints the attempts' logs (copied off each cluster
by the controller) and follows them until the job ends.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from skystate.exceptions import JobExitCode
from skystate.jobs import records as rec
from skystate.jobs.status import ControllerHandle, ManagedJobStatus

Record = dict[str, Any]
FOLLOW_POLL_SECONDS = 0.2


def _store() -> Any:
    from skystate.reconcile.store import Store

    return Store()


def launch(task: Any, name: str | None = None,
           _need_confirmation: bool = False) -> tuple[int, ControllerHandle]:
    """Record the job for the controller; ``(job_id, controller_handle)``."""
    from skystate.home import home
    from skystate.jobs.recovery import policy_of
    from skystate.reconcile import storage_mounts
    from skystate.reconcile.imperative import current_user, task_file_mounts, task_resources
    from skystate.spec.task import Task

    if not isinstance(task, dict):
        raise ValueError(f"expected a task, got {type(task).__name__}")
    parsed = Task.from_yaml_config(task)  # SpecError (a ValueError) for a bad task
    if parsed.run is None:
        raise ValueError("a managed job needs a run command")
    task_resources(parsed)
    storage_mounts.check(task_file_mounts(parsed))  # staged at each attempt's launch
    policy_of(task)  # ValueError for an unknown job_recovery strategy
    job = rec.create(_store(), task, name, current_user())
    rec.note(job["job_id"], f"submitted by {job['user_name']} as {job['job_name']!r}")
    return job["job_id"], ControllerHandle("embedded", str(home()), os.getpid())


def _cost(job: Record, now: float) -> float:
    total = 0.0
    for attempt in job.get("attempts") or []:
        start = attempt.get("started_at")
        if start is None:
            continue
        end = attempt.get("ended_at") or job.get("end_at") or now
        total += float(attempt.get("hourly_price") or 0.0) * max(0.0, end - start) / 3600
    return round(total, 6)


def queue_record(job: Record, now: float) -> Record:
    from skystate.reconcile.imperative import task_resources
    from skystate.spec.task import Task

    try:
        task = Task.from_yaml_config(job["task"])
        resources = f"{task.num_nodes}x{task_resources(task).canonical()}"
    except Exception:  # noqa: BLE001 - a bad task is shown, not raised
        resources = "-"
    start, end = job.get("start_at"), job.get("end_at")
    return {
        "job_id": job["job_id"], "job_name": job["job_name"], "resources": resources,
        "submitted_at": job["submitted_at"], "end_at": end,
        "duration": (end or now) - start if start else 0.0,
        "recovery_count": job.get("recovery_count", 0),
        "status": ManagedJobStatus(job["status"]),
        "cluster_resources": job.get("cluster_resources") or "-",
        "region": job.get("region") or "-",
        # beyond the seed's keys
        "user_name": job.get("user_name"), "start_at": start, "attempt": job.get("attempt"),
        "cluster": job.get("cluster"), "restarts_on_error": job.get("restarts_on_error", 0),
        "failure_reason": job.get("failure_reason") or job.get("controller_error"),
        "controller_error": job.get("controller_error"),
        "last_recovery_reason": job.get("last_recovery_reason"),
        "unknown_since": job.get("unknown_since"), "task_id": job.get("task_id"),
        "cost": _cost(job, now),
        "attempts": [dict(a) for a in job.get("attempts") or []],
    }


def queue(refresh: bool = False, skip_finished: bool = False,
          all_users: bool = False) -> list[Record]:
    """Managed jobs, newest first, with the seed's keys (and attempt, reasons, cost)."""
    from skystate.reconcile.imperative import current_user

    user, now = current_user(), time.time()
    records = []
    for job in reversed(_store().managed_jobs()):
        if not all_users and job.get("user_name") != user:
            continue
        if skip_finished and ManagedJobStatus(job["status"]).is_terminal():
            continue
        records.append(queue_record(job, now))
    return records


def _select(store: Any, name: str | None, job_ids: Sequence[int] | None, all_jobs: bool,
            all_users: bool) -> list[Record]:
    from skystate.reconcile.imperative import current_user

    given = sum(bool(x) for x in (name, job_ids, all_jobs or all_users))
    if given != 1:
        raise ValueError("give exactly one of name, job_ids, or all/all_users")
    user = current_user()
    jobs = store.managed_jobs()
    if job_ids:
        wanted = {int(i) for i in job_ids}
        found = [j for j in jobs if j["job_id"] in wanted]
        missing = wanted - {j["job_id"] for j in found}
        if missing:
            raise ValueError(f"no managed job {', '.join(map(str, sorted(missing)))}")
        return found
    if name:
        found = [j for j in jobs if j["job_name"] == name]
        if not found:
            raise ValueError(f"no managed job named {name!r}")
        return found
    return [j for j in jobs if all_users or j.get("user_name") == user]


def cancel(name: str | None = None, job_ids: Sequence[int] | None = None,
           all: bool = False, all_users: bool = False) -> list[int]:  # noqa: A002
    """Ask the controller to cancel; the IDs of the unfinished jobs it will cancel."""
    store = _store()
    chosen = _select(store, name, job_ids, all, all_users)
    now = time.time()
    asked = []
    with store.transaction():
        for job in chosen:
            fresh = store.managed_job(job["job_id"])
            if fresh is None or ManagedJobStatus(fresh["status"]).is_terminal():
                continue
            if not fresh.get("cancel_requested_at"):
                store.put_managed_job({**fresh, "cancel_requested_at": now})
            asked.append(fresh["job_id"])
    for job_id in asked:
        rec.note(job_id, "cancel requested")
    print(f"Cancelling managed job(s): {', '.join(map(str, asked)) or 'none'}", flush=True)
    return asked


def _resolve(name: str | None, job_id: int | None) -> Record:
    from skystate.reconcile.imperative import current_user

    jobs = _store().managed_jobs()
    if job_id is not None:
        found = [j for j in jobs if j["job_id"] == int(job_id)]
    elif name:
        found = [j for j in jobs if j["job_name"] == name]
    else:
        found = [j for j in jobs if j.get("user_name") == current_user()]
    if not found:
        what = f"job {job_id}" if job_id is not None else f"job {name!r}" if name else "job"
        raise ValueError(f"no managed {what}")
    return found[-1]


def tail_logs(name: str | None = None, job_id: int | None = None, follow: bool = True,
              controller: bool = False, refresh: bool = False,
              attempt: int | None = None, output_stream: TextIO | None = None) -> int:
    """Print the job's log (every attempt, or one), following it until the job ends.

    Exit code (``JobExitCode``): 0 succeeded, 100 failed, 103 cancelled, 101 not
    finished (without ``follow``)."""
    out = output_stream or sys.stdout
    job = _resolve(name, job_id)
    positions: dict[Path, int] = {}
    while True:
        job = _store().managed_job(job["job_id"]) or job
        done = ManagedJobStatus(job["status"]).is_terminal()
        paths = ([rec.controller_log(job["job_id"])] if controller else
                 [rec.attempt_log(job["job_id"], a["attempt"])
                  for a in job.get("attempts") or []
                  if attempt is None or a["attempt"] == attempt])
        for path in paths:
            _print_new(path, positions, out, header=not controller and attempt is None)
        if done or not follow:
            break
        time.sleep(FOLLOW_POLL_SECONDS)
    return int(_exit_code(ManagedJobStatus(job["status"])))


def _print_new(path: Path, positions: dict[Path, int], out: TextIO, header: bool) -> None:
    if path not in positions:
        positions[path] = 0
        if header:
            out.write(f"=== {path.stem} ===\n")
    try:
        with open(path, "rb") as handle:
            handle.seek(positions[path])
            data = handle.read()
    except FileNotFoundError:
        return
    if data:
        positions[path] += len(data)
        out.write(data.decode(errors="replace"))
        out.flush()


def _exit_code(status: ManagedJobStatus) -> JobExitCode:
    if status is ManagedJobStatus.SUCCEEDED:
        return JobExitCode.SUCCEEDED
    if status is ManagedJobStatus.CANCELLED:
        return JobExitCode.CANCELLED
    if status.is_terminal():
        return JobExitCode.FAILED
    return JobExitCode.NOT_FINISHED
