"""Service records in the state database, and where each service's files live.

One record per service holds what the API asked (desired state: ``tasks`` by version,
``version``, ``update_mode``, ``down_requested_at``, ``terminate_requested``) and what
the controller decided (its ``replicas``, each with ``version``, ``status``, ``cluster``,
``port``, ``first_ready_at``, ``failing_since``; the autoscaler's ``target_replicas`` and
hysteresis timestamps; ``serving_version`` for blue-green; ``stable_version`` and
``failed_versions`` for rollback; the ready-set ``generation``). Requests write only the
desired fields and the controller only its own; every write merges onto the record as
re-read under the writer lock, so neither loses the other's fields.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from skystate.home import home
from skystate.reconcile.store import Store
from skystate.serve.status import ServiceStatus

Record = dict[str, Any]
KEPT_FAILED_REPLICAS = 5  # failed replicas still listed (with their reason) per service


def serve_root() -> Path:
    return home() / "serve"


def service_dir(name: str) -> Path:
    """``$SKYSTATE_HOME/serve/<name>/``, owner-only (0700)."""
    path = serve_root() / name
    serve_root().mkdir(mode=0o700, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def controller_log(name: str) -> Path:
    return serve_root() / name / "controller.log"


def replica_log(name: str, replica_id: int) -> Path:
    return serve_root() / name / f"replica-{int(replica_id)}.log"


def cluster_name(name: str, replica_id: int) -> str:
    return f"{name}-{int(replica_id)}"[:63]


def create(store: Store, name: str, task: Record, user: str, owner: str | None) -> Record:
    """Record a new service (CONTROLLER_INIT, version 1); raises if the name is taken."""
    with store.transaction():
        if store.service(name) is not None:
            raise ValueError(f"service {name!r} already exists; update it with "
                             f"`skystate serve update {name} TASK.yaml` or take it down")
        service_id = max((s["service_id"] for s in store.services()), default=0) + 1
        record: Record = {
            "name": name, "service_id": service_id, "user_name": user, "owner": owner,
            "created_at": time.time(), "status": ServiceStatus.CONTROLLER_INIT.value,
            "tasks": {"1": task}, "version": 1, "update_mode": "rolling",
            "stable_version": None, "failed_versions": [], "serving_version": 1,
            "replicas": [], "next_replica_id": 1, "target_replicas": None,
            "upscale_since": None, "downscale_since": None, "launch_failures": 0,
            "next_launch_at": None, "generation": 0, "ready_ids": [], "lb_port": None,
            "uptime_since": None, "down_requested_at": None, "purge": False,
            "terminate_requested": [], "reason": None, "controller_error": None,
        }
        store.put_service(record)
    service_dir(name)
    return record


def update(store: Store, name: str, **fields: Any) -> Record | None:
    """Merge ``fields`` onto the stored record (None: it is no longer recorded)."""
    with store.transaction():
        record = store.service(name)
        if record is None:
            return None
        merged = {**record, **fields}
        if merged != record:  # no write, no state-version bump, when nothing changed
            store.put_service(merged)
    return merged


def replica(record: Record, replica_id: int) -> Record | None:
    return next((r for r in record.get("replicas") or [] if r["replica_id"] == replica_id),
                None)


def update_replica(store: Store, name: str, replica_id: int, **fields: Any) -> Record | None:
    """Merge ``fields`` onto one replica of the stored record."""
    with store.transaction():
        record = store.service(name)
        if record is None:
            return None
        replicas = [dict(r, **fields) if r["replica_id"] == replica_id else r
                    for r in record.get("replicas") or []]
        record = {**record, "replicas": replicas}
        store.put_service(record)
    return replica(record, replica_id)


def note(name: str, message: str) -> None:
    """One line in the service's controller log: a decision and why."""
    path = controller_log(name)
    if not path.parent.is_dir():
        return  # the service is gone (down removes its folder)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(path, "a") as handle:
        handle.write(f"{stamp} {message}\n")
