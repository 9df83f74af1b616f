"""A plan is data: ordered typed actions with before/after, field diffs and reasons.

Like OpenTofu's ``plans.Changes``: ``apply`` is described entirely by the actions;
``reason`` and ``changes`` are for people. A plan serialises to JSON and remembers the
state version it was made at, so applying a saved plan refuses a stale one.
"""

from __future__ import annotations

import enum
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PLAN_FORMAT = "skystate-plan/1"


class ActionType(str, enum.Enum):
    CREATE = "create"
    START = "start"
    STOP = "stop"
    DOWN = "down"
    REPLACE = "replace"
    UPDATE = "update"
    SET_AUTOSTOP = "set-autostop"
    SUBMIT_JOB = "submit-job"
    CANCEL_JOB = "cancel-job"
    SERVE_UP = "serve-up"
    SERVE_UPDATE = "serve-update"
    SERVE_DOWN = "serve-down"
    NOOP = "noop"


class FieldChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    before: Any = None
    after: Any = None


class Action(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: ActionType
    kind: str  # Cluster, Job, ManagedJob, Service
    address: str  # Cluster/train, Job/train/finetune
    name: str
    cluster: str | None = None
    reason: str = ""
    before: dict[str, Any] | None = None  # the recorded state
    after: dict[str, Any] | None = None  # the desired spec the executor applies
    changes: list[FieldChange] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)  # action ids
    offer: dict[str, Any] | None = None
    # The next-best offers, in order: a create that hits a capacity, quota or access error
    # on ``offer`` tries these (the optimizer's failover order), recorded in the plan.
    failover_offers: list[dict[str, Any]] = Field(default_factory=list)
    hourly_before: float = 0.0
    hourly_after: float = 0.0
    warnings: list[str] = Field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.type.value} {self.address}"

    @property
    def is_change(self) -> bool:
        return self.type is not ActionType.NOOP


class Plan(BaseModel):
    format: Literal["skystate-plan/1"] = PLAN_FORMAT
    created_at: float = Field(default_factory=time.time)
    state_dir: str | None = None
    owner: str
    state_version: int
    refreshed: bool = False
    targets: list[str] = Field(default_factory=list)
    prune: bool = True
    providers: dict[str, Any] = Field(default_factory=dict)  # Project.providers, for apply
    # Clusters without infra were optimized over these enabled providers (the others: why
    # not enabled); empty when every cluster names its infra. For people only.
    considered_providers: list[str] = Field(default_factory=list)
    skipped_providers: dict[str, str] = Field(default_factory=dict)
    actions: list[Action] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    @property
    def changes(self) -> list[Action]:
        return [a for a in self.actions if a.is_change]

    @property
    def has_changes(self) -> bool:
        return any(a.is_change for a in self.actions)

    @property
    def hourly_delta(self) -> float:
        return sum(a.hourly_after - a.hourly_before for a in self.actions)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for action in self.actions:
            counts[action.type.value] = counts.get(action.type.value, 0) + 1
        return counts

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.model_validate_json(text)
