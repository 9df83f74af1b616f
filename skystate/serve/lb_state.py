"""The load balancer's memory: the ready set it routes to, its own rotation, its counters.

``Rotation`` wraps the pure ``lb.pick`` with what the process learns itself: requests in
flight per replica, the round-robin turn, and replicas it took out after a failed
connection. A replica taken out is re-admitted only once a connection check to it
succeeds (the process runs the checks; ``due_checks`` says which are due):

- the first check comes ``TAKE_OUT_SECONDS`` after the take-out; a check that fails
  doubles the wait before the next one, up to ``CHECK_BACKOFF_MAX``;
- a replica taken out again within ``FLAP_WINDOW`` of coming back waits twice as long
  before its first check (up to ``TAKE_OUT_MAX``), so a flapping replica costs ever
  fewer retries;
- a newer generation of the ready set that still lists it (the controller re-confirms
  it) makes its check due at once; one that drops it forgets it.

It never comes back while it still refuses connections. ``Stats`` is what
``lb_stats.json`` says: totals, per-replica counts, recent failures and ``recent``, the
requests per unix second over the last minute (the autoscaler's QPS). Nothing here does
I/O or reads a clock: callers pass ``now``.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from skystate.serve.lb import ReadyReplica, ReadySet, pick

TAKE_OUT_SECONDS = 0.5  # before the first check after a take-out
TAKE_OUT_MAX = 10.0
CHECK_BACKOFF_MAX = 5.0  # between checks of a replica that still fails
FLAP_WINDOW = 30.0  # taken out again this soon after coming back: a longer wait
RECENT_SECONDS = 60
FAILURES_KEPT = 50


def parse_ready_set(text: str) -> ReadySet:
    """``ready_set.json``'s text as a ReadySet (ValueError if it is not one)."""
    return ReadySet.model_validate(json.loads(text))


@dataclass
class Out:
    """A replica out of rotation: since when, and when to check it next."""

    generation: int
    since: float
    next_check: float
    wait: float
    checking: bool = False


@dataclass
class Rotation:
    """The ready set plus this process's view of it (in flight, taken out, the turn)."""

    ready: ReadySet = field(default_factory=ReadySet)
    in_flight: dict[int, int] = field(default_factory=dict)
    out: dict[int, Out] = field(default_factory=dict)
    # replica id -> (take-outs in a row, monotonic time it last came back)
    strikes: dict[int, tuple[int, float]] = field(default_factory=dict)
    turn: int = 0

    def replace(self, ready: ReadySet) -> None:
        listed = {r.replica_id for r in ready.replicas}
        self.out = {rid: o for rid, o in self.out.items() if rid in listed}
        self.strikes = {rid: s for rid, s in self.strikes.items() if rid in listed}
        if ready.generation > self.ready.generation:  # re-confirmed: check it at once
            for o in self.out.values():
                o.next_check = -math.inf
        self.ready = ready

    def take_out(self, replica_id: int, now: float) -> None:
        if replica_id in self.out:  # requests in flight failing together: one take-out
            return
        count, back_at = self.strikes.get(replica_id, (0, -math.inf))
        count = count + 1 if now - back_at < FLAP_WINDOW else 1
        self.strikes[replica_id] = (count, back_at)
        wait = min(TAKE_OUT_MAX, TAKE_OUT_SECONDS * 2 ** (count - 1))
        self.out[replica_id] = Out(self.ready.generation, now, now + wait,
                                   min(wait, CHECK_BACKOFF_MAX))

    def due_checks(self, now: float) -> list[ReadyReplica]:
        """The replicas out of rotation whose connection check is due (now marked as
        being checked: report with ``check_passed`` or ``check_failed``)."""
        due = [r for r in self.ready.replicas if (o := self.out.get(r.replica_id))
               and not o.checking and o.next_check <= now]
        for replica in due:
            self.out[replica.replica_id].checking = True
        return due

    def check_passed(self, replica_id: int, now: float) -> None:
        if self.out.pop(replica_id, None) is not None:
            count, _ = self.strikes.get(replica_id, (1, now))
            self.strikes[replica_id] = (count, now)

    def check_failed(self, replica_id: int, now: float) -> None:
        o = self.out.get(replica_id)
        if o is not None:
            o.checking = False
            o.wait = min(CHECK_BACKOFF_MAX, o.wait * 2)
            o.next_check = now + o.wait

    def excluded(self) -> set[int]:
        return set(self.out)

    def choose(self, tried: set[int]) -> ReadyReplica | None:
        """The replica for the next attempt (not one already tried), counted in flight."""
        replica = pick(self.ready.replicas, self.ready.policy, self.in_flight, turn=self.turn,
                       excluded=self.excluded() | tried, target_qps=self.ready.target_qps)
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
