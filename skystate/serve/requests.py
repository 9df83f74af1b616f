"""What each ``sky.serve`` request does on the API server (the seed's names and returns).

Each is ``operations`` with the requesting user; ``tail_logs`` prints a component's log:
the controller's decisions (``controller.log``), the load balancer's (``lb.log``), or a
replica program's output (read from its cluster's agent), following it while the
service (or the replica) lives.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from skystate.serve import operations as ops
from skystate.serve import records as rec
from skystate.serve.status import ReplicaStatus, ServiceComponent

FOLLOW_POLL_SECONDS = 0.2


def _user() -> str:
    from skystate.reconcile.imperative import current_user

    return str(current_user())


def up(task: Any, service_name: str, _need_confirmation: bool = False) -> tuple[str, str]:
    return ops.up(task, service_name, user=_user())


def update(task: Any, service_name: str, mode: str = "rolling",
           _need_confirmation: bool = False) -> None:
    ops.update(task, service_name, mode, user=_user())


def down(service_names: list[str] | None = None, all: bool = False,  # noqa: A002
         purge: bool = False) -> None:
    ops.down(service_names, all=all, purge=purge, user=_user())


def terminate_replica(service_name: str, replica_id: int, purge: bool = False) -> None:
    ops.terminate_replica(service_name, replica_id, purge, user=_user())


def status(service_names: list[str] | str | None = None) -> list[dict[str, Any]]:
    return ops.status(service_names)


def tail_logs(service_name: str, target: str, replica_id: int | None = None,
              follow: bool = True, output_stream: TextIO | None = None) -> None:
    out = output_stream or sys.stdout
    component = ServiceComponent.of(target)
    store = ops._store()
    service = store.service(service_name)
    if service is None:
        raise ValueError(f"service {service_name!r} does not exist")
    if component is ServiceComponent.REPLICA:
        if replica_id is None:
            raise ValueError("target replica needs replica_id")
        _tail_replica(service_name, int(replica_id), follow, out)
        return
    if replica_id is not None:
        raise ValueError(f"replica_id is only for target replica, not {component.value}")
    path = (rec.controller_log(service_name) if component is ServiceComponent.CONTROLLER
            else rec.serve_root() / service_name / "lb.log")
    position = 0
    while True:
        position = _print_new(path, position, out)
        if not follow or store.service(service_name) is None:
            return
        time.sleep(FOLLOW_POLL_SECONDS)


def _print_new(path: Path, position: int, out: TextIO) -> int:
    try:
        with open(path, "rb") as handle:
            handle.seek(position)
            data = handle.read()
    except FileNotFoundError:
        return position
    if data:
        out.write(data.decode(errors="replace"))
        out.flush()
    return position + len(data)


def _tail_replica(name: str, replica_id: int, follow: bool, out: TextIO) -> None:
    from skystate.reconcile.imperative import up_cluster_agent

    store = ops._store()
    printed = 0
    while True:
        service = store.service(name)
        replica = rec.replica(service or {}, replica_id)
        if replica is None:
            if printed == 0:
                raise ValueError(f"service {name!r} has no replica {replica_id}")
            return
        live = not ReplicaStatus(replica["status"]).is_terminal() and replica.get("cluster")
        if replica.get("cluster") and replica.get("job_id") is not None:
            try:
                _, agent = up_cluster_agent(replica["cluster"])
                data = agent.read_log(int(replica["job_id"]))
            except Exception:  # noqa: BLE001 - its cluster went: what was printed stays
                data = ""
            if len(data) > printed:
                out.write(data[printed:])
                out.flush()
                printed = len(data)
        if not follow or not live:
            return
        time.sleep(FOLLOW_POLL_SECONDS)
