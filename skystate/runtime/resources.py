"""Resource accounting for job-queue scheduling: what a job demands, what is free.

A job with ``num_nodes = k`` takes its demand on *each* of k nodes (SkyPilot's per-node
resources). On a cluster with more nodes than that, the job runs on whichever k nodes
have room (first fit in rank order), not always ranks ``0..k-1``: a 2-node cluster runs
two 1-node jobs side by side. The placement is the job's ``devices`` map, keyed by the
*node* ranks it runs on, in the job's own rank order (job rank 0 is its first key).

Accelerators are numbered devices: a node with ``{"A100": 4}`` has devices 0-3. A whole
count (``{"A100": 2}``) takes that many wholly free devices, the lowest indices first;
a fraction below one (``{"T4": 0.1}``, as SkyPilot's) takes that share of one device,
the lowest device with room, so ten such jobs share one T4 (a count above 1 that is
not whole is rounded up). The devices become the
job's ``CUDA_VISIBLE_DEVICES`` on that node. With several accelerator types on one node,
indices follow the sorted type names (``{"A100": 2, "T4": 2}``: A100 = 0,1; T4 = 2,3).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from skystate.exceptions import ResourcesMismatchError

DEFAULT_JOB_CPUS = 0.5  # SkyPilot's default demand of a job that asks for nothing
_EPS = 1e-9

Placement = dict[int, list[int]]  # node rank -> device indices, in the job's rank order


def _count(value: Any) -> float:
    """A count as demanded: a whole number, or a fraction of one device (below 1)."""
    number = float(value)
    return number if number < 1 else float(math.ceil(number - _EPS))


@dataclass(frozen=True)
class Demand:
    """What one job takes on each node it runs on."""

    cpus: float = 0.0
    accelerators: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, cpus: float | None, accelerators: Mapping[str, float] | None) -> Demand:
        """A job asking for nothing takes ½ CPU; asking for GPUs only takes no CPU."""
        accs = {k: _count(v) for k, v in (accelerators or {}).items() if float(v) > 0}
        cpu = float(cpus or 0.0)
        if cpu <= 0 and not accs:
            cpu = DEFAULT_JOB_CPUS
        return cls(cpu, accs)

    def to_dict(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "accelerators": dict(self.accelerators)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Demand:
        accs = {str(k): float(v) for k, v in (data.get("accelerators") or {}).items()}
        return cls(float(data.get("cpus", 0.0)), accs)

    def label(self, num_nodes: int) -> str:
        """SkyPilot-style resources string: ``1x[A100:1]``, ``1x[T4:0.1]``, ``1x[CPU:0.5]``."""
        if self.accelerators:
            inner = ", ".join(f"{k}:{v:g}" for k, v in sorted(self.accelerators.items()))
        else:
            inner = f"CPU:{self.cpus:g}"
        return f"{num_nodes}x[{inner}]"


@dataclass(frozen=True)
class Capacity:
    """What every node of the cluster has (all nodes are alike)."""

    num_nodes: int
    cpus: float
    accelerators: Mapping[str, int]

    def device_ids(self, name: str) -> list[int]:
        start = 0
        for acc in sorted(self.accelerators):
            if acc == name:
                return list(range(start, start + int(self.accelerators[acc])))
            start += int(self.accelerators[acc])
        return []

    def check_fits_ever(self, demand: Demand, num_nodes: int) -> None:
        """Reject at submit a job that could never run on this cluster."""
        problems = []
        if num_nodes > self.num_nodes:
            problems.append(f"{num_nodes} nodes but the cluster has {self.num_nodes}")
        if demand.cpus > self.cpus + _EPS:
            problems.append(f"{demand.cpus:g} CPUs per node but nodes have {self.cpus:g}")
        for name, count in demand.accelerators.items():
            have = int(self.accelerators.get(name, 0))
            if count > have + _EPS:
                problems.append(f"{name}:{count:g} per node but nodes have {name}:{have}")
        if problems:
            raise ResourcesMismatchError(
                "Job can never fit on this cluster: asks " + "; ".join(problems) + "."
            )


def placed_ranks(devices: Mapping[int, Any], num_nodes: int) -> list[int]:
    """The node ranks a started job runs on, in its rank order (old records: 0..k-1)."""
    ranks = [int(r) for r in devices]
    return ranks if len(ranks) == num_nodes else list(range(num_nodes))


@dataclass
class Usage:
    """CPUs and device shares taken on each node rank by started jobs."""

    cpus: dict[int, float] = field(default_factory=dict)
    devices: dict[int, dict[int, float]] = field(default_factory=dict)

    @classmethod
    def of_jobs(cls, jobs: Iterable[Mapping[str, Any]]) -> Usage:
        usage = cls()
        for job in jobs:
            demand = Demand.from_dict(job["demand"])
            devices = {int(r): list(ids) for r, ids in (job.get("devices") or {}).items()}
            usage.take(demand, int(job["num_nodes"]), devices)
        return usage

    def _apply(self, demand: Demand, num_nodes: int, devices: Mapping[int, list[int]],
               sign: float) -> None:
        # A task names one accelerator type (spec), so every device it holds is of it.
        share = min(1.0, max(demand.accelerators.values(), default=1.0))
        for rank in placed_ranks(devices, num_nodes):
            self.cpus[rank] = max(0.0, self.cpus.get(rank, 0.0) + sign * demand.cpus)
            used = self.devices.setdefault(rank, {})
            for index in devices.get(rank, []):
                left = used.get(index, 0.0) + sign * share
                if left > _EPS:
                    used[index] = left
                else:
                    used.pop(index, None)

    def take(self, demand: Demand, num_nodes: int, devices: Mapping[int, list[int]]) -> None:
        self._apply(demand, num_nodes, devices, +1.0)

    def release(self, demand: Demand, num_nodes: int, devices: Mapping[int, list[int]]) -> None:
        """Undo ``take`` (a started job ended)."""
        self._apply(demand, num_nodes, devices, -1.0)

    def _fit_node(self, demand: Demand, rank: int, capacity: Capacity) -> list[int] | None:
        """Device indices this node gives the job now, or None if it has no room."""
        if self.cpus.get(rank, 0.0) + demand.cpus > capacity.cpus + _EPS:
            return None
        used = self.devices.get(rank, {})
        picked: list[int] = []
        for name, count in sorted(demand.accelerators.items()):
            ids = capacity.device_ids(name)
            if count < 1:
                room = [i for i in ids if used.get(i, 0.0) + count <= 1.0 + _EPS]
                if not room:
                    return None
                picked.append(room[0])
                continue
            free = [i for i in ids if used.get(i, 0.0) <= _EPS]
            if len(free) < int(count):
                return None
            picked.extend(free[: int(count)])
        return sorted(picked)

    def assign(self, demand: Demand, num_nodes: int, capacity: Capacity) -> Placement | None:
        """Where the job runs if it fits now (the first ``num_nodes`` nodes with room,
        in rank order, each with its device indices), else None."""
        result: Placement = {}
        for rank in range(capacity.num_nodes):
            picked = self._fit_node(demand, rank, capacity)
            if picked is not None:
                result[rank] = picked
                if len(result) == num_nodes:
                    return result
        return None
