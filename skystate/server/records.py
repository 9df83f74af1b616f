"""Request records in ``$SKYSTATE_HOME/requests.db`` (sqlite, WAL).

Only the API server process writes them. They are kept apart from the TinyDB state
file because requests are many and short-lived: a status change is one row update,
not a rewrite of the whole state.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class RequestStatus(str, enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def is_finished(self) -> bool:
        return self in (RequestStatus.SUCCEEDED, RequestStatus.FAILED, RequestStatus.CANCELLED)


FINISHED = tuple(s.value for s in RequestStatus if s.is_finished())

# Request IDs are ``str(uuid.uuid4())`` (36 characters); a prefix names one only if it
# has at least the first group of 8 hex digits (32 random bits). Shorter: an error.
MIN_PREFIX_LENGTH = 8
ANONYMOUS = "anonymous"  # the user of a request whose client named none

_COLUMNS = (
    "request_id", "name", "args", "user_name", "status", "created_at", "started_at",
    "finished_at", "pid", "log_path", "cluster_name", "keys", "schedule_type",
    "return_value", "error", "status_msg",
)
_JSON_COLUMNS = ("args", "keys", "return_value", "error")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY, name TEXT NOT NULL, args TEXT, user_name TEXT,
    status TEXT NOT NULL, created_at REAL, started_at REAL, finished_at REAL, pid INTEGER,
    log_path TEXT, cluster_name TEXT, keys TEXT, schedule_type TEXT, return_value TEXT,
    error TEXT, status_msg TEXT, seq INTEGER
);
CREATE INDEX IF NOT EXISTS requests_status ON requests(status);
CREATE INDEX IF NOT EXISTS requests_seq ON requests(seq);
"""
assert all(c in _SCHEMA for c in _COLUMNS)

Row = dict[str, Any]


def _like_prefix(prefix: str) -> str:
    """A ``LIKE`` pattern (escape ``\\``) matching IDs that start with ``prefix``."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class RequestDB:
    """Thread-safe access to the request table (one connection, one lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()
        row = self._conn.execute("SELECT MAX(seq) FROM requests").fetchone()
        self._seq = int(row[0] or 0)

    def insert(self, row: Row) -> None:
        with self._lock:
            self._seq += 1
            values = {c: _dump(c, row.get(c)) for c in _COLUMNS}
            values.setdefault("created_at", time.time())
            self._conn.execute(
                f"INSERT INTO requests ({', '.join(_COLUMNS)}, seq) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))}, ?)",
                [*(values[c] for c in _COLUMNS), self._seq],
            )

    def update(self, request_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._conn.execute(f"UPDATE requests SET {sets} WHERE request_id = ?",
                               [*(_dump(k, v) for k, v in fields.items()), request_id])

    def get(self, request_id: str) -> Row | None:
        rows = self._select("request_id = ?", [request_id])
        return rows[0] if rows else None

    def by_prefix(self, prefix: str) -> list[Row]:
        """Requests whose ID starts with ``prefix`` (ValueError: shorter than 8)."""
        if len(prefix) < MIN_PREFIX_LENGTH:
            raise ValueError(f"request ID prefix {prefix!r} is shorter than "
                             f"{MIN_PREFIX_LENGTH} characters")
        return self._select("request_id LIKE ? ESCAPE '\\'", [_like_prefix(prefix)])

    def with_status(self, statuses: Sequence[RequestStatus | str]) -> list[Row]:
        values = [RequestStatus(s).value for s in statuses]
        return self._select(f"status IN ({', '.join('?' * len(values))})", values)

    def listing(self, *, request_ids: Sequence[str] | None = None, all_status: bool = False,
                user_name: str | None = None, limit: int = 1000) -> list[Row]:
        clauses, params = [], []
        if request_ids:  # each a full ID or a prefix (the caller checked their length)
            clauses.append("(" + " OR ".join(["request_id LIKE ? ESCAPE '\\'"]
                                              * len(request_ids)) + ")")
            params.extend(_like_prefix(i) for i in request_ids)
        elif not all_status:
            clauses.append(f"status NOT IN ({', '.join('?' * len(FINISHED))})")
            params.extend(FINISHED)
        if user_name:
            clauses.append("user_name = ?")
            params.append(user_name)
        where = " AND ".join(clauses) or "1"
        return self._select(f"{where} ORDER BY seq DESC LIMIT {int(limit)}", params)

    def _select(self, where: str, params: Sequence[Any]) -> list[Row]:
        if "ORDER BY" not in where:
            where += " ORDER BY seq"
        with self._lock:
            cursor = self._conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM requests WHERE {where}", list(params))
            rows = cursor.fetchall()
        return [{c: _load(c, v) for c, v in zip(_COLUMNS, row, strict=True)} for row in rows]

    def prune(self, finished_before: float) -> list[str]:
        """Forget finished requests older than a time; their log paths, to delete."""
        params = [*FINISHED, finished_before]
        where = (f"status IN ({', '.join('?' * len(FINISHED))}) AND finished_at < ?")
        with self._lock:
            logs = [row[0] for row in self._conn.execute(
                f"SELECT log_path FROM requests WHERE {where}", params)]
            self._conn.execute(f"DELETE FROM requests WHERE {where}", params)
        return [path for path in logs if path]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _dump(column: str, value: Any) -> Any:
    if column in _JSON_COLUMNS and value is not None:
        return json.dumps(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _load(column: str, value: Any) -> Any:
    if column in _JSON_COLUMNS and value is not None:
        return json.loads(value)
    return value
