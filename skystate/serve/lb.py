"""Which ready replica gets the next request: pure, no sockets, no clock.

The controller writes the *ready set* (``ready_set.json``, a versioned list of replicas);
the load-balancer process reads it and asks ``pick`` for each request, passing what only
it knows: how many requests each replica is serving (``in_flight``), the round-robin turn,
and the replicas it took out of rotation itself (a failed connection) or already tried for
this request (``excluded``).

- ``round_robin``: the eligible replicas in ready-set order, one after another.
- ``least_load``: the eligible replica with the fewest requests in flight; among equally
  loaded ones, the turn decides (so idle replicas share the traffic evenly).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Policy = Literal["round_robin", "least_load"]
POLICIES: tuple[str, ...] = ("round_robin", "least_load")


class ReadyReplica(BaseModel):
    """One replica that may get traffic: its id, base URL and service version."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    replica_id: int
    url: str
    version: int = 1


class ReadySet(BaseModel):
    """``ready_set.json``: what the controller lets the load balancer route to."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    generation: int = 0
    policy: Policy = "round_robin"
    replicas: tuple[ReadyReplica, ...] = Field(default_factory=tuple)


def pick(replicas: Sequence[ReadyReplica], policy: str, in_flight: Mapping[int, int], *,
         turn: int = 0, excluded: Collection[int] = ()) -> ReadyReplica | None:
    """The replica for the next request, or None when no replica is eligible.

    ``turn`` is the load balancer's request counter (it advances it after each pick);
    ``excluded`` are replica ids that must not get this request. An unknown ``policy``
    is ``round_robin``.
    """
    eligible = [r for r in replicas if r.replica_id not in excluded]
    if not eligible:
        return None
    if policy == "least_load":
        least = min(in_flight.get(r.replica_id, 0) for r in eligible)
        eligible = [r for r in eligible if in_flight.get(r.replica_id, 0) == least]
    return eligible[turn % len(eligible)]
