"""A job's secrets on its head node: one owner-only file per job while it is active.

``secrets`` of a submitted job are never written to ``jobs.db`` (nor its WAL): ``submit``
writes them to ``runtime/secrets/<job_id>.json`` (0600) in the same transaction that
queues the job, the agent merges them into the job's environment when it starts each
phase, and the file is removed as soon as the job is finished (the agent checks each
step; ``cancel`` removes it at once). They reach the job's processes only through the
environment of the phase's bash (``/proc/PID/environ`` is owner-only), never its
command line (see ``runners.NodeRunner``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from skystate.enums import JobStatus
from skystate.runtime.jobdb import JobDB
from skystate.runtime.layout import NodePaths, write_private


def write_secrets(paths: NodePaths, job_id: int, secrets: Mapping[str, str]) -> None:
    if secrets:
        data = {str(k): str(v) for k, v in secrets.items()}
        write_private(paths.secrets_file(job_id), json.dumps(data))


def read_secrets(paths: NodePaths, job_id: int) -> dict[str, str]:
    try:
        data = json.loads(paths.secrets_file(job_id).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def drop_secrets(paths: NodePaths, job_id: int) -> None:
    paths.secrets_file(job_id).unlink(missing_ok=True)


def drop_finished_secrets(paths: NodePaths, db: JobDB) -> None:
    """Remove the secrets of every job that is finished (jobs not yet committed stay)."""
    try:
        names = [p.name for p in paths.secrets_dir.iterdir()]
    except OSError:
        return
    ids = [int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit()]
    if not ids:
        return
    for job in db.jobs(job_ids=ids):
        if JobStatus(job["status"]).is_terminal():
            drop_secrets(paths, int(job["job_id"]))
