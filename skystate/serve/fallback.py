"""Spot replicas with an on-demand fallback (SkyPilot's ``FallbackRequestRateAutoscaler``
rules, written afresh). Pure: no I/O, no clock.

With ``resources.use_spot`` a service's replicas are spot, except:

- ``base_ondemand_fallback_replicas``: that many replicas are on-demand, always;
- ``dynamic_ondemand_fallback``: on top, one on-demand replica for every wanted spot
  replica that is not READY (being made, starting, or preempted and being replaced). Once
  the spot replicas are READY again the extra on-demand ones are drained.

The on-demand count is capped at the autoscaler's target (overprovisioned replicas are
spot only). A replica's kind is recorded when it is created (``is_spot`` on the replica
record) and its cluster is launched with ``use_spot`` set to match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from skystate.serve.rollout import surplus
from skystate.serve.status import ReplicaStatus as R


@dataclass(frozen=True)
class Mix:
    """A version's spot/on-demand policy."""

    use_spot: bool = False
    base_ondemand: int = 0
    dynamic: bool = False
    spot_placer: str | None = None  # dynamic_fallback: serve/spot_placer.py

    @property
    def falls_back(self) -> bool:
        return self.use_spot and (self.base_ondemand > 0 or self.dynamic)


@dataclass(frozen=True)
class Member:
    replica_id: int
    is_spot: bool
    status: R


@dataclass(frozen=True)
class Split:
    launch_spot: int = 0
    launch_ondemand: int = 0
    drain: tuple[int, ...] = ()
    reason: str = ""

    @property
    def launches(self) -> list[bool]:
        """One ``is_spot`` per replica to launch: on-demand first (they cover)."""
        return [False] * self.launch_ondemand + [True] * self.launch_spot


def is_spot(replica: dict[str, Any], mix: Mix) -> bool:
    """A replica's kind: as recorded, else (a record from before the field) the task's."""
    recorded = replica.get("is_spot")
    return mix.use_spot if recorded is None else bool(recorded)


def members(replicas: Sequence[dict[str, Any]], version: int, mix: Mix) -> list[Member]:
    """The live replicas of ``version`` (not terminal, not draining)."""
    return [Member(r["replica_id"], is_spot(r, mix), R(r["status"]))
            for r in replicas if int(r["version"]) == version
            and not R(r["status"]).is_terminal() and r["status"] != R.SHUTTING_DOWN.value]


def wanted(members: Sequence[Member], target: int, count: int,
           mix: Mix) -> tuple[int, int]:
    """(spot, on-demand) replicas wanted now, given the live replicas of the version."""
    spot = max(0, count - mix.base_ondemand)
    ready_spot = sum(1 for m in members if m.is_spot and m.status is R.READY)
    ondemand = mix.base_ondemand + (max(0, spot - ready_spot) if mix.dynamic else 0)
    return spot, min(ondemand, target)


def split(members: Sequence[Member], target: int, count: int, mix: Mix) -> Split:
    """What to launch and drain so the live replicas of the wanted version (``members``)
    match the mix. ``target`` is the autoscaler's count, ``count`` that plus overprovision."""
    want_spot, want_ondemand = wanted(members, target, count, mix)
    spot = [m for m in members if m.is_spot]
    ondemand = [m for m in members if not m.is_spot]
    drain = sorted(surplus(spot, len(spot) - want_spot)
                   + surplus(ondemand, len(ondemand) - want_ondemand))
    ready_spot = sum(1 for m in spot if m.status is R.READY)
    result = Split(launch_spot=max(0, want_spot - len(spot)),
                   launch_ondemand=max(0, want_ondemand - len(ondemand)), drain=tuple(drain))
    reason = (f"spot {len(spot)} ({ready_spot} ready) of {want_spot}, on-demand "
              f"{len(ondemand)} of {want_ondemand}")
    if result.launch_spot or result.launch_ondemand:
        reason += f": launch {result.launch_spot} spot, {result.launch_ondemand} on-demand"
    if drain:
        reason += f": drain {drain}"
    return Split(result.launch_spot, result.launch_ondemand, result.drain, reason)


def kinds(members: Sequence[Member], mix: Mix, launch: int) -> list[bool]:
    """``is_spot`` of each replica a rollout step launches (an update's new replicas):
    on-demand while fewer than the base on-demand count are live, spot after that."""
    if not mix.use_spot:
        return [False] * launch
    ondemand = sum(1 for m in members if not m.is_spot)
    out = []
    for _ in range(launch):
        out.append(ondemand >= mix.base_ondemand)
        ondemand += 0 if out[-1] else 1
    return out


def mix_of(config: dict[str, Any], spec: Any) -> Mix:
    """A task config's mix: ``use_spot`` of its resources (or of any alternative) and
    the service section's fallback fields (``spec``: a ``ServiceSpec``)."""
    resources = config.get("resources") or {}
    items = resources if isinstance(resources, list) else [resources]
    alternatives = [*items]
    for item in items:
        if isinstance(item, dict):
            alternatives += list(item.get("any_of") or []) + list(item.get("ordered") or [])
    use_spot = any(isinstance(r, dict) and r.get("use_spot") is True for r in alternatives)
    return Mix(use_spot=use_spot, base_ondemand=int(spec.base_ondemand_fallback_replicas),
               dynamic=bool(spec.dynamic_ondemand_fallback),
               spot_placer=spec.spot_placer if use_spot else None)


def with_spot(resources: Any, use_spot: bool) -> Any:
    """``Resources`` (and its alternatives) with ``use_spot`` set, for one replica."""
    update: dict[str, Any] = {"use_spot": use_spot}
    for key in ("any_of", "ordered"):
        items = getattr(resources, key, None)
        if items:
            update[key] = [with_spot(r, use_spot) for r in items]
    return resources.model_copy(update=update)
