"""What ``sky.api_status`` returns: one ``RequestPayload`` per request, as SkyPilot's.

SkyPilot's ``sky.server.requests.payloads.RequestPayload`` is an object with attributes
(``row.request_id``, ``row.name``, ``row.status``, ``row.created_at``, ``row.user_name``,
``row.user_id``, ``row.cluster_name``, ``row.status_msg``, ``row.finished_at``, ...).
Ours is also a ``dict`` of the same fields (``row["request_id"]``, ``json.dumps(row)``),
so programs written either way work. Every attribute is a real field of the request
record; ``request_body`` is the request's (redacted) arguments as JSON text and
``user_id`` the user's hash, as SkyPilot's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from skystate.server.records import RequestStatus

# SkyPilot's fields, then ours (args, started_at, log_path).
FIELDS = (
    "request_id", "name", "request_body", "status", "created_at", "user_id",
    "return_value", "error", "pid", "schedule_type", "user_name", "cluster_name",
    "status_msg", "should_retry", "finished_at", "args", "started_at", "log_path",
)  # fmt: skip


class RequestPayload(dict[str, Any]):
    """A request as ``api_status`` lists it: a dict whose keys are also attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"RequestPayload has no field {name!r}") from None

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> RequestPayload:
        """A row of ``GET /api/v1/requests``: status typed, return value decoded."""
        from skystate.server.codec import decode

        user = row.get("user_name")
        payload = {
            **row,
            "status": RequestStatus(row["status"]),
            "return_value": decode(row.get("return_value")),
            "request_body": json.dumps(row.get("args") or {}, sort_keys=True, default=str),
            "user_id": hashlib.md5(user.encode()).hexdigest()[:8] if user else None,
            "should_retry": False,  # skystate resumes interrupted requests itself
        }
        return cls({name: payload.get(name) for name in FIELDS})
