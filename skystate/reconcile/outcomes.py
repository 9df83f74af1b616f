"""What applying a plan reached: one outcome per action, and the apply's result.

Below both the executor (which produces them) and health (which records them), so
neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from skystate.reconcile.plan import Action

__all__ = ["ActionOutcome", "ApplyResult", "Observation"]


@dataclass(frozen=True)
class ActionOutcome:
    action: Action
    status: str  # succeeded | failed | skipped
    message: str
    seconds: float
    error: BaseException | None = None


@dataclass(frozen=True)
class Observation:
    """A wait a handler left for after the state lock (e.g. a service's load balancer
    listening): ``wait()`` returns what it saw, or raises, which fails the action."""

    action: Action
    wait: Callable[[], str]


@dataclass
class ApplyResult:
    outcomes: list[ActionOutcome] = field(default_factory=list)
    state_version: int = 0
    observations: list[Observation] = field(default_factory=list)  # run after the lock

    @property
    def ok(self) -> bool:
        return all(o.status == "succeeded" for o in self.outcomes)

    def failed(self) -> list[ActionOutcome]:
        return [o for o in self.outcomes if o.status != "succeeded"]
