"""Ownership labels written on every node, and records rebuilt from what they say.

A cluster's record can always be recovered from its nodes: ``_create`` passes these
labels with the provision request, every provider stores them with its own tags
(local/ssh ``tags.json``, cloud instance tags/labels), and ``observe()`` returns them.
Values stay within GCP's label rules (lowercase letters, digits, ``-``/``_``, at most
63 characters), so one scheme works on every provider.

What the labels cannot hold (setup commands, envs, the full resources block) comes from
the state directory when its cluster's spec hash matches the label: that is the spec the
cluster was created from. Otherwise the record says only what the cluster itself shows.
"""

from __future__ import annotations

import re
import time
from typing import Any

from skystate.providers.base import ClusterObservation, NodeState
from skystate.reconcile.desired_views import MANAGED_BY_SDK, MANAGED_BY_STATE
from skystate.spec.desired import spec_hash

Record = dict[str, Any]

LABEL_MANAGED_BY = "skystate-managed-by"
LABEL_SPEC = "skystate-spec"  # the immutable_hash the cluster was created with
LABEL_PROTECT = "skystate-protect"
LABEL_USER = "skystate-user"
LABEL_LAUNCHED = "skystate-launched"  # unix seconds

_LABEL_VALUE = re.compile(r"[^a-z0-9_-]")
_MUTABLE_FIELDS = ("setup", "workdir", "file_mounts", "envs")


def label_value(text: str) -> str:
    """Text as a label value every provider accepts."""
    return _LABEL_VALUE.sub("-", text.lower())[:63]


def ownership_labels(spec: Record, user: str, now: float) -> dict[str, str]:
    """The labels ``_create`` adds to a cluster's own (``resources.labels``)."""
    return {
        LABEL_MANAGED_BY: label_value(str(spec.get("managed_by") or MANAGED_BY_STATE)),
        LABEL_SPEC: label_value(str(spec.get("immutable_hash") or "")),
        LABEL_PROTECT: "true" if spec.get("protect") else "false",
        LABEL_USER: label_value(user),
        LABEL_LAUNCHED: str(int(now)),
    }


def made_by_skystate(observation: ClusterObservation) -> bool:
    return bool(observation.owner) and LABEL_MANAGED_BY in observation.tags


def observed_status(state: NodeState, recorded: str | None = None) -> str:
    """A record's status for an observed state (an INIT record stays INIT until created)."""
    if state is NodeState.RUNNING:
        return "INIT" if recorded == "INIT" else "UP"
    if state is NodeState.STOPPED:
        return "STOPPED"
    return "INIT"


def adopted_record(observation: ClusterObservation, *, provider_config: Record,
                   desired_view: Record | None, project_owner: str | None,
                   now: float | None = None) -> Record:
    """A store record for a cluster found by its tags but not recorded.

    ``desired_view`` is the state directory's view of a cluster of the same name; it is
    used only when the cluster was created from that very spec (owner and spec hash
    match), so a plan right after adoption is a no-op for an unchanged cluster.
    """
    now = time.time() if now is None else now
    tags = observation.tags
    status = observed_status(observation.state)
    stopped_by_autostop = status == "STOPPED" and observation.stopped_by_autostop
    launched = tags.get(LABEL_LAUNCHED, "")
    common: Record = {
        "name": observation.name,
        "owner": observation.owner,
        "status": status,
        "provider": observation.provider,
        "offer": observation.offer.to_dict() if observation.offer else None,
        "launched_at": float(launched) if launched.isdigit() else None,
        "status_updated_at": now,
        "stopped_by_autostop": stopped_by_autostop,
        "last_error": None,
        "user_name": tags.get(LABEL_USER) or observation.owner,
        "provider_config": provider_config,
        "setup_pending": False,
        "adopted_at": now,
    }
    if _created_from(observation, desired_view):
        assert desired_view is not None
        return {**desired_view, **common}
    return {**_spec_from_tags(observation, status, project_owner), **common}


def _created_from(observation: ClusterObservation, view: Record | None) -> bool:
    return (view is not None and view.get("owner") == observation.owner
            and observation.tags.get(LABEL_MANAGED_BY) == view.get("managed_by")
            and observation.tags.get(LABEL_SPEC) == view.get("immutable_hash"))


def _spec_from_tags(observation: ClusterObservation, status: str,
                    project_owner: str | None) -> Record:
    """What the cluster itself tells of its spec (the rest is unknown: None)."""
    tags = observation.tags
    managed_by = tags.get(LABEL_MANAGED_BY) or (
        MANAGED_BY_STATE if observation.owner == project_owner else MANAGED_BY_SDK)
    offer = observation.offer
    resources: Record = {"infra": observation.provider}
    if offer and offer.accelerators:
        resources["accelerators"] = dict(offer.accelerators)
    mutable = {key: None for key in _MUTABLE_FIELDS}
    power_up = status != "STOPPED" or observation.stopped_by_autostop
    return {
        "managed_by": managed_by,
        "resources": resources,
        "num_nodes": len(observation.nodes),
        "power": "up" if power_up else "stopped",
        "autostop": None,
        "protect": tags.get(LABEL_PROTECT) == "true",
        **mutable,
        "immutable_hash": tags.get(LABEL_SPEC) or "",
        "mutable_hash": spec_hash(mutable),
    }


def tracked_update(record: Record, observation: ClusterObservation, now: float) -> Record:
    """A recorded cluster with an observation folded in (status, autostop flag)."""
    status = observed_status(observation.state, record.get("status"))
    updated = {**record, "status": status,
               "stopped_by_autostop": status == "STOPPED" and observation.stopped_by_autostop}
    updated.pop("vanished_at", None)
    if status != record.get("status"):
        updated["status_updated_at"] = now
    return updated

