"""The load balancer's memory: the ready set it routes to, its own rotation, its counters.

``Rotation`` wraps the pure ``lb.pick`` with what the process learns itself: requests in
flight per replica, the round-robin turn, and replicas it took out after a failed
connection. Such a replica stays out until the controller writes a *newer* generation that
still lists it *and* at least ``REJOIN_AFTER`` seconds have passed (the controller's probe
decides whether it is really back).

``Stats`` is what ``lb_stats.json`` says: totals, per-replica counts, recent failures and
``recent``, the requests per unix second over the last minute (the autoscaler's QPS).
Nothing here does I/O or reads a clock: callers pass ``now``.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from skystate.serve.lb import ReadyReplica, ReadySet, pick

REJOIN_AFTER = 1.0  # seconds a replica stays out after a failed connection, at least
RECENT_SECONDS = 60
FAILURES_KEPT = 50


def parse_ready_set(text: str) -> ReadySet:
    """``ready_set.json``'s text as a ReadySet (ValueError if it is not one)."""
    return ReadySet.model_validate(json.loads(text))


@dataclass
class Rotation:
    """The ready set plus this process's view of it (in flight, taken out, the turn)."""

    ready: ReadySet = field(default_factory=ReadySet)
    in_flight: dict[int, int] = field(default_factory=dict)
    # replica id -> (generation it was taken out in, monotonic time it was taken out)
    out: dict[int, tuple[int, float]] = field(default_factory=dict)
    turn: int = 0

    def replace(self, ready: ReadySet) -> None:
        self.ready = ready
        listed = {r.replica_id for r in ready.replicas}
        self.out = {rid: v for rid, v in self.out.items() if rid in listed}

    def take_out(self, replica_id: int, now: float) -> None:
        self.out[replica_id] = (self.ready.generation, now)

    def excluded(self, now: float) -> set[int]:
        for rid, (generation, at) in list(self.out.items()):
            if self.ready.generation > generation and now - at >= REJOIN_AFTER:
                del self.out[rid]
        return set(self.out)

    def choose(self, tried: set[int], now: float) -> ReadyReplica | None:
        """The replica for the next attempt (not one already tried), counted in flight."""
        replica = pick(self.ready.replicas, self.ready.policy, self.in_flight, turn=self.turn,
                       excluded=self.excluded(now) | tried)
        if replica is not None:
            self.turn += 1
            self.in_flight[replica.replica_id] = self.in_flight.get(replica.replica_id, 0) + 1
        return replica

    def release(self, replica_id: int) -> None:
        left = self.in_flight.get(replica_id, 0) - 1
        if left > 0:
            self.in_flight[replica_id] = left
        else:
            self.in_flight.pop(replica_id, None)


@dataclass
class Stats:
    """Counters for ``lb_stats.json``."""

    requests_total: int = 0
    recent: dict[int, int] = field(default_factory=dict)
    per_replica: dict[int, dict[str, int]] = field(default_factory=dict)
    failed: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=FAILURES_KEPT))

    def request(self, now: float) -> None:
        """One client request arrived (``now``: unix time)."""
        self.requests_total += 1
        second = int(now)
        self.recent[second] = self.recent.get(second, 0) + 1

    def _replica(self, replica_id: int) -> dict[str, int]:
        return self.per_replica.setdefault(replica_id, {"requests": 0, "failures": 0})

    def sent(self, replica_id: int) -> None:
        self._replica(replica_id)["requests"] += 1

    def failure(self, replica_id: int, error: str, now: float) -> None:
        self._replica(replica_id)["failures"] += 1
        self.failed.append({"replica_id": replica_id, "at": now, "error": error})

    def snapshot(self, *, pid: int, port: int, now: float,
                 in_flight: dict[int, int]) -> dict[str, Any]:
        """The ``lb_stats.json`` document (``now``: unix time); prunes ``recent``."""
        oldest = int(now) - RECENT_SECONDS + 1
        for second in [s for s in self.recent if s < oldest]:
            del self.recent[second]
        return {
            "pid": pid, "port": port, "updated_at": now,
            "requests_total": self.requests_total,
            "recent": [[s, n] for s, n in sorted(self.recent.items())],
            "per_replica": {str(rid): {**counts, "in_flight": in_flight.get(rid, 0)}
                            for rid, counts in sorted(self.per_replica.items())},
            "failed": list(self.failed),
        }
