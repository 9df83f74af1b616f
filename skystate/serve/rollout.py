"""``rollout(...)``: the next step of scaling or updating a service's replicas. Pure.

Given the live replicas (version and status), the version and count wanted, and the
update mode, it returns how many replicas of the wanted version to launch, which
replicas to drain, and which version the ready set serves:

- steady state: launch up to the count; drain extras (never-ready ones first, then the
  newest);
- rolling: surge one new replica, wait until it is READY, drain one old one; the number
  of READY replicas never goes below the count (old replicas that serve nothing go at
  once); old READY ones are drained only while READY stays at or above the count;
- blue-green: launch the whole new set; once all of it is READY flip the served
  version (once), then drain the old set.

A rollback is only a change of the wanted version (the decide step makes it): the
replicas of the failed version are then "old" and drained the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from skystate.serve.status import ReplicaStatus as R
from skystate.serve.status import UpdateMode

_GOING = (R.SHUTTING_DOWN,)
# Which replicas go first when there are too many: the least far along, then the newest.
DRAIN_ORDER = (R.PENDING, R.PROVISIONING, R.STARTING, R.UNKNOWN, R.NOT_READY, R.READY)


class Ranked(Protocol):
    @property
    def replica_id(self) -> int: ...

    @property
    def status(self) -> R: ...


def surplus(replicas: Sequence[Ranked], extra: int) -> list[int]:
    """The ``extra`` replicas to drain first (``DRAIN_ORDER``), sorted by id; scale-down,
    rollouts and the spot/on-demand split all choose by this one rule."""
    if extra <= 0:
        return []
    order = sorted(replicas, key=lambda r: (DRAIN_ORDER.index(r.status)
                                            if r.status in DRAIN_ORDER else 0,
                                            -r.replica_id))
    return sorted(r.replica_id for r in order[:extra])


@dataclass(frozen=True)
class Replica:
    replica_id: int
    version: int
    status: R


@dataclass(frozen=True)
class Rollout:
    launch: int = 0  # new replicas of the wanted version
    drain: tuple[int, ...] = ()
    serving_version: int | None = None
    reason: str = ""


def live(replicas: Sequence[Replica]) -> list[Replica]:
    return [r for r in replicas if not r.status.is_terminal() and r.status not in _GOING]


def _scale(new: list[Replica], count: int, version: int) -> Rollout:
    if len(new) < count:
        return Rollout(launch=count - len(new), serving_version=version,
                       reason=f"{len(new)} of {count} replica(s): launch "
                              f"{count - len(new)}")
    if len(new) > count:
        extra = surplus(new, len(new) - count)
        return Rollout(drain=tuple(extra), serving_version=version,
                       reason=f"{len(new)} replica(s), {count} wanted: drain {extra}")
    return Rollout(serving_version=version, reason=f"{count} replica(s) of version {version}")


def rollout(replicas: Sequence[Replica], version: int, count: int, mode: UpdateMode,
            serving_version: int | None) -> Rollout:
    running = live(replicas)
    new = [r for r in running if r.version == version]
    old = [r for r in running if r.version != version]
    if not old:
        return _scale(new, count, version)
    idle_old = tuple(r.replica_id for r in old if r.status is not R.READY)
    old_ready = sorted((r for r in old if r.status is R.READY), key=lambda r: r.replica_id)
    new_ready = [r for r in new if r.status is R.READY]
    if not old_ready:  # nothing old serves: bring the new version up in full
        plan = _scale(new, count, version)
        return Rollout(plan.launch, tuple(sorted({*plan.drain, *idle_old})), version,
                       f"no old replica serves; {plan.reason}")
    if mode is UpdateMode.BLUE_GREEN:
        return _blue_green(new, new_ready, old_ready, idle_old, version, count,
                           serving_version)
    starting = [r for r in new if r.status is not R.READY]
    ready = len(new_ready) + len(old_ready)
    if ready - 1 >= count:
        return Rollout(drain=(*idle_old, old_ready[0].replica_id),
                       serving_version=serving_version,
                       reason=f"{len(new_ready)} new ready: drain old replica "
                              f"{old_ready[0].replica_id}")
    if not starting and len(new) + len(old_ready) < count + 1:
        return Rollout(launch=1, drain=idle_old, serving_version=serving_version,
                       reason=f"rolling to version {version}: surge one "
                              f"({len(new_ready)} new ready, {len(old_ready)} old)")
    return Rollout(drain=idle_old, serving_version=serving_version,
                   reason=f"rolling to version {version}: waiting for "
                          f"{len(starting)} new replica(s) to be ready")


def _blue_green(new: list[Replica], new_ready: list[Replica], old_ready: list[Replica],
                idle_old: tuple[int, ...], version: int, count: int,
                serving_version: int | None) -> Rollout:
    if serving_version == version or len(new_ready) >= count:
        drain = tuple(sorted({*idle_old, *(r.replica_id for r in old_ready)}))
        return Rollout(drain=drain, serving_version=version,
                       reason=f"blue-green: version {version} serves; drain the old set")
    launch = max(0, count - len(new))
    return Rollout(launch=launch, drain=idle_old, serving_version=serving_version,
                   reason=f"blue-green: {len(new_ready)} of {count} new replica(s) ready"
                          + (f"; launch {launch}" if launch else ""))


def ready_ids(replicas: Sequence[Replica], mode: UpdateMode,
              serving_version: int | None) -> list[int]:
    """Who gets traffic: every READY replica (rolling), or the READY ones of the served
    version (blue-green; any READY one while it has none, so traffic never stops)."""
    ready = [r for r in replicas if r.status is R.READY]
    if mode is UpdateMode.BLUE_GREEN and serving_version is not None:
        served = [r for r in ready if r.version == serving_version]
        ready = served or ready
    return sorted(r.replica_id for r in ready)
