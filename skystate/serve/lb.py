"""Which ready replica gets the next request: pure, no sockets, no clock.

The controller writes the *ready set* (``ready_set.json``, a versioned list of replicas);
the load-balancer process reads it and asks ``pick`` for each request, passing what only
it knows: how many requests each replica is serving (``in_flight``), the round-robin turn,
and the replicas it took out of rotation itself (a failed connection) or already tried for
this request (``excluded``).

- ``round_robin``: the eligible replicas in ready-set order, one after another.
- ``least_load``: the eligible replica with the fewest requests in flight; among equally
  loaded ones, the turn decides (so idle replicas share the traffic evenly).
- ``instance_aware_least_load`` (SkyPilot 0.14's): least load, the load of each replica
  divided by its capacity, the ``target_qps_per_replica`` of its accelerator
  (``ReadySet.target_qps``, matched by ``capacity``). A replica rated 3 QPS may have three
  times the requests in flight of one rated 1 QPS before it counts as busier.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Policy = Literal["round_robin", "least_load", "instance_aware_least_load"]
POLICIES: tuple[str, ...] = ("round_robin", "least_load", "instance_aware_least_load")
UNKNOWN_CAPACITY = 1.0  # SkyPilot's figure for an accelerator the mapping does not name


class ReadyReplica(BaseModel):
    """One replica that may get traffic: its id, base URL, service version and (optional)
    accelerator, e.g. ``A100`` or ``A100:8``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    replica_id: int
    url: str
    version: int = 1
    accelerator: str | None = None


class ReadySet(BaseModel):
    """``ready_set.json``: what the controller lets the load balancer route to.

    ``target_qps`` (optional): ``target_qps_per_replica`` by accelerator, for
    ``instance_aware_least_load``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    generation: int = 0
    policy: Policy = "round_robin"
    replicas: tuple[ReadyReplica, ...] = Field(default_factory=tuple)
    target_qps: dict[str, float] | None = None


def capacity(accelerator: str | None, target_qps: Mapping[str, float] | None) -> float:
    """A replica's weight: the QPS of its accelerator. ``A100:8`` matches the key
    ``A100:8`` first, then ``A100``; ``A100`` matches ``A100`` and then any ``A100:N``.
    No match, or a figure that is not positive: ``UNKNOWN_CAPACITY``."""
    if not accelerator or not target_qps:
        return UNKNOWN_CAPACITY
    name = accelerator.split(":")[0]
    lowered = {k.lower(): v for k, v in target_qps.items()}
    found = lowered.get(accelerator.lower(), lowered.get(name.lower()))
    if found is None:
        found = next((v for k, v in lowered.items() if k.split(":")[0] == name.lower()), None)
    return float(found) if found is not None and found > 0 else UNKNOWN_CAPACITY


def pick(replicas: Sequence[ReadyReplica], policy: str, in_flight: Mapping[int, int], *,
         turn: int = 0, excluded: Collection[int] = (),
         target_qps: Mapping[str, float] | None = None) -> ReadyReplica | None:
    """The replica for the next request, or None when no replica is eligible.

    ``turn`` is the load balancer's request counter (it advances it after each pick);
    ``excluded`` are replica ids that must not get this request; ``target_qps`` weighs
    ``instance_aware_least_load``. An unknown ``policy`` is ``round_robin``.
    """
    eligible = [r for r in replicas if r.replica_id not in excluded]
    if not eligible:
        return None
    if policy in ("least_load", "instance_aware_least_load"):
        weighted = policy == "instance_aware_least_load"

        def load(replica: ReadyReplica) -> float:
            busy = in_flight.get(replica.replica_id, 0)
            return busy / capacity(replica.accelerator, target_qps) if weighted else busy

        loads = [load(r) for r in eligible]
        least = min(loads)
        eligible = [r for r, x in zip(eligible, loads, strict=True) if x == least]
    return eligible[turn % len(eligible)]
