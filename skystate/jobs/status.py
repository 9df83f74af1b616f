"""Managed-job statuses (SkyPilot's names and meanings) and what an observation saw.

``ManagedJobStatus`` is what users see; ``Seen`` is what one look at the job's cluster
found. ``Seen.UNKNOWN`` (an error, a timeout, an unreachable agent) is never read as
"gone": only a fresh, successful answer that omits the cluster means GONE.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ManagedJobStatus(str, enum.Enum):
    PENDING = "PENDING"  # waiting to launch (queued, or capacity backoff; see the reason)
    STARTING = "STARTING"  # its cluster is being launched (first attempt)
    RUNNING = "RUNNING"  # submitted to its cluster
    RECOVERING = "RECOVERING"  # preempted or restarting: a new cluster is on its way
    CANCELLING = "CANCELLING"  # cancel requested; its cluster is being torn down
    SUCCEEDED = "SUCCEEDED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"  # the user program failed (after any restarts on errors)
    FAILED_SETUP = "FAILED_SETUP"
    FAILED_PRECHECKS = "FAILED_PRECHECKS"  # can never run as given (no offer, bad task)
    FAILED_NO_RESOURCE = "FAILED_NO_RESOURCE"
    FAILED_CONTROLLER = "FAILED_CONTROLLER"  # the controller itself failed (reason recorded)

    def is_terminal(self) -> bool:
        return self in _TERMINAL

    def is_failed(self) -> bool:
        return self.name.startswith("FAILED")

    @classmethod
    def terminal_statuses(cls) -> list[ManagedJobStatus]:
        return [s for s in cls if s.is_terminal()]

    def __str__(self) -> str:
        return self.value


_TERMINAL = frozenset({
    ManagedJobStatus.SUCCEEDED, ManagedJobStatus.CANCELLED, ManagedJobStatus.FAILED,
    ManagedJobStatus.FAILED_SETUP, ManagedJobStatus.FAILED_PRECHECKS,
    ManagedJobStatus.FAILED_NO_RESOURCE, ManagedJobStatus.FAILED_CONTROLLER,
})


class Seen(str, enum.Enum):
    UP = "up"
    STOPPED = "stopped"
    GONE = "gone"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ControllerHandle:
    """Where the jobs controller runs: embedded in this home's API server (no VM)."""

    kind: str
    home: str
    api_server_pid: int
