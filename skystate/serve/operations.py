"""Service operations: what ``sky.serve`` requests and the declarative ``Service``
handlers do. They write desired state (a new record, a new version, a down request) and
the controller in the API server converges on it; ``up`` and ``down`` wait for it.

``up`` returns once the service's load balancer listens (its endpoint is known);
``down`` once every replica's cluster, the load balancer and the record are gone (a
replica that cannot be torn down fails it, unless ``purge``).
"""

from __future__ import annotations

import re
import time
from typing import Any

from skystate.serve import records as rec
from skystate.serve.lb_tls import check_files, tls_files
from skystate.serve.status import ReplicaStatus, ServiceStatus, UpdateMode

Record = dict[str, Any]
SERVICE_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
UP_TIMEOUT = 120.0  # real seconds for the load balancer to listen
DOWN_TIMEOUT = 600.0
POLL_SECONDS = 0.1


def _store() -> Any:
    from skystate.reconcile.store import Store

    return Store()


def check_name(name: str) -> None:
    if not isinstance(name, str) or not SERVICE_NAME.match(name):
        raise ValueError(f"service name {name!r} is invalid: use lowercase letters, digits "
                         "and '-', starting with a letter, at most 40 characters")


def check_task(task_config: Any) -> Record:
    """A task config that can be served (its service section valid), as a plain dict."""
    from skystate.reconcile.imperative import task_resources
    from skystate.serve.policy import policy_of
    from skystate.spec.task import Task

    if not isinstance(task_config, dict):
        raise ValueError(f"expected a task, got {type(task_config).__name__}")
    task = Task.from_yaml_config(task_config)  # SpecError (a ValueError) for a bad task
    if task.run is None:
        raise ValueError("a service needs a run command (the program that serves)")
    task_resources(task)
    policy_of(task_config)  # ValueError for a missing or bad service section
    check_files(task_config)  # a TLS key or certificate the load balancer cannot load
    return task_config


def up(task_config: dict, service_name: str, *, user: str,
       owner: str | None = None) -> tuple[str, str]:
    """Record the service and wait until its load balancer listens; (name, endpoint)."""
    submit_up(task_config, service_name, user=user, owner=owner)
    return service_name, wait_endpoint(service_name)


def submit_up(task_config: dict, service_name: str, *, user: str,
              owner: str | None = None) -> None:
    """Record the service (desired state); the controller starts it. No waiting."""
    check_name(service_name)
    config = check_task(task_config)
    rec.create(_store(), service_name, config, user, owner)
    rec.note(service_name, f"service {service_name!r} submitted by {user} (version 1)")


def wait_endpoint(name: str, timeout: float = UP_TIMEOUT) -> str:
    deadline = time.monotonic() + timeout
    while True:
        service = _store().service(name)
        if service is None:
            raise RuntimeError(f"service {name!r} was taken down while starting")
        if service.get("lb_port"):
            return endpoint_of(service) or ""
        if service.get("status") == ServiceStatus.CONTROLLER_FAILED.value:
            raise RuntimeError(f"service {name!r}: {service.get('reason')}")
        if time.monotonic() > deadline:
            reason = service.get("controller_error") or "the controller did not start it"
            raise RuntimeError(f"service {name!r}: no load balancer within {timeout:g}s "
                               f"({reason})")
        time.sleep(POLL_SECONDS)


def endpoint_of(service: Record) -> str | None:
    port = service.get("lb_port")
    return f"{service.get('lb_scheme') or 'http'}://127.0.0.1:{port}" if port else None


def update(task_config: dict, service_name: str, mode: str = "rolling", *,
           user: str) -> None:
    """Record a new version; the controller rolls the replicas to it (``mode``)."""
    config = check_task(task_config)
    chosen = UpdateMode.of(mode)
    store = _store()
    with store.transaction():
        service = store.service(service_name)
        if service is None:
            raise ValueError(f"service {service_name!r} does not exist")
        if service.get("down_requested_at"):
            raise ValueError(f"service {service_name!r} is shutting down")
        version = max(int(v) for v in service["tasks"]) + 1
        if tls_files(config) != tls_files(service["tasks"][str(version - 1)]):
            raise ValueError(f"service {service_name!r}: service.tls cannot change in an "
                             "update (the load balancer keeps the TLS it started with)")
        store.put_service({**service, "tasks": {**service["tasks"], str(version): config},
                           "version": version, "update_mode": chosen.value})
    rec.note(service_name, f"update to version {version} ({chosen.value}) by {user}")
    print(f"Updating service {service_name!r} to version {version} ({chosen.value}).",
          flush=True)


def _names(service_names: list[str] | str | None) -> list[str] | None:
    if service_names is None:
        return None
    if isinstance(service_names, str):
        return [service_names]
    return [str(n) for n in service_names]


def down(service_names: list[str] | None, *, all: bool = False,  # noqa: A002
         purge: bool = False, user: str) -> None:
    """Take services down and wait until nothing of them is left (no replica cluster,
    no load balancer, no record)."""
    chosen = request_down(service_names, all=all, purge=purge, user=user)
    wait_down(chosen)


def wait_down(chosen: list[str]) -> None:
    _wait_gone(chosen)
    if chosen:
        print(f"Service(s) {', '.join(chosen)} torn down.", flush=True)


