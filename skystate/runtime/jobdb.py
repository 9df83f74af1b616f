"""The head node's job table and settings, in sqlite (WAL mode).

sqlite because the agent and any number of short-lived CLI calls (submit, queue, cancel)
touch it concurrently: WAL lets readers run while one writer writes, and
``busy_timeout`` makes writers queue instead of failing. Status changes made by the
agent are *conditional* (``WHERE status = <expected>``) so a concurrent cancel always wins.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from skystate.enums import JobStatus

ACTIVE = (JobStatus.PENDING, JobStatus.SETTING_UP, JobStatus.RUNNING)
STARTED = (JobStatus.SETTING_UP, JobStatus.RUNNING)

# The fields of SkyPilot's ``sky.queue`` records, in its order.
QUEUE_FIELDS = (
    "job_id",
    "job_name",
    "username",
    "user_hash",
    "submitted_at",
    "start_at",
    "end_at",
    "resources",
    "status",
    "log_path",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_name TEXT,
    username TEXT,
    user_hash TEXT,
    submitted_at REAL,
    start_at REAL,
    end_at REAL,
    resources TEXT,
    status TEXT NOT NULL,
    log_path TEXT,
    setup TEXT,
    run TEXT,
    envs TEXT NOT NULL DEFAULT '{}',
    workdir TEXT,
    num_nodes INTEGER NOT NULL DEFAULT 1,
    demand TEXT NOT NULL DEFAULT '{}',
    pid INTEGER,
    exit_code INTEGER,
    devices TEXT NOT NULL DEFAULT '{}',
    submission_id TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_JSON_COLUMNS = ("envs", "demand", "devices")
_connections: dict[tuple[str, int, int], tuple[sqlite3.Connection, int]] = {}


def _inode(db_path: Path) -> int:
    try:
        return db_path.stat().st_ino
    except OSError:
        return -1


def connect(db_path: Path) -> sqlite3.Connection:
    """One cached connection per (db, process, thread): opening costs more than a submit.

    Per thread because sqlite3 connections refuse use from another thread (the
    executor submits from worker threads; ``status`` reads from the main one).

    The cache is checked against the file's inode, so a cluster torn down and created
    again under the same folder gets a fresh connection, not one to the deleted file.
    """
    key = (str(db_path), os.getpid(), threading.get_ident())
    cached = _connections.get(key)
    if cached is not None and cached[1] != _inode(db_path):
        cached[0].close()
        cached = None
    if cached is not None:
        return cached[0]
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(db_path), timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(_SCHEMA)
    _connections[key] = (conn, _inode(db_path))
    return conn


def close_all() -> None:
    """Close cached connections (tests and folder removal)."""
    for key, (conn, _) in list(_connections.items()):
        if key[1] == os.getpid() and key[2] == threading.get_ident():
            conn.close()
            del _connections[key]
        elif key[1] != os.getpid():
            del _connections[key]


def _row(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    for col in _JSON_COLUMNS:
        data[col] = json.loads(data[col] or "{}")
    data["status"] = JobStatus(data["status"])
    return data


class JobDB:
    """Typed access to the job table and the settings of one head node."""

    def __init__(self, db_path: Path) -> None:
        self.conn = connect(db_path)

    def insert(self, fields: Mapping[str, Any]) -> int:
        values = {k: json.dumps(v) if k in _JSON_COLUMNS else v for k, v in fields.items()}
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        cur = self.conn.execute(
            f"INSERT INTO jobs ({cols}) VALUES ({marks})", list(values.values())
        )
        return int(cur.lastrowid or 0)

    def set_log_path(self, job_id: int, log_path: str) -> None:
        self.conn.execute("UPDATE jobs SET log_path = ? WHERE job_id = ?", (log_path, job_id))

    def by_submission(self, submission_id: str) -> int | None:
        """The job already submitted under this idempotency key, if any."""
        row = self.conn.execute(
            "SELECT job_id FROM jobs WHERE submission_id = ?", (submission_id,)
        ).fetchone()
        return int(row[0]) if row else None

    def get(self, job_id: int) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return _row(row) if row else None

    def jobs(
        self, job_ids: Sequence[int] | None = None, statuses: Iterable[JobStatus] | None = None
    ) -> list[dict[str, Any]]:
        """Jobs in submission order, optionally filtered by ids and/or statuses."""
        sql, args = "SELECT * FROM jobs", []
        where = []
        if job_ids is not None:
            where.append(f"job_id IN ({', '.join('?' for _ in job_ids)})")
            args.extend(int(j) for j in job_ids)
        if statuses is not None:
            names = [JobStatus(s).value for s in statuses]
            where.append(f"status IN ({', '.join('?' for _ in names)})")
            args.extend(names)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_row(r) for r in self.conn.execute(sql + " ORDER BY job_id", args)]

    def transition(
        self, job_id: int, expected: Iterable[JobStatus], new: JobStatus, **fields: Any
    ) -> bool:
        """Move a job to ``new`` only if it is still in ``expected``; True if it moved."""
        values = {k: json.dumps(v) if k in _JSON_COLUMNS else v for k, v in fields.items()}
        values["status"] = new.value
        if new.is_terminal() and "end_at" not in values:
            values["end_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in values)
        olds = [JobStatus(s).value for s in expected]
        cur = self.conn.execute(
            f"UPDATE jobs SET {sets} WHERE job_id = ? AND status IN "
            f"({', '.join('?' for _ in olds)})",
            [*values.values(), job_id, *olds],
        )
        return cur.rowcount == 1

    def count_active(self) -> int:
        names = [s.value for s in ACTIVE]
        row = self.conn.execute(
            f"SELECT COUNT(*) FROM jobs WHERE status IN ({', '.join('?' for _ in names)})", names
        ).fetchone()
        return int(row[0])

    def get_setting(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_setting(self, key: str, value: Any) -> None:
        self.conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def touch_activity(self) -> None:
        """Reset the autostop idle timer (a submit, an agent start, a new setting)."""
        self.set_setting("last_active", time.time())
