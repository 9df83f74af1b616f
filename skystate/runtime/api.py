"""The runtime's Python API: what the CLI front end and the local provider both call.

Every function takes the head node's folder. Writers (submit, cancel) change the job
table directly and then wake the agent with SIGUSR1, so a submit costs one sqlite
transaction and one signal — no round trip through the daemon, no new interpreter.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skystate.enums import JobStatus
from skystate.runtime import autostop
from skystate.runtime.jobdb import ACTIVE, QUEUE_FIELDS, JobDB
from skystate.runtime.layout import NodePaths, job_umask, read_node_config
from skystate.runtime.procs import agent_pid as _agent_pid
from skystate.runtime.procs import kill_groups
from skystate.runtime.resources import Capacity, Demand
from skystate.runtime.runners import phase_wrapper, runner_for, wrapper_argv
from skystate.runtime.secrets import drop_secrets, write_secrets

JOB_KEYS = (
    "name", "run", "setup", "envs", "secrets", "workdir", "num_nodes", "cpus",
    "accelerators", "username", "user_hash", "submission_id",
)  # fmt: skip


def _paths(node_dir: Path | str) -> NodePaths:
    return NodePaths(Path(node_dir).resolve())


def _db(node_dir: Path | str) -> JobDB:
    return JobDB(_paths(node_dir).db)


def agent_pid(node_dir: Path | str) -> int | None:
    """The pid of the node's live agent, or None."""
    paths = _paths(node_dir)
    return _agent_pid(paths.root, paths.pid_file)


def wake(node_dir: Path | str) -> bool:
    """Nudge the agent (SIGUSR1) so it acts now; False if no agent is running."""
    pid = agent_pid(node_dir)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        return False
    return True


def submit(node_dir: Path | str, job: Mapping[str, Any]) -> int:
    """Queue a job (keys: JOB_KEYS); returns its id. Rejects a job that can never fit.

    ``submission_id`` is an idempotency key: submitting it again returns the first id.
    ``secrets`` join ``envs`` in the job's environment but are kept in an owner-only
    file while the job is active, never in the job table (``runtime.secrets``).
    """
    unknown = set(job) - set(JOB_KEYS)
    if unknown:
        raise ValueError(f"unknown job fields: {', '.join(sorted(unknown))}")
    paths = _paths(node_dir)
    config = read_node_config(paths.root)
    num_nodes = int(job.get("num_nodes") or 1)
    demand = Demand.of(job.get("cpus"), job.get("accelerators"))
    Capacity(config.num_nodes, float(config.cpus), config.accelerators).check_fits_ever(
        demand, num_nodes
    )
    username = str(job.get("username") or getpass.getuser())
    db = JobDB(paths.db)
    submission_id = job.get("submission_id") or None
    db.conn.execute("BEGIN IMMEDIATE")
    job_id = None
    try:
        existing = db.by_submission(submission_id) if submission_id else None
        if existing is not None:  # idempotent: a retried submit returns the first job
            db.conn.execute("COMMIT")
            return existing
        job_id = db.insert(
            {
                "job_name": job.get("name"),
                "username": username,
                "user_hash": job.get("user_hash") or hashlib.md5(username.encode()).hexdigest()[:8],
                "submitted_at": time.time(),
                "resources": demand.label(num_nodes),
                "status": JobStatus.PENDING.value,
                "setup": job.get("setup") or None,
                "run": job.get("run") or None,
                "envs": {str(k): str(v) for k, v in (job.get("envs") or {}).items()},
                "workdir": job.get("workdir") or None,
                "num_nodes": num_nodes,
                "demand": demand.to_dict(),
                "submission_id": submission_id,
            }
        )
        db.set_log_path(job_id, str(paths.job_log(job_id)))
        write_secrets(paths, job_id, job.get("secrets") or {})
        if autostop.load(db).wait_for != "none":
            db.touch_activity()
        db.conn.execute("COMMIT")
    except BaseException:
        db.conn.execute("ROLLBACK")
        if job_id is not None:
            drop_secrets(paths, job_id)
        raise
    wake(paths.root)
    return job_id


def queue(
    node_dir: Path | str, job_ids: Sequence[int] | None = None, detailed: bool = False
) -> list[dict[str, Any]]:
    """Job records, newest first, with exactly sky.queue's fields (``detailed``: all)."""
    jobs = _db(node_dir).jobs(job_ids=job_ids)
    jobs.reverse()
    if detailed:
        return jobs
    return [{k: job[k] for k in QUEUE_FIELDS} for job in jobs]


