"""Per-resource exponential backoff for the watch loop (controller-runtime's requeue).

A resource whose action failed waits ``base * 2**(failures-1)`` seconds (at most ``cap``)
before it is tried again; meanwhile it is *held back*: left out of the applies, and so is
everything that depends on it (a job on a held cluster). A success, or the resource no
longer needing any change, forgets it. Delays are deterministic (no jitter): one watch
process retries one resource, so there is no herd to spread out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from skystate.reconcile.plan import Action

DEFAULT_BASE = 1.0
DEFAULT_CAP = 300.0


@dataclass
class Retry:
    failures: int
    due: float  # monotonic time when it may be tried again
    delay: float
    error: str


@dataclass
class Backoff:
    base: float = DEFAULT_BASE
    cap: float = DEFAULT_CAP
    entries: dict[str, Retry] = field(default_factory=dict)  # address -> retry

    def delay_for(self, failures: int) -> float:
        return min(self.cap, self.base * 2 ** max(0, failures - 1))

    def failed(self, address: str, error: str, now: float) -> Retry:
        failures = self.entries[address].failures + 1 if address in self.entries else 1
        delay = self.delay_for(failures)
        retry = Retry(failures=failures, due=now + delay, delay=delay, error=error)
        self.entries[address] = retry
        return retry

    def succeeded(self, address: str) -> None:
        self.entries.pop(address, None)

    def keep_only(self, addresses: Iterable[str]) -> None:
        """Forget resources that no longer need a change (converged or gone)."""
        wanted = set(addresses)
        for address in list(self.entries):
            if address not in wanted:
                del self.entries[address]

    def waiting(self, now: float) -> dict[str, Retry]:
        return {a: r for a, r in self.entries.items() if r.due > now}

    def next_due(self, now: float) -> float | None:
        dues = [r.due for r in self.entries.values() if r.due > now]
        return min(dues) if dues else None


def split_held(changes: list[Action], waiting: Iterable[str]) -> tuple[list[Action],
                                                                       list[Action]]:
    """(ready, held): held are the waiting resources and whatever depends on them."""
    held_addresses = set(waiting)
    by_id = {a.id: a for a in changes}
    held: dict[str, Action] = {}
    grew = True
    while grew:
        grew = False
        for action in changes:
            if action.id in held:
                continue
            if _is_held(action, held_addresses, held, by_id):
                held[action.id] = action
                held_addresses.add(action.address)
                grew = True
    ready = [a for a in changes if a.id not in held]
    return ready, [a for a in changes if a.id in held]


def _is_held(action: Action, held_addresses: set[str], held: dict[str, Action],
             by_id: dict[str, Action]) -> bool:
    if action.address in held_addresses:
        return True
    if action.kind == "Job" and action.cluster and f"Cluster/{action.cluster}" in held_addresses:
        return True  # a job target would pull its cluster into the apply
    return any(d in held or (d in by_id and by_id[d].address in held_addresses)
               for d in action.depends_on)