def request_down(service_names: list[str] | None, *, all: bool = False,  # noqa: A002
                 purge: bool = False, user: str) -> list[str]:
    """Record a down request (desired state) for each service named; the names found."""
    names = _names(service_names)
    if bool(names) == bool(all):
        raise ValueError("give service names or all=True (not both)")
    store = _store()
    now = time.time()
    with store.transaction():
        chosen = [s for s in store.services() if all or s["name"] in (names or [])]
        for service in chosen:
            store.put_service({**service, "down_requested_at":
                               service.get("down_requested_at") or now,
                               "purge": bool(purge or service.get("purge"))})
    missing = sorted(set(names or []) - {s["name"] for s in chosen})
    if missing:
        print(f"Service(s) not found: {', '.join(missing)}", flush=True)
    for service in chosen:
        rec.note(service["name"], f"down requested by {user}" + (" (purge)" if purge else ""))
    return [s["name"] for s in chosen]


def _wait_gone(names: list[str], timeout: float = DOWN_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        left = [s for s in _store().services() if s["name"] in names]
        if not left:
            return
        stuck = [s for s in left if s.get("status") == ServiceStatus.FAILED_CLEANUP.value
                 and not s.get("purge")]
        if stuck and all(r["status"] == ReplicaStatus.FAILED_CLEANUP.value
                         for s in stuck for r in s.get("replicas") or [] if r.get("cluster")):
            raise RuntimeError(f"failed to terminate service(s) "
                               f"{', '.join(s['name'] for s in stuck)}: a replica could not "
                               "be torn down; retry with purge=True to forget it")
        if time.monotonic() > deadline:
            raise RuntimeError(f"failed to terminate service(s) "
                               f"{', '.join(s['name'] for s in left)} within {timeout:g}s")
        time.sleep(POLL_SECONDS)


def terminate_replica(service_name: str, replica_id: int, purge: bool, *, user: str) -> None:
    """Ask the controller to tear one replica down (it is replaced if still wanted)."""
    store = _store()
    with store.transaction():
        service = store.service(service_name)
        if service is None:
            raise ValueError(f"service {service_name!r} does not exist")
        replica = rec.replica(service, int(replica_id))
        if replica is None:
            raise ValueError(f"service {service_name!r} has no replica {replica_id}")
        if ReplicaStatus(replica["status"]).is_terminal() and not purge:
            raise RuntimeError(f"replica {replica_id} is {replica['status']}: terminate it "
                               "with purge=True (its cluster may leak)")
        asked = sorted({*(service.get("terminate_requested") or []), int(replica_id)})
        store.put_service({**service, "terminate_requested": asked})
    rec.note(service_name, f"terminate replica {replica_id} requested by {user}")
    print(f"Terminating replica {replica_id} of service {service_name!r}.", flush=True)


def _resources_str(task_config: Record) -> str:
    from skystate.reconcile.imperative import task_resources
    from skystate.spec.task import Task

    try:
        task = Task.from_yaml_config(task_config)
        canonical = task_resources(task).canonical()
        text = ", ".join(f"{k}={v}" for k, v in sorted(canonical.items())
                         if v not in (None, [], {}))
        return f"{task.num_nodes}x[{text or 'CPU'}]"
    except Exception:  # noqa: BLE001 - shown, not raised
        return "-"


def _handle(cluster: str | None) -> Any:
    if not cluster:
        return None
    from skystate.reconcile.imperative import handle_of

    try:
        return handle_of(cluster)
    except Exception:  # noqa: BLE001 - a replica whose cluster is gone has no handle
        return None


def status_record(service: Record, now: float) -> Record:
    from skystate.serve.decide import wanted_version
    from skystate.serve.policy import policy_of

    version = wanted_version(service) or service.get("stable_version") or 1
    task = service["tasks"].get(str(version)) or {}
    try:
        policy = policy_of(task)
        described, balancing = policy.scaling.describe(), policy.load_balancing
    except ValueError:
        described, balancing = None, "least_load"
    replicas = service.get("replicas") or []
    live = [r for r in replicas if not ReplicaStatus(r["status"]).is_terminal()
            and r["status"] != ReplicaStatus.SHUTTING_DOWN.value]
    uptime = service.get("uptime_since")
    return {
        "name": service["name"],
        "active_versions": sorted({int(r["version"]) for r in live}),
        "controller_job_id": int(service["service_id"]),
        "uptime": int(now - uptime) if uptime else None,
        "status": ServiceStatus(service["status"]),
        "controller_port": None,
        "load_balancer_port": service.get("lb_port"),
        "endpoint": endpoint_of(service),
        "policy": described,
        "requested_resources_str": _resources_str(task),
        "load_balancing_policy": balancing,
        "replica_info": [{
            "replica_id": r["replica_id"], "name": service["name"],
            "status": ReplicaStatus(r["status"]), "version": int(r["version"]),
            "launched_at": int(r["launched_at"]) if r.get("launched_at") else None,
            "handle": _handle(r.get("cluster")), "endpoint": r.get("url"),
            "is_spot": bool(r.get("is_spot")),  # SkyPilot's replica info has it too
            # beyond the seed's keys
            "cluster": r.get("cluster"), "failure_reason": r.get("failure_reason"),
        } for r in replicas],
        # beyond the seed's keys
        "version": service.get("version"), "serving_version": service.get("serving_version"),
        "stable_version": service.get("stable_version"),
        "target_replicas": service.get("target_replicas"),
        "reason": service.get("reason"), "controller_error": service.get("controller_error"),
        "user_name": service.get("user_name"), "owner": service.get("owner"),
    }


def status(service_names: list[str] | str | None) -> list[Record]:
    """The services asked (all if None), with the seed's keys; unknown names are
    omitted."""
    names = _names(service_names)
    now = time.time()
    return [status_record(s, now) for s in _store().services()
            if names is None or s["name"] in names]
