"""Status enums shared by the SDK, the store and the runtime (values as SkyPilot's)."""

from __future__ import annotations

import enum


class ClusterStatus(str, enum.Enum):
    INIT = "INIT"
    UP = "UP"
    STOPPED = "STOPPED"

    def __str__(self) -> str:
        return self.value


class JobStatus(str, enum.Enum):
    INIT = "INIT"
    PENDING = "PENDING"
    SETTING_UP = "SETTING_UP"
    RUNNING = "RUNNING"
    FAILED_DRIVER = "FAILED_DRIVER"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    FAILED_SETUP = "FAILED_SETUP"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value

    def is_terminal(self) -> bool:
        return self in _TERMINAL_JOB_STATUSES


_TERMINAL_JOB_STATUSES = frozenset(
    {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.FAILED_SETUP,
        JobStatus.FAILED_DRIVER,
        JobStatus.CANCELLED,
    }
)


class StatusRefreshMode(str, enum.Enum):
    NONE = "NONE"
    AUTO = "AUTO"
    FORCE = "FORCE"


class OptimizeTarget(enum.Enum):
    COST = 0
    TIME = 1
