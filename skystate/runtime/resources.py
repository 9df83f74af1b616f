"""Resource accounting for job-queue scheduling: what a job demands, what is free.

A job with ``num_nodes = k`` runs on ranks ``0..k-1`` and takes its demand on *each* of
them (SkyPilot's per-node resources). Accelerators are numbered devices: a node with
``{"A100": 4}`` has devices 0-3; a job asking ``{"A100": 2}`` gets the two lowest free
indices, which become its ``CUDA_VISIBLE_DEVICES`` on that node. With several accelerator
types on one node, indices follow the sorted type names (``{"A100": 2, "T4": 2}``:
A100 = 0,1; T4 = 2,3).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from skystate.exceptions import ResourcesMismatchError

DEFAULT_JOB_CPUS = 0.5  # SkyPilot's default demand of a job that asks for nothing
_EPS = 1e-9


@dataclass(frozen=True)
class Demand:
    """What one job takes on each node it runs on."""

    cpus: float = 0.0
    accelerators: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, cpus: float | None, accelerators: Mapping[str, int] | None) -> Demand:
        """A job asking for nothing takes ½ CPU; asking for GPUs only takes no CPU."""
        accs = {k: int(v) for k, v in (accelerators or {}).items() if int(v) > 0}
        cpu = float(cpus or 0.0)
        if cpu <= 0 and not accs:
            cpu = DEFAULT_JOB_CPUS
        return cls(cpu, accs)

    def to_dict(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "accelerators": dict(self.accelerators)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Demand:
        return cls(float(data.get("cpus", 0.0)), dict(data.get("accelerators", {})))

    def label(self, num_nodes: int) -> str:
        """SkyPilot-style resources string: ``1x[A100:1]`` or ``1x[CPU:0.5]``."""
        if self.accelerators:
            inner = ", ".join(f"{k}:{v}" for k, v in sorted(self.accelerators.items()))
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
            if count > have:
                problems.append(f"{name}:{count} per node but nodes have {name}:{have}")
        if problems:
            raise ResourcesMismatchError(
                "Job can never fit on this cluster: asks " + "; ".join(problems) + "."
            )


@dataclass
class Usage:
    """CPUs and device indices taken on each rank by started jobs."""

    cpus: dict[int, float] = field(default_factory=dict)
    devices: dict[int, set[int]] = field(default_factory=dict)

    @classmethod
    def of_jobs(cls, jobs: Iterable[Mapping[str, Any]]) -> Usage:
        usage = cls()
        for job in jobs:
            demand = Demand.from_dict(job["demand"])
            devices = {int(r): list(ids) for r, ids in (job.get("devices") or {}).items()}
            usage.take(demand, int(job["num_nodes"]), devices)
        return usage

    def take(self, demand: Demand, num_nodes: int, devices: Mapping[int, list[int]]) -> None:
        for rank in range(num_nodes):
            self.cpus[rank] = self.cpus.get(rank, 0.0) + demand.cpus
            self.devices.setdefault(rank, set()).update(devices.get(rank, []))

    def release(self, demand: Demand, num_nodes: int, devices: Mapping[int, list[int]]) -> None:
        """Undo ``take`` (a started job ended)."""
        for rank in range(num_nodes):
            self.cpus[rank] = max(0.0, self.cpus.get(rank, 0.0) - demand.cpus)
            self.devices.get(rank, set()).difference_update(devices.get(rank, []))

    def assign(
        self, demand: Demand, num_nodes: int, capacity: Capacity
    ) -> dict[int, list[int]] | None:
        """Device indices per rank if the job fits now, else None."""
        result: dict[int, list[int]] = {}
        for rank in range(num_nodes):
            if self.cpus.get(rank, 0.0) + demand.cpus > capacity.cpus + _EPS:
                return None
            taken = self.devices.get(rank, set())
            picked: list[int] = []
            for name, count in sorted(demand.accelerators.items()):
                free = [i for i in capacity.device_ids(name) if i not in taken]
                if len(free) < count:
                    return None
                picked.extend(free[:count])
            result[rank] = sorted(picked)
        return result
