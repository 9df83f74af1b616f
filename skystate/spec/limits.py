"""Upper bounds on what a spec may ask for (see docs/security-spec.md for the reasons).

Each bound is above what any real cloud offers, so no real request is refused, and
below what would make skystate itself misbehave (a 10^9-node loop, a command line the
kernel refuses). The checks are plain functions raising ``ValueError``: the pydantic
validators call them, so an issue carries the file:line of its key.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ARG_BYTES",
    "MAX_ACCELERATORS",
    "MAX_COMMAND_BYTES",
    "MAX_CPUS",
    "MAX_DISK_GB",
    "MAX_ENV_BYTES",
    "MAX_MEMORY_GB",
    "MAX_NUM_NODES",
    "MAX_PORT_ENTRIES",
    "MAX_REPLICAS",
    "MAX_RESTARTS",
    "check_command",
    "check_envs",
    "check_num_nodes",
]

MAX_NUM_NODES = 1000  # nodes of one cluster or job
MAX_ACCELERATORS = 64  # accelerators of one node (real machines: at most 16)
MAX_CPUS = 1024  # vCPUs of one node (real machines: at most 448)
MAX_MEMORY_GB = 32 * 1024  # GiB of one node (real machines: at most 24 TiB)
MAX_DISK_GB = 64 * 1024  # GiB of one disk (EBS and GCP persistent disks: 64 TiB)
MAX_PORT_ENTRIES = 50  # ports/ranges of one cluster (an AWS security group: 60 rules)
MAX_RESTARTS = 1000  # job_recovery.max_restarts_on_errors
MAX_REPLICAS = 1000  # service replicas

# Linux passes at most MAX_ARG_STRLEN = 32 pages = 128 KiB in one argument of exec().
ARG_BYTES = 128 * 1024
# A worker node of an SSH cluster receives a command quoted three times inside one
# argument, with the exports of the envs; these two leave room for the rest of it.
MAX_COMMAND_BYTES = 96 * 1024
MAX_ENV_BYTES = 24 * 1024


def check_num_nodes(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_NUM_NODES:
        raise ValueError(f"num_nodes must be at most {MAX_NUM_NODES}, got {value}")
    return value


# Quoting makes at most 5 characters of 1 (``'`` -> ``'"'"'``) plus 2, and a character
# is at most 4 bytes: a command this short fits however it is quoted.
_ALWAYS_FITS = (MAX_COMMAND_BYTES // 4 - 62) // 125


def _delivered_size(text: str, limit: int) -> int:
    """Bytes of ``text`` quoted three times for the shell (stops once past ``limit``)."""
    for _ in range(3):
        if len(text) > limit:
            break
        text = shlex.quote(text)
    return len(text.encode("utf-8", "surrogatepass"))


def check_command(value: Any, field: str) -> Any:
    """``setup``/``run``: refused when too large to hand to a node as one argument."""
    if not isinstance(value, str) or len(value) <= _ALWAYS_FITS:
        return value
    size = _delivered_size(value, MAX_COMMAND_BYTES)
    if size > MAX_COMMAND_BYTES:
        raise ValueError(
            f"{field} is too large: at least {size:,} bytes once quoted for the node's shell, the "
            f"limit is {MAX_COMMAND_BYTES:,} (Linux passes at most {ARG_BYTES // 1024} KiB "
            "in one argument); put the commands in a script (workdir or file_mounts) and "
            "run that"
        )
    return value


def check_envs(value: Any, field: str) -> Any:
    """``envs``/``secrets``: all of them together, as exported on a node, are bounded."""
    if not isinstance(value, Mapping):
        return value
    size = 0
    for key, item in value.items():
        size += len(str(key)) + 9 + _delivered_size(str(item), MAX_ENV_BYTES)
        if size > MAX_ENV_BYTES:
            raise ValueError(
                f"{field} are too large: at least {size:,} bytes once exported on the node, the "
                f"limit is {MAX_ENV_BYTES:,} (they travel in one {ARG_BYTES // 1024} KiB "
                "command-line argument); put large values in a file (file_mounts)"
            )
    return value
