"""The one seam between the reconciler and the infrastructure.

Providers return *observations* (frozen data) and never write the state store; the
executor records what they return. Every provider is idempotent by tags: provisioning
a cluster that already exists (same name and owner tags) returns it instead of
creating a second one, so a crash mid-apply never duplicates a cluster.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

# Names a provider accepts (folder names, tags, labels); SDK names are looser than the
# state files' (spec.documents.CLUSTER_NAME).
PROVIDER_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def fit_quantity(asked: str | None, have: float) -> float | None:
    """How much of ``have`` a request gets: ``"8"`` exactly 8, ``"8+"`` all of it if
    ``have >= 8``; unset takes all; None when it does not fit."""
    text = str(asked or "").strip()
    if not text:
        return have
    value = float(text.rstrip("+"))
    if value > have:
        return None
    return have if text.endswith("+") else value


class NodeState(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    STOPPED = "stopped"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class Offer:
    """One launchable choice: where, what instance, at what price."""

    provider: str
    region: str | None
    zone: str | None
    instance_type: str
    accelerators: Mapping[str, int]
    cpus: float
    memory_gib: float
    use_spot: bool
    hourly_price: float  # per node, USD

    @property
    def infra(self) -> str:
        return "/".join(p for p in (self.provider, self.region, self.zone) if p)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["accelerators"] = dict(self.accelerators)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Offer:
        return cls(**dict(data))


@dataclass(frozen=True)
class NodeInfo:
    rank: int
    node_id: str  # instance id; for local, the node folder name
    ip: str
    state: NodeState
    ssh_port: int | None = None
    ssh_user: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeInfo:
        values = dict(data)
        values["state"] = NodeState(values["state"])
        return cls(**values)


@dataclass(frozen=True)
class ClusterObservation:
    """What a provider sees of one cluster, read from its tags/labels."""

    name: str
    owner: str | None
    provider: str
    nodes: tuple[NodeInfo, ...]
    offer: Offer | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    # True when the cluster stopped itself (autostop) rather than being stopped by us.
    stopped_by_autostop: bool = False

    @property
    def head(self) -> NodeInfo | None:
        return next((n for n in self.nodes if n.rank == 0), None)

    @property
    def state(self) -> NodeState:
        """The cluster's state: running only if every node runs."""
        states = {n.state for n in self.nodes}
        if not states or states == {NodeState.TERMINATED}:
            return NodeState.TERMINATED
        if states == {NodeState.RUNNING}:
            return NodeState.RUNNING
        if NodeState.PENDING in states:
            return NodeState.PENDING
        if states <= {NodeState.STOPPED, NodeState.TERMINATED}:
            return NodeState.STOPPED
        return NodeState.PENDING  # mixed: partially up

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "owner": self.owner,
            "provider": self.provider,
            "nodes": [n.to_dict() for n in self.nodes],
            "offer": self.offer.to_dict() if self.offer else None,
            "tags": dict(self.tags),
            "stopped_by_autostop": self.stopped_by_autostop,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterObservation:
        return cls(
            name=data["name"],
            owner=data.get("owner"),
            provider=data["provider"],
            nodes=tuple(NodeInfo.from_dict(n) for n in data.get("nodes", [])),
            offer=Offer.from_dict(data["offer"]) if data.get("offer") else None,
            tags=dict(data.get("tags", {})),
            stopped_by_autostop=bool(data.get("stopped_by_autostop", False)),
        )


@dataclass(frozen=True)
class OfferQuery:
    """One concrete resource request (an ``any_of`` entry already chosen)."""

    accelerators: Mapping[str, int] = field(default_factory=dict)
    cpus: str | None = None  # "8" exact or "8+" at least
    memory: str | None = None  # GiB, same syntax
    use_spot: bool = False
    region: str | None = None
    zone: str | None = None
    instance_type: str | None = None
    num_nodes: int = 1


@dataclass(frozen=True)
class ProvisionRequest:
    cluster_name: str
    owner: str
    offer: Offer
    num_nodes: int
    disk_size: int | None = None
    ports: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    image_id: str | None = None


@dataclass(frozen=True)
class JobRequest:
    """A job as the head-node runtime agent receives it."""

    name: str | None
    run: str | None
    setup: str | None = None
    envs: Mapping[str, str] = field(default_factory=dict)
    # In the job's environment like envs, but kept out of the node's job table (the
    # runtime holds them in an owner-only file while the job is active).
    secrets: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None  # local path; the provider syncs it to the nodes
    file_mounts: Mapping[str, str] = field(default_factory=dict)
    num_nodes: int = 1
    cpus: float = 0.0
    accelerators: Mapping[str, float] = field(default_factory=dict)  # below 1: a share
    username: str = ""
    # Idempotency key: submitting the same id twice returns the first job's id, so an
    # apply killed between submit and record never runs a job twice.
    submission_id: str | None = None

    def agent_spec(self, workdir_on_node: str) -> dict[str, Any]:
        """The job as the runtime agent's ``submit`` takes it (workdir already synced)."""
        return {
            "name": self.name, "run": self.run, "setup": self.setup, "envs": dict(self.envs),
            "secrets": dict(self.secrets),
            "workdir": workdir_on_node if self.workdir else None,
            "num_nodes": self.num_nodes, "cpus": self.cpus,
            "accelerators": dict(self.accelerators), "username": self.username,
            "submission_id": self.submission_id,
        }


@runtime_checkable
class ClusterAgent(Protocol):
    """Talks to the runtime agent on a cluster's head node (job queue, autostop)."""

    def submit(self, job: JobRequest) -> int: ...

    def queue(self, job_ids: Sequence[int] | None = None,
              detailed: bool = False) -> list[dict[str, Any]]:
        """Job records with sky.queue's fields (``detailed``: every field, e.g. exit_code)."""
        ...

    def cancel(self, job_ids: Sequence[int] | None = None, all_jobs: bool = False) -> list[int]: ...

    def log_path(self, job_id: int) -> str: ...

    def read_log(self, job_id: int) -> str: ...

    def set_autostop(self, idle_minutes: int, down: bool, wait_for: str) -> None: ...

    def run_setup(self, setup: str, envs: Mapping[str, str], workdir: str | None,
                  file_mounts: Mapping[str, str] | None = None) -> int:
        """Sync ``workdir`` and ``file_mounts`` as ``submit`` does, then run ``setup`` on
        every node; its exit code."""
        ...


@runtime_checkable
class Provider(Protocol):
    """One infrastructure (local, ssh, aws, gcp) behind the same calls."""

    name: str

    def offers(self, query: OfferQuery) -> list[Offer]:
        """Every launchable offer that satisfies the query, any order."""
        ...

    def provision(self, request: ProvisionRequest) -> ClusterObservation:
        """Create (or, if tags show it exists, return) the cluster; nodes running."""
        ...

    def start(self, name: str, owner: str) -> ClusterObservation: ...

    def stop(self, name: str, owner: str) -> ClusterObservation: ...

    def terminate(self, name: str, owner: str) -> None:
        """Remove every instance of the cluster; succeeds if nothing is left."""
        ...

    def observe(self, names: Sequence[str] | None = None) -> list[ClusterObservation]:
        """Every cluster this provider can see (ours or not, judged by tags)."""
        ...

    def agent(self, observation: ClusterObservation) -> ClusterAgent:
        """A client of the runtime agent on the cluster's head node."""
        ...
