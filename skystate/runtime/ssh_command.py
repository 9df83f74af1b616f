"""The ``ssh`` command line from a head node to another node of its cluster.

Stdlib only, and below both of its users: the runtime's SSH runner (``runners``) and the
head's self-stop (``hostctl selfstop``), so neither imports the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def ssh_argv(head_dir: Path, options: dict[str, Any], ref: dict[str, Any]) -> list[str]:
    """``ssh`` argv from a head node to another node (the runtime's SSH runner uses it too)."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
            "-o", "ServerAliveInterval=15", "-o", "LogLevel=ERROR"]  # fmt: skip
    identity = options.get("identity_file")
    if identity:
        argv += ["-i", str(head_dir / identity), "-o", "IdentitiesOnly=yes"]
    if options.get("insecure_host_keys"):
        argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    else:
        known = options.get("known_hosts") or "ssh/known_hosts"
        argv += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={head_dir / known}"]
    if ref.get("ssh_port"):
        argv += ["-p", str(ref["ssh_port"])]
    target = f"{ref['ssh_user']}@{ref['ip']}" if ref.get("ssh_user") else str(ref["ip"])
    return argv + [target]
