"""The skystate runtime on GCP instances: ``cloud_nodes`` with GCP's self-stop.

Autostop on GCP needs two different things for ``stop`` and ``down`` (a guest shutdown
can only stop an instance; deleting needs an API call), so the head's self-stop command
is: ``hostctl selfstop stop|down`` (end jobs and the runtime on every node), then
``gcp_selfstop`` (stop or delete every instance through the Compute API, see there).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skystate.providers.cloud_nodes import (
    PYTHON,
    CloudNode,
    CloudNodes,
    NodeAccess,
    NodeSlot,
    hostctl_argv,
)

if TYPE_CHECKING:
    from skystate.providers.gcp_names import GCPSettings

DEFAULT_API = "https://compute.googleapis.com"
_SOURCE: list[str] = []


def selfstop_source() -> str:
    if not _SOURCE:
        _SOURCE.append((Path(__file__).parent / "gcp_selfstop.py").read_text())
    return _SOURCE[0]


class GCPNodes(CloudNodes):
    """``CloudNodes`` whose self-stop stops/deletes the instances through the API."""

    def __init__(self, settings: GCPSettings, access: NodeAccess) -> None:
        super().__init__("gcp", access)
        self.settings = settings

    def _self_stop(self, slot: NodeSlot, refs: Sequence[Mapping[str, Any]],
                   nodes: Mapping[int, CloudNode]) -> dict[str, list[str]]:
        ordered = [nodes[rank] for rank in sorted(nodes)]
        config = {
            "api": self.settings.api_endpoint or DEFAULT_API,
            "project": self.settings.project,
            "nodes": [{"name": n.node_id, "zone": n.places["zone"]} for n in ordered],
            "shutdown_fallback": self.settings.test_ssh_address is None,
        }
        result = {}
        for action in ("stop", "down"):
            lines = [
                shlex.join(hostctl_argv(slot.dir, "selfstop", action, slot.dir)),
                shlex.join([PYTHON, "-c", selfstop_source(), action, json.dumps(config)]),
            ]
            result[action] = ["bash", "-c", "\n".join(lines)]
        return result


def gcp_cloud_nodes(settings: GCPSettings) -> GCPNodes:
    """The node seam for these settings; a test address puts every node on one machine."""
    remote_dir, isolate_home = settings.remote_dir, False
    if settings.test_ssh_address:  # nodes share one host: a folder and a home each
        isolate_home = True
        if "{host}" not in remote_dir:
            remote_dir = f"{remote_dir.rstrip('/')}/{{host}}"
    access = NodeAccess(
        user=settings.ssh_user, identity_file=settings.identity_file,
        remote_dir=remote_dir, isolate_home=isolate_home,
        address_override=settings.test_ssh_address, ssh_timeout=settings.ssh_timeout,
    )  # fmt: skip
    return GCPNodes(settings, access)
