"""Services (``sky.serve``): replicas of one task behind a per-service load balancer,
kept at the declared replica count, probed for readiness, rolled to new versions and
autoscaled.

This package owns the service records in the state database (``records``), the pure
decisions (``decide``, ``rollout``, ``autoscale``), one look at a replica (``probe``),
the actions that launch and tear down replica clusters through reconcile
(``handlers``), the controller loop embedded in the API server (``loop``), the load
balancer (``lb``, ``lb_server``, ``lb_process``), the operations the requests and the
declarative ``Service`` handlers call (``operations``, ``requests``), and these SDK
functions, each a request with an ID like every call.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from skystate.serve.status import ReplicaStatus, ServiceComponent, ServiceStatus, UpdateMode

__all__ = ["ReplicaStatus", "ServiceComponent", "ServiceStatus", "UpdateMode", "down",
           "status", "tail_logs", "terminate_replica", "up", "update"]

RequestId = str


def _submit(request: str, **args: Any) -> RequestId:
    from skystate.server.client import client

    return client().submit(request, args)  # type: ignore[no-any-return]


def up(task: Any, service_name: str, _need_confirmation: bool = False) -> RequestId:
    """Spin up a service; the request returns ``(service_name, endpoint)``."""
    from skystate.sdk import _task_config
    from skystate.serve.lb_tls import absolute

    return _submit("serve.up", task=absolute(_task_config(task)), service_name=service_name)


def update(task: Any, service_name: str, mode: UpdateMode | str = UpdateMode.ROLLING,
           _need_confirmation: bool = False) -> RequestId:
    """Update a service to a new version (``UpdateMode.ROLLING`` or ``BLUE_GREEN``)."""
    from skystate.sdk import _task_config
    from skystate.serve.lb_tls import absolute

    return _submit("serve.update", task=absolute(_task_config(task)),
                   service_name=service_name,
                   mode=UpdateMode.of(mode).value)


def down(service_names: list[str] | str | None, all: bool = False,  # noqa: A002
         purge: bool = False) -> RequestId:
    """Tear services down; the request returns once nothing of them is left."""
    names = [service_names] if isinstance(service_names, str) else service_names
    return _submit("serve.down", service_names=list(names) if names else None, all=all,
                   purge=purge)


def terminate_replica(service_name: str, replica_id: int, purge: bool) -> RequestId:
    """Tear one replica down (``purge``: also one in a failed status)."""
    return _submit("serve.terminate_replica", service_name=service_name,
                   replica_id=int(replica_id), purge=bool(purge))


def status(service_names: list[str] | str | None) -> RequestId:
    """The request returns the service records (the seed's keys, and more)."""
    names = [service_names] if isinstance(service_names, str) else service_names
    return _submit("serve.status", service_names=list(names) if names else None)


def tail_logs(service_name: str, target: ServiceComponent | str,
              replica_id: int | None = None, follow: bool = True,
              output_stream: TextIO | None = None) -> None:
    """Print a component's log (``ServiceComponent`` or its lower-case name), following
    it while the service runs."""
    from skystate.sdk import stream_and_get

    component = ServiceComponent.of(target)
    if component is ServiceComponent.REPLICA and replica_id is None:
        raise ValueError("target replica needs replica_id")
    request_id = _submit("serve.tail_logs", service_name=service_name,
                         target=component.value, replica_id=replica_id, follow=follow)
    stream_and_get(request_id, output_stream=output_stream or sys.stdout)