def cancel(
    node_dir: Path | str, job_ids: Sequence[int] | None = None, all_jobs: bool = False
) -> list[int]:
    """Cancel jobs (by id, or every active one) and kill their process groups.

    Returns the ids actually cancelled; finished jobs are left alone. With neither ids
    nor ``all_jobs`` nothing is cancelled. Returns once the processes are gone.
    """
    if job_ids is None and not all_jobs:
        return []
    db = _db(node_dir)
    targets = db.jobs(job_ids=None if all_jobs else job_ids, statuses=ACTIVE)
    cancelled: list[int] = []
    pgids: list[int] = []
    for job in targets:
        job_id = int(job["job_id"])
        if db.transition(job_id, ACTIVE, JobStatus.CANCELLED):
            cancelled.append(job_id)
            drop_secrets(_paths(node_dir), job_id)
            fresh = db.get(job_id)  # the agent may have started it since we read it
            if fresh and fresh["pid"]:
                pgids.append(int(fresh["pid"]))
    kill_groups(pgids)
    wake(node_dir)
    return cancelled


def set_autostop(
    node_dir: Path | str, idle_minutes: float, down: bool = False, wait_for: str = "jobs_and_ssh"
) -> dict[str, Any]:
    """Store the autostop setting the agent enforces; negative minutes cancel it."""
    db = _db(node_dir)
    settings = autostop.store(db, idle_minutes, down, wait_for)
    wake(node_dir)
    return {"idle_minutes": settings.idle_minutes, "down": settings.down,
            "wait_for": settings.wait_for}  # fmt: skip


def status(node_dir: Path | str) -> dict[str, Any]:
    """The node's agent, autostop setting and job counts (for humans and health checks)."""
    paths = _paths(node_dir)
    config = read_node_config(paths.root)
    result: dict[str, Any] = {
        "cluster": config.cluster,
        "rank": config.rank,
        "agent_pid": agent_pid(paths.root),
        "autostopped": None,
    }
    if paths.autostop_marker.exists():
        result["autostopped"] = json.loads(paths.autostop_marker.read_text())
    if config.rank == 0:
        db = JobDB(paths.db)
        counts: dict[str, int] = {}
        for job in db.jobs():
            counts[job["status"].value] = counts.get(job["status"].value, 0) + 1
        result["jobs"] = counts
        result["autostop"] = autostop.load(db).__dict__
    return result


def log_path(node_dir: Path | str, job_id: int) -> Path:
    return _paths(node_dir).job_log(int(job_id))


def read_log(node_dir: Path | str, job_id: int) -> str:
    try:
        return log_path(node_dir, job_id).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def run_on_nodes(
    node_dir: Path | str,
    script: str,
    envs: Mapping[str, str] | None = None,
    workdir: str | None = None,
    log_file: Path | None = None,
) -> int:
    """Run a command on every node of the cluster now (cluster setup); its exit code.

    Output goes to ``log_file`` (default ``logs/setup-<time>.log`` in the head folder).
    """
    paths = _paths(node_dir)
    config = read_node_config(paths.root)
    runner = runner_for(config)
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns()}"
    log_file = log_file or paths.logs / f"setup-{stamp}.log"
    exit_file = paths.exit_dir / f"setup-{stamp}"
    shells = []
    for node in sorted(config.nodes, key=lambda n: n.rank):
        env = {str(k): str(v) for k, v in (envs or {}).items()}
        for prefix in ("SKYPILOT", "SKYSTATE"):
            env[f"{prefix}_NODE_RANK"] = str(node.rank)
            env[f"{prefix}_NODE_IPS"] = "\n".join(config.ips)
            env[f"{prefix}_NUM_NODES"] = str(config.num_nodes)
        shells.append(runner.shell(node, script, env, workdir))
    paths.make_dirs()
    subprocess.run(
        wrapper_argv(phase_wrapper(shells, log_file, exit_file, job_umask()),
                     exit_file.with_name(exit_file.name + ".sh")),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        check=False,
    )
    try:
        code = int(exit_file.read_text().strip())
    except (OSError, ValueError):
        code = 255
    exit_file.unlink(missing_ok=True)
    return code
