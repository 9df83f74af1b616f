"""The Compute Engine resources the GCP provider creates, as plain request bodies.

Bodies use the client's (proto-plus, snake_case) field names and are turned into
``compute_v1`` messages only by ``gcp_api``, so this module imports no Google code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skystate.providers import gcp_names as gcp
from skystate.providers.base import ProvisionRequest
from skystate.providers.gcp_names import GCPSettings


def labels_of(request: ProvisionRequest, rank: int) -> dict[str, str]:
    """The labels on every instance and disk: ours first, the user's may not override."""
    labels = {gcp.label_value(str(k)).lstrip("-0123456789") or "label":
              gcp.label_value(str(v)) for k, v in request.labels.items()}  # fmt: skip
    labels.update({
        gcp.LABEL_MANAGED: "true",
        gcp.LABEL_CLUSTER: gcp.label_value(request.cluster_name),
        gcp.LABEL_OWNER: gcp.label_value(request.owner),
        gcp.LABEL_RANK: str(rank),
    })  # fmt: skip
    return labels


def _metadata(settings: GCPSettings, request: ProvisionRequest) -> list[dict[str, str]]:
    items = [
        {"key": gcp.META_CLUSTER, "value": request.cluster_name},
        {"key": gcp.META_OWNER, "value": request.owner},
        {"key": gcp.META_OFFER, "value": json.dumps(request.offer.to_dict(), sort_keys=True)},
    ]
    key = Path(f"{settings.identity_file}.pub") if settings.identity_file else None
    if key is not None and key.is_file():
        items.append({"key": "ssh-keys", "value": f"{settings.ssh_user}:{key.read_text().strip()}"})
    return items


def _scheduling(request: ProvisionRequest, gpus: bool) -> dict[str, Any]:
    if request.offer.use_spot:
        return {"provisioning_model": "SPOT", "instance_termination_action": "STOP",
                "automatic_restart": False, "on_host_maintenance": "TERMINATE"}  # fmt: skip
    if gpus:
        return {"on_host_maintenance": "TERMINATE", "automatic_restart": True}
    return {"automatic_restart": True}


def instance_body(settings: GCPSettings, request: ProvisionRequest, zone: str,
                  rank: int) -> dict[str, Any]:
    """One node's ``Instance``: type, labels (also on its boot disk), key, spot, GPUs."""
    offer = request.offer
    labels = labels_of(request, rank)
    disk: dict[str, Any] = {"source_image": request.image_id or settings.image,
                            "labels": labels}  # fmt: skip
    if request.disk_size:
        disk["disk_size_gb"] = int(request.disk_size)
    body: dict[str, Any] = {
        "name": gcp.instance_name(request.cluster_name, request.owner, rank),
        "machine_type": f"zones/{zone}/machineTypes/{offer.instance_type}",
        "labels": labels,
        "tags": {"items": [gcp.network_tag(request.cluster_name, request.owner)]},
        "metadata": {"items": _metadata(settings, request)},
        "disks": [{"boot": True, "auto_delete": True, "initialize_params": disk}],
        "network_interfaces": [{"network": settings.network, "access_configs": [
            {"name": "External NAT", "type_": "ONE_TO_ONE_NAT"}]}],
        "service_accounts": [{"email": "default", "scopes": [gcp.COMPUTE_SCOPE]}],
    }  # fmt: skip
    guest = [(gcp.GUEST_ACCELERATORS[name], count) for name, count in offer.accelerators.items()
             if name in gcp.GUEST_ACCELERATORS and offer.instance_type.startswith("n1-")]
    if guest:
        body["guest_accelerators"] = [
            {"accelerator_type": f"zones/{zone}/acceleratorTypes/{kind}",
             "accelerator_count": int(count)} for kind, count in guest]  # fmt: skip
    body["scheduling"] = _scheduling(request, bool(offer.accelerators))
    return body


def firewall_body(settings: GCPSettings, request: ProvisionRequest) -> dict[str, Any]:
    """One rule opening the cluster's ``ports`` (TCP) to its instances only."""
    ports = [str(p).replace(" ", "") for p in request.ports]
    return {
        "name": gcp.firewall_name(request.cluster_name, request.owner),
        "network": settings.network,
        "direction": "INGRESS",
        "allowed": [{"I_p_protocol": "tcp", "ports": ports}],
        "source_ranges": ["0.0.0.0/0"],
        "target_tags": [gcp.network_tag(request.cluster_name, request.owner)],
        "description": f"skystate: ports of cluster {request.cluster_name} "
                       f"(owner {request.owner})",
    }
