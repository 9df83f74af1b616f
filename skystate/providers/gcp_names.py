"""The names, labels and settings the GCP provider and its helpers share.

``gcp`` (the provider), ``gcp_instances`` (request bodies) and ``gcp_nodes`` (node
access) all use these; keeping them here lets those modules import them without
importing the provider, and the provider import its helpers without a circle.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABEL_MANAGED = "skystate"
LABEL_CLUSTER = "skystate-cluster"
LABEL_OWNER = "skystate-owner"
LABEL_RANK = "skystate-rank"
LABEL_AUTOSTOPPED = "skystate-autostopped"
META_CLUSTER, META_OWNER, META_OFFER = "skystate-cluster", "skystate-owner", "skystate-offer"
DEFAULT_IMAGE = "projects/debian-cloud/global/images/family/debian-12"
DEFAULT_NETWORK = "global/networks/default"
COMPUTE_SCOPE = "https://www.googleapis.com/auth/compute"
# Accelerators attached to n1 machine types (the other GPU families have them built in).
GUEST_ACCELERATORS = {"T4": "nvidia-tesla-t4", "V100": "nvidia-tesla-v100",
                      "P100": "nvidia-tesla-p100", "P4": "nvidia-tesla-p4"}  # fmt: skip
def label_value(text: str) -> str:
    """A GCE label value for ``text`` (lowercase, ``[a-z0-9_-]``, ≤ 63); lossy → hashed."""
    safe = re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]
    if safe == text:
        return safe
    return f"{safe[:54]}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def instance_name(cluster: str, owner: str, rank: int) -> str:
    """``<cluster>-<owner hash>-<rank>``: unique per owner, a valid GCE name."""
    stem = re.sub(r"[^a-z0-9-]", "-", cluster.lower())[:48].rstrip("-") or "c"
    if not stem[0].isalpha():
        stem = "c" + stem[:47]
    return f"{stem}-{hashlib.sha1(owner.encode()).hexdigest()[:6]}-{rank}"


def firewall_name(cluster: str, owner: str) -> str:
    return f"skystate-{instance_name(cluster, owner, 0)[:-2]}-ports"


def network_tag(cluster: str, owner: str) -> str:
    return f"skystate-{instance_name(cluster, owner, 0)[:-2]}"


@dataclass(frozen=True)
class GCPSettings:
    """The ``providers: gcp:`` section, resolved."""

    project: str | None = None
    regions: tuple[str, ...] | None = None
    api_endpoint: str | None = None
    ssh_user: str = "skystate"
    identity_file: str | None = None
    remote_dir: str = "~/.skystate-node"
    image: str = DEFAULT_IMAGE
    network: str = DEFAULT_NETWORK
    ssh_timeout: float = 300.0
    test_ssh_address: str | None = None

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> GCPSettings:
        known = {k: v for k, v in section.items() if v is not None}
        if "regions" in known:
            known["regions"] = tuple(known["regions"])
        if known.get("identity_file"):
            known["identity_file"] = str(Path(known["identity_file"]).expanduser())
        known.setdefault("project", os.environ.get("GOOGLE_CLOUD_PROJECT")
                         or os.environ.get("CLOUDSDK_CORE_PROJECT"))
        return cls(**known)
