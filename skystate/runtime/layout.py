"""Paths inside a node folder and the node's identity file (``node.json``).

Everything the agent, the CLI front end and the provider agree on about *where* things
live is here, so the layout is described once (see the package docstring).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NODE_FILE = "node.json"
# Everything the runtime creates is owner-only; jobs get the umask the runtime was started
# with (recorded in SKYSTATE_JOB_UMASK by the first runtime process of a node, so an
# agent started by ``hostctl`` gives jobs the ssh session's umask, not 077).
PRIVATE_UMASK = 0o077
JOB_UMASK_ENV = "SKYSTATE_JOB_UMASK"


@dataclass(frozen=True)
class NodePaths:
    """Well-known paths of one node folder."""

    root: Path

    @property
    def node_file(self) -> Path:
        return self.root / NODE_FILE

    @property
    def home(self) -> Path:
        """The node's home folder: ``~`` of jobs and of ``~/...`` file mounts."""
        return self.root / "home"

    @property
    def fs_root(self) -> Path:
        """Where absolute remote paths land (``/data`` → ``root/data``)."""
        return self.root / "root"

    @property
    def runtime(self) -> Path:
        return self.root / "runtime"

    @property
    def db(self) -> Path:
        return self.runtime / "jobs.db"

    @property
    def pid_file(self) -> Path:
        return self.runtime / "agent.pid"

    @property
    def exit_dir(self) -> Path:
        return self.runtime / "exit"

    @property
    def secrets_dir(self) -> Path:
        """A job's secrets while it is active (``<job_id>.json``, 0600; never in jobs.db)."""
        return self.runtime / "secrets"

    def secrets_file(self, job_id: int) -> Path:
        return self.secrets_dir / f"{job_id}.json"

    @property
    def autostop_marker(self) -> Path:
        return self.runtime / "autostopped"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def job_logs(self) -> Path:
        return self.logs / "jobs"

    @property
    def agent_log(self) -> Path:
        return self.logs / "agent.log"

    def job_log(self, job_id: int) -> Path:
        return self.job_logs / f"{job_id}.log"

    def exit_file(self, job_id: int, phase: str) -> Path:
        return self.exit_dir / f"{job_id}.{phase}"

    def resolve(self, remote_path: str) -> Path:
        """Map a path as a job sees it on a real host to this simulated node's folder."""
        if remote_path == "~" or remote_path.startswith("~/"):
            return self.home / remote_path[2:]
        if remote_path.startswith("/"):
            return self.fs_root / remote_path.lstrip("/")
        return self.home / remote_path

    def make_dirs(self) -> None:
        for path in (self.home, self.fs_root, self.runtime, self.exit_dir, self.job_logs,
                     self.secrets_dir):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)


@dataclass(frozen=True)
class NodeRef:
    """How the head reaches one node of its cluster."""

    rank: int
    ip: str
    dir: str | None = None  # local runner: the node folder
    ssh_user: str | None = None
    ssh_port: int | None = None


@dataclass(frozen=True)
class NodeConfig:
    """Contents of ``node.json``, written by the provider before the agent starts."""

    cluster: str
    owner: str
    rank: int
    num_nodes: int
    nodes: tuple[NodeRef, ...]
    accelerators: Mapping[str, int] = field(default_factory=dict)
    cpus: float = 1.0
    memory_gib: float | None = None
    self_stop: Mapping[str, list[str]] = field(default_factory=dict)
    runner: str = "local"
    count_ssh_sessions: bool = False
    # ssh runner: identity_file, known_hosts (absolute paths on the head),
    # insecure_host_keys, isolate_home (see ``runners.SSHRunner``)
    runner_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ips(self) -> list[str]:
        return [n.ip for n in sorted(self.nodes, key=lambda n: n.rank)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "owner": self.owner,
            "rank": self.rank,
            "num_nodes": self.num_nodes,
            "nodes": [n.__dict__ for n in self.nodes],
            "accelerators": dict(self.accelerators),
            "cpus": self.cpus,
            "memory_gib": self.memory_gib,
            "self_stop": {k: list(v) for k, v in self.self_stop.items()},
            "runner": self.runner,
            "count_ssh_sessions": self.count_ssh_sessions,
            "runner_options": dict(self.runner_options),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeConfig:
        values = dict(data)
        values["nodes"] = tuple(NodeRef(**n) for n in values.get("nodes", []))
        return cls(**values)


def read_node_config(node_dir: Path) -> NodeConfig:
    return NodeConfig.from_dict(json.loads((node_dir / NODE_FILE).read_text()))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write via temp file + rename so a crash never leaves a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def write_private(path: Path, text: str) -> None:
    """Write an owner-only (0600) file atomically, whatever the process umask."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def enter_private_umask() -> int:
    """From now on this process creates owner-only files; returns the jobs' umask."""
    inherited = os.umask(PRIVATE_UMASK)
    if JOB_UMASK_ENV not in os.environ:
        os.environ[JOB_UMASK_ENV] = f"{inherited:03o}"
    return job_umask()


def job_umask() -> int:
    """The umask jobs and setup run with (see ``PRIVATE_UMASK``)."""
    try:
        return int(os.environ.get(JOB_UMASK_ENV, ""), 8) & 0o777
    except ValueError:
        current = os.umask(PRIVATE_UMASK)
        os.umask(current)
        return current


def env_seconds(name: str, default: float) -> float:
    """A number of seconds from the environment; ``default`` when unset or not a number."""
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


def time_scale() -> float:
    """``SKYSTATE_TIME_SCALE``: 60 makes a minute of autostop last one second."""
    try:
        scale = float(os.environ.get("SKYSTATE_TIME_SCALE", "1") or 1)
    except ValueError:
        return 1.0
    return scale if scale > 0 else 1.0
