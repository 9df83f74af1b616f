"""Typed errors, rendered once at the edge (CLI/SDK) without a traceback.

Tree::

    SkyStateError                      base of everything skystate raises on purpose
    ├── SpecError                      bad input files; carries every SpecIssue found
    ├── PlanError                      the plan is blocked (e.g. protect: true)
    ├── StalePlanError                 a saved plan no longer matches the state
    ├── StateLockedError               another writer holds the state lock
    ├── InsecureHomeError              SKYSTATE_HOME cannot be made owner-only
    ├── ApplyFailedError               some actions of an apply failed (outcomes kept)
    ├── ProviderError                  a provider call failed; ``transient`` says retry
    │   └── CommandError               a command on a node failed (seed's attributes)
    └── the SkyPilot SDK's exceptions, same names and attributes:
        ClusterDoesNotExist, ClusterNotUpError, NotSupportedError,
        ResourcesMismatchError, ResourcesUnavailableError(failover_history)
        (└── NoCloudAccessError: needs a cloud, none enabled), InvalidClusterNameError,
        ClusterOwnerIdentityMismatchError, ClusterOwnerIdentitiesMismatchError,
        CloudUserIdentityError
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SkyStateError(Exception):
    """Base of every error skystate raises on purpose."""


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a state file: where it is and what is wrong."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        loc = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{loc}:{field} {self.message}"


class SpecError(SkyStateError, ValueError):
    """Every problem found in a set of files, reported at once.

    ``issues`` holds them all; its text shows the first ``SHOWN_ISSUES`` and a count of
    the rest, so a directory of 10^4 broken files prints a screenful, not a flood.
    """

    SHOWN_ISSUES = 50

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(self.shown()))

    def shown(self) -> list[str]:
        """The first ``SHOWN_ISSUES`` issues as text, then "... and N more errors"."""
        lines = [str(i) for i in self.issues[: self.SHOWN_ISSUES]]
        rest = len(self.issues) - self.SHOWN_ISSUES
        if rest > 0:
            lines.append(f"... and {rest} more error{'s' if rest != 1 else ''}")
        return lines


class PlanError(SkyStateError):
    """The plan cannot be applied as is (blocked actions, errored plan)."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        self.errors = list(errors or [])
        detail = "".join(f"\n  - {e}" for e in self.errors)
        super().__init__(f"{message}:{detail}" if detail else message)


class StalePlanError(SkyStateError):
    """The state changed since the saved plan was made."""


class StateLockedError(SkyStateError):
    """Another process holds the state lock past the timeout."""


class InsecureHomeError(SkyStateError):
    """``SKYSTATE_HOME`` cannot be made owner-only (another user's folder, ``~`` or ``/``)."""


class ApplyFailedError(SkyStateError):
    """Some actions of an apply failed or were skipped. What the others reached is
    recorded all the same; ``outcomes`` holds every action's outcome (address, type,
    status, message, seconds) and ``state_version`` the state it left."""

    def __init__(self, message: str, outcomes: list[dict[str, object]] | None = None,
                 state_version: int = 0) -> None:
        self.outcomes = list(outcomes or [])
        self.state_version = state_version
        super().__init__(message)


class ProviderError(SkyStateError):
    """A provider call failed. ``transient`` errors are retried with backoff."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        self.transient = transient
        super().__init__(message)


# --- SkyPilot SDK exceptions (names and attributes as in the seed) ---------------


class ClusterDoesNotExist(SkyStateError, ValueError):
    """The named cluster is not in the state."""


class ClusterNotUpError(SkyStateError):
    def __init__(self, message: str, cluster_status: object = None, handle: object = None):
        self.cluster_status = cluster_status
        self.handle = handle
        super().__init__(message)


class NotSupportedError(SkyStateError):
    pass


class ResourcesMismatchError(SkyStateError):
    pass


class InvalidClusterNameError(SkyStateError, ValueError):
    pass


class ResourcesUnavailableError(SkyStateError):
    """No offer could be provisioned.

    ``failover_history`` is empty iff no feasible offer was found; otherwise it
    holds one exception per offer tried.
    """

    def __init__(
        self,
        message: str,
        no_failover: bool = False,
        failover_history: list[Exception] | None = None,
    ) -> None:
        self.no_failover = no_failover
        self.failover_history: list[Exception] = list(failover_history or [])
        super().__init__(message)

    def with_failover_history(self, history: list[Exception]) -> ResourcesUnavailableError:
        self.failover_history = list(history)
        return self


class CommandError(ProviderError):
    """A command on a cluster's node failed (SkyPilot's: "any ssh command error"): the
    workdir/file-mount sync or a runtime call over SSH. A ``ProviderError`` too, so
    failover and retries treat it as any failed provider call."""

    def __init__(
        self, returncode: int, command: str, error_msg: str, detailed_reason: str | None = None
    ) -> None:
        self.returncode = returncode
        self.command = command
        self.error_msg = error_msg
        self.detailed_reason = detailed_reason
        super().__init__(f"Command {command!r} failed with return code {returncode}: {error_msg}")


class NoCloudAccessError(ResourcesUnavailableError):
    """The request needs a cloud (nothing local or in an SSH pool can run it) and no cloud
    provider is enabled. A ``ResourcesUnavailableError`` too (``failover_history`` empty),
    so code written for "no offer" keeps working."""


class ClusterOwnerIdentityMismatchError(SkyStateError):
    pass


ClusterOwnerIdentitiesMismatchError = ClusterOwnerIdentityMismatchError


class CloudUserIdentityError(SkyStateError):
    pass


class JobExitCode(enum.IntEnum):
    """Exit codes of ``tail_logs`` / ``skystate logs``, as SkyPilot's."""

    SUCCEEDED = 0
    FAILED = 100
    NOT_FINISHED = 101
    NOT_FOUND = 102
    CANCELLED = 103


class RequestInterruptedError(SkyStateError):
    """The API server died (or was killed) while the request was running."""


class RequestCancelledError(SkyStateError):
    """``sky.get`` of a request that was cancelled with ``api_cancel``."""


class ApiServerError(SkyStateError):
    """The API server cannot be reached, started or authenticated against."""


class LoadBalancerError(SkyStateError):
    """A service's load balancer could not be started or stopped."""
