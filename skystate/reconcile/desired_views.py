"""The recorded form of desired documents: what the store keeps and the planner compares.

A view is plain JSON data. The planner compares views of the files with the views
recorded at the last apply; the executor records exactly the view it applied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skystate.spec.desired import spec_hash
from skystate.spec.documents import Cluster, Job, ManagedJob, Service
from skystate.spec.resources import AutostopSpec

MANAGED_BY_STATE = "state"
MANAGED_BY_SDK = "sdk"
REDACTED = "<redacted>"


def autostop_view(autostop: AutostopSpec | None) -> dict[str, Any] | None:
    if autostop is None or not autostop.enabled:
        return None
    return {"idle_minutes": autostop.idle_minutes, "down": autostop.down,
            "wait_for": autostop.wait_for}


def cluster_request(cluster: Cluster) -> tuple[dict[str, Any], str]:
    """(the canonical resources, the hash of the request): what a replace compares."""
    immutable = cluster.immutable_view()
    return immutable["resources"], spec_hash(immutable)


def cluster_view(cluster: Cluster, owner: str,
                 request: tuple[dict[str, Any], str] | None = None) -> dict[str, Any]:
    """``request``: ``cluster_request(cluster)`` when the caller has it already (a planner
    computes it once per distinct request)."""
    resources, immutable_hash = request or cluster_request(cluster)
    mutable = cluster.mutable_view()
    return {
        "name": cluster.name,
        "owner": owner,
        "managed_by": MANAGED_BY_STATE,
        "resources": dict(resources),
        "num_nodes": cluster.num_nodes,
        "power": cluster.power,
        "autostop": autostop_view(cluster.autostop),
        "protect": cluster.protect,
        **mutable,
        "immutable_hash": immutable_hash,
        "mutable_hash": spec_hash(mutable),
    }


def job_task_view(job: Job | ManagedJob) -> dict[str, Any]:
    """The task a job runs (resolved ``from:``); its hash decides re-runs."""
    return job.model_dump(
        mode="json", exclude_none=True, exclude={"kind", "name", "cluster", "from_"}
    )


def job_view(job: Job, owner: str, root: Path | None = None) -> dict[str, Any]:
    """A job as plans and the store hold it: ``secrets`` values are ``<redacted>``.

    The hash covers the real values (a changed secret re-runs the job); the values
    themselves are read again from the state directory (``secrets_from``) when the job
    is submitted, so no plan, plan file, request record or state file holds them.
    """
    task = job_task_view(job)
    view = {
        "cluster": job.cluster,
        "name": job.name,
        "owner": owner,
        "managed_by": MANAGED_BY_STATE,
        "task": task,
        "spec_hash": spec_hash(task),
    }
    if task.get("secrets"):
        view["task"] = {**task, "secrets": {k: REDACTED for k in task["secrets"]}}
        view["secrets_from"] = str(root) if root is not None else None
    return view


SERVICE_EXCLUDED = {"kind", "name", "from_", "update_mode", "protect"}


def service_task_view(service: Service) -> dict[str, Any]:
    """The SkyPilot task a Service serves (resolved ``from:``); its hash decides updates."""
    return service.model_dump(mode="json", exclude_none=True, exclude=SERVICE_EXCLUDED)


def service_view(service: Service, owner: str, root: Path | None = None) -> dict[str, Any]:
    """A Service as plans hold it: ``secrets`` values are ``<redacted>`` (as for jobs).

    ``spec_hash`` covers the real task; the replica bounds are here for people (the
    count the autoscaler picks between them is the controller's, never drift).
    """
    task = service_task_view(service)
    spec = service.service
    view: dict[str, Any] = {
        "name": service.name,
        "owner": owner,
        "managed_by": MANAGED_BY_STATE,
        "task": task,
        "spec_hash": spec_hash(task),
        "update_mode": service.update_mode,
        "protect": service.protect,
        "min_replicas": spec.min_replicas if spec is not None else None,
        "max_replicas": spec.max_replicas if spec is not None else None,
        "num_nodes": service.num_nodes or 1,
    }
    if task.get("secrets"):
        view["task"] = {**task, "secrets": {k: REDACTED for k in task["secrets"]}}
        view["secrets_from"] = str(root) if root is not None else None
    return view
