"""Service and replica statuses (SkyPilot's names and meanings), the components whose
logs ``tail_logs`` prints, and the update modes.

``ReplicaStatus`` is what a replica is as the controller last decided it; a failed probe
of a READY replica makes it NOT_READY (out of the ready set at once), and only repeated
failures, its program exiting, or its cluster gone (PREEMPTED) make it a failure that is
replaced.
"""

from __future__ import annotations

import enum


class ServiceStatus(str, enum.Enum):
    CONTROLLER_INIT = "CONTROLLER_INIT"  # recorded; its load balancer is being started
    REPLICA_INIT = "REPLICA_INIT"  # load balancer up; no replica is ready yet
    CONTROLLER_FAILED = "CONTROLLER_FAILED"  # the controller cannot run it (reason recorded)
    READY = "READY"  # at least one replica is ready and serves traffic
    SHUTTING_DOWN = "SHUTTING_DOWN"  # down requested: replicas and load balancer going
    FAILED = "FAILED"  # its first version never became ready (no replica is replaced)
    FAILED_CLEANUP = "FAILED_CLEANUP"  # a replica could not be torn down (see the reason)
    NO_REPLICA = "NO_REPLICA"  # no replica is wanted (0 replicas) or all are gone

    def __str__(self) -> str:
        return self.value


class ReplicaStatus(str, enum.Enum):
    PENDING = "PENDING"  # recorded, waiting to launch (backoff after failures)
    PROVISIONING = "PROVISIONING"  # its cluster is being launched
    STARTING = "STARTING"  # its program runs; the readiness probe has not passed yet
    READY = "READY"  # probes pass: it is in the load balancer's ready set
    NOT_READY = "NOT_READY"  # probes failing after it was ready: out of the ready set
    SHUTTING_DOWN = "SHUTTING_DOWN"  # being drained and torn down
    FAILED = "FAILED"  # its program exited
    FAILED_INITIAL_DELAY = "FAILED_INITIAL_DELAY"  # never ready within initial_delay_seconds
    FAILED_PROBING = "FAILED_PROBING"  # probes kept failing after it was ready
    FAILED_PROVISION = "FAILED_PROVISION"  # its cluster could not be launched
    FAILED_CLEANUP = "FAILED_CLEANUP"  # its cluster could not be torn down
    PREEMPTED = "PREEMPTED"  # its cluster was found gone
    UNKNOWN = "UNKNOWN"

    def is_terminal(self) -> bool:
        return self in _TERMINAL

    def is_failed(self) -> bool:
        return self.name.startswith("FAILED") or self is ReplicaStatus.PREEMPTED

    def __str__(self) -> str:
        return self.value


_TERMINAL = frozenset({
    ReplicaStatus.FAILED, ReplicaStatus.FAILED_INITIAL_DELAY, ReplicaStatus.FAILED_PROBING,
    ReplicaStatus.FAILED_PROVISION, ReplicaStatus.FAILED_CLEANUP, ReplicaStatus.PREEMPTED,
})


class ServiceComponent(str, enum.Enum):
    CONTROLLER = "controller"
    LOAD_BALANCER = "load_balancer"
    REPLICA = "replica"

    @classmethod
    def of(cls, target: ServiceComponent | str) -> ServiceComponent:
        if isinstance(target, ServiceComponent):
            return target
        text = str(target).strip().lower().replace("-", "_")
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"unknown service component {target!r}; use one of "
                             f"{', '.join(c.value for c in cls)}") from None


class UpdateMode(str, enum.Enum):
    ROLLING = "rolling"  # surge one new replica, wait until ready, drain one old one
    BLUE_GREEN = "blue_green"  # the whole new set, flip traffic once, drain the old set

    @classmethod
    def of(cls, mode: UpdateMode | str | None) -> UpdateMode:
        if mode is None:
            return cls.ROLLING
        if isinstance(mode, UpdateMode):
            return mode
        text = str(mode).strip().lower().replace("-", "_")
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"unknown update mode {mode!r}; use rolling or "
                             "blue_green") from None
