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
from skystate.jobs.pipeline import task_env_id, task_rows, tasks_of
from skystate.jobs.status import ControllerHandle, ManagedJobStatus

Record = dict[str, Any]
FOLLOW_POLL_SECONDS = 0.2


def _store() -> Any:
    from skystate.reconcile.store import Store

    return Store()


def launch(task: Any, name: str | None = None,
           _need_confirmation: bool = False) -> tuple[int, ControllerHandle]:
    """Record the job for the controller; ``(job_id, controller_handle)``. ``task``: one
    task's config, or a list of them (a pipeline: they run one after another)."""
    from skystate.home import home
    from skystate.reconcile.imperative import current_user

    tasks = task if isinstance(task, list) else [task]
    if not tasks:
        raise ValueError("a pipeline needs at least one task")
    for index, config in enumerate(tasks):
        _check_task(config, f"task {index} ({config.get('name') or 'unnamed'}): "
                    if len(tasks) > 1 and isinstance(config, dict) else "")
    job = rec.create(_store(), tasks, name, current_user())
    what = f" ({len(tasks)} tasks)" if len(tasks) > 1 else ""
    rec.note(job["job_id"], f"submitted by {job['user_name']} as {job['job_name']!r}{what}")
    return job["job_id"], ControllerHandle("embedded", str(home()), os.getpid())


def _check_task(task: Any, where: str) -> None:
    from skystate.jobs.recovery import policy_of
    from skystate.reconcile import storage_mounts
    from skystate.reconcile.imperative import task_file_mounts, task_resources
    from skystate.spec.task import Task

    if not isinstance(task, dict):
        raise ValueError(f"{where}expected a task, got {type(task).__name__}")
    try:
        parsed = Task.from_yaml_config(task)  # SpecError (a ValueError) for a bad task
        if parsed.run is None:
            raise ValueError("a managed job needs a run command")
        task_resources(parsed)
        storage_mounts.check(task_file_mounts(parsed))  # staged at each attempt's launch
        policy_of(task)  # ValueError for an unknown job_recovery strategy
    except ValueError as exc:
        if not where:
            raise
        raise ValueError(f"{where}{exc}") from exc


def _cost(job: Record, now: float, task_index: int | None = None) -> float:
    total = 0.0
    for attempt in job.get("attempts") or []:
        start = attempt.get("started_at")
        if start is None or (task_index is not None
                             and int(attempt.get("task_index") or 0) != task_index):
            continue
        end = attempt.get("ended_at") or job.get("end_at") or now
        total += float(attempt.get("hourly_price") or 0.0) * max(0.0, end - start) / 3600
    return round(total, 6)


def _resources(task: Record) -> str:
    from skystate.reconcile.imperative import task_resources
    from skystate.spec.task import Task

    try:
        parsed = Task.from_yaml_config(task)
        return f"{parsed.num_nodes}x{task_resources(parsed).canonical()}"
    except Exception:  # noqa: BLE001 - a bad task is shown, not raised
        return "-"


def queue_records(job: Record, now: float) -> list[Record]:
    """One row per task of the job, as SkyPilot's queue shows a pipeline (a single-task
    job is one row, task_id 0)."""
    rows = []
    tasks = tasks_of(job)
    for index, fields in task_rows(job):
        start, end = fields.get("start_at"), fields.get("end_at")
        current = index == int(job.get("task_index") or 0)
        rows.append({
            "job_id": job["job_id"], "task_id": index, "job_name": job["job_name"],
            "task_name": fields["task_name"], "resources": _resources(tasks[index]),
            "submitted_at": job["submitted_at"], "end_at": end,
            "duration": (end or now) - start if start else 0.0,
            "recovery_count": fields.get("recovery_count", 0),
            "status": ManagedJobStatus(fields["status"]),
            "cluster_resources": fields.get("cluster_resources") or "-",
            "region": fields.get("region") or "-",
            # beyond the seed's keys
            "user_name": job.get("user_name"), "start_at": start,
            "attempt": job.get("attempt") if current else None,
            "cluster": job.get("cluster") if current else None,
            "restarts_on_error": fields.get("restarts_on_error", 0),
            "failure_reason": fields.get("failure_reason")
            or (job.get("controller_error") if current else None),
            "controller_error": job.get("controller_error") if current else None,
            "last_recovery_reason": job.get("last_recovery_reason") if current else None,
            "unknown_since": job.get("unknown_since") if current else None,
            "skypilot_task_id": task_env_id({**job, "task_index": index}),
            "num_tasks": len(tasks), "cost": _cost(job, now, index),
            "attempts": [dict(a) for a in job.get("attempts") or []
                         if int(a.get("task_index") or 0) == index],
        })
    return rows


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
        records.extend(queue_records(job, now))
    return records


def _select(store: Any, name: str | None, job_ids: Sequence[int] | None, all_jobs: bool,
            all_users: bool) -> list[Record]:
    """The jobs a cancel names. Naming another user's job (by ID or name) raises the
    cluster commands' ``ClusterOwnerIdentityMismatchError`` unless ``all_users``."""
    from skystate.reconcile.imperative import current_user

    given = sum(bool(x) for x in (name, job_ids, all_jobs))
    if given > 1 or (given == 0 and not all_users):
        raise ValueError("give exactly one of name, job_ids, or all/all_users")
    user = current_user()
    jobs = store.managed_jobs()
    if job_ids:
        wanted = {int(i) for i in job_ids}
        found = [j for j in jobs if j["job_id"] in wanted]
        missing = wanted - {j["job_id"] for j in found}
        if missing:
            raise ValueError(f"no managed job {', '.join(map(str, sorted(missing)))}")
    elif name:
        found = [j for j in jobs if j["job_name"] == name]
        if not found:
            raise ValueError(f"no managed job named {name!r}")
    else:
        return [j for j in jobs if all_users or j.get("user_name") == user]
    if not all_users:
        _check_owner(found, user)
    return found


def _check_owner(jobs: list[Record], user: str) -> None:
    from skystate.exceptions import ClusterOwnerIdentityMismatchError

    others = [j for j in jobs if j.get("user_name") and j["user_name"] != user]
    if others:
        job = others[0]
        raise ClusterOwnerIdentityMismatchError(
            f"managed job {job['job_id']} ({job['job_name']!r}) is owned by user "
            f"{job['user_name']!r}, not by you ({user!r}); only its owner can cancel it "
            "(or pass all_users=True / --all-users)")


def cancel(name: str | None = None, job_ids: Sequence[int] | None = None,
           all: bool = False, all_users: bool = False) -> list[int]:  # noqa: A002
    """Ask the controller to cancel; the IDs of the unfinished jobs it will cancel."""
    from skystate.reconcile.managed_job_state import request_cancel

    store = _store()
    chosen = _select(store, name, job_ids, all, all_users)
    asked = request_cancel(store, [j["job_id"] for j in chosen])
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
