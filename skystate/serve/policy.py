"""A service version's policy as the controller uses it, read from the task's ``service:``.

SkyPilot's defaults: readiness probe ``/`` with ``initial_delay_seconds`` 1200 and
``timeout_seconds`` 15; ``replicas`` 1 unless ``replica_policy`` gives
``min_replicas``/``max_replicas``/``target_qps_per_replica`` (``upscale_delay_seconds``
300, ``downscale_delay_seconds`` 1200, ``num_overprovision`` 0); load balancing
``least_load``. Controller timings (probe period, delays) are divided by
``SKYSTATE_TIME_SCALE``; the probe's own HTTP timeout is real seconds. Validation with
file:line errors is the spec's (``skystate.spec``); here a bad field is a ``ValueError``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]

PROBE_SECONDS = 10.0  # SkyPilot probes every 10 s
PROBE_FAILURES = 3  # consecutive failed probes of a ready replica -> FAILED_PROBING
QPS_WINDOW_SECONDS = 60.0


def _scale() -> float:
    from skystate.runtime.layout import time_scale

    return time_scale()


def _env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


@dataclass(frozen=True)
class Probe:
    path: str = "/"
    initial_delay: float = 1200.0  # scaled
    timeout: float = 15.0  # real seconds
    post_data: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Scaling:
    min_replicas: int = 1
    max_replicas: int = 1
    target_qps: float | None = None  # per replica; None: a fixed count
    upscale_delay: float = 300.0  # scaled
    downscale_delay: float = 1200.0  # scaled
    num_overprovision: int = 0

    @property
    def autoscales(self) -> bool:
        return self.target_qps is not None and self.max_replicas > self.min_replicas

    def describe(self) -> str:
        if not self.autoscales:
            return f"Fixed {self.min_replicas} replica(s)"
        return (f"Autoscaling from {self.min_replicas} to {self.max_replicas} replicas "
                f"(target QPS per replica {self.target_qps:g})")


@dataclass(frozen=True)
class Policy:
    probe: Probe = Probe()
    scaling: Scaling = Scaling()
    load_balancing: str = "least_load"
    port: int | None = None  # the declared port (service.ports or resources.ports)
    probe_period: float = PROBE_SECONDS  # scaled
    qps_window: float = QPS_WINDOW_SECONDS  # scaled (at least 2 s)


def _port(config: Record, service: Record) -> int | None:
    ports = service.get("ports")
    if ports is None:
        resources = config.get("resources") or {}
        if isinstance(resources, dict):
            ports = resources.get("ports")
    if isinstance(ports, list):
        ports = ports[0] if ports else None
    if ports is None:
        return None
    match = re.match(r"^\s*(\d+)", str(ports))
    if not match:
        raise ValueError(f"service ports {ports!r}: not a port number")
    return int(match.group(1))


def _probe(service: Record, scale: float) -> Probe:
    probe = service.get("readiness_probe") or "/"
    if isinstance(probe, str):
        probe = {"path": probe}
    if not isinstance(probe, dict):
        raise ValueError("readiness_probe must be a path or a mapping")
    path = str(probe.get("path") or "/")
    if not path.startswith("/"):
        raise ValueError(f"readiness_probe path {path!r} must start with '/'")
    return Probe(path=path,
                 initial_delay=float(probe.get("initial_delay_seconds", 1200)) / scale,
                 timeout=float(probe.get("timeout_seconds", 15)),
                 post_data=probe.get("post_data"),
                 headers={str(k): str(v) for k, v in (probe.get("headers") or {}).items()})


def _scaling(service: Record, scale: float) -> Scaling:
    policy = service.get("replica_policy")
    if policy is None:
        count = int(service["replicas"]) if service.get("replicas") is not None else 1
        return Scaling(min_replicas=count, max_replicas=count)
    lo = int(policy.get("min_replicas", 1))
    hi = int(policy.get("max_replicas", lo) if policy.get("max_replicas") is not None
             else lo)
    qps = policy.get("target_qps_per_replica")
    if hi < lo:
        raise ValueError(f"max_replicas ({hi}) is below min_replicas ({lo})")
    if hi != lo and qps is None:
        raise ValueError("min_replicas != max_replicas needs target_qps_per_replica")
    return Scaling(min_replicas=lo, max_replicas=hi,
                   target_qps=float(qps) if qps is not None else None,
                   upscale_delay=float(policy.get("upscale_delay_seconds", 300)) / scale,
                   downscale_delay=float(policy.get("downscale_delay_seconds", 1200)) / scale,
                   num_overprovision=int(policy.get("num_overprovision") or 0))


def policy_of(config: Record) -> Policy:
    """The policy of one version's task config (its ``service:`` section)."""
    service = config.get("service")
    if not isinstance(service, dict):
        raise ValueError("the task has no service section (service: readiness_probe, "
                         "replicas, ...)")
    scale = _scale()
    balancing = str(service.get("load_balancing_policy") or "least_load")
    if balancing not in ("round_robin", "least_load"):
        raise ValueError(f"load_balancing_policy {balancing!r}: use round_robin or "
                         "least_load")
    period = _env_seconds("SKYSTATE_SERVE_PROBE_SECONDS", PROBE_SECONDS) / scale
    return Policy(probe=_probe(service, scale), scaling=_scaling(service, scale),
                  load_balancing=balancing, port=_port(config, service),
                  probe_period=max(0.05, period),
                  qps_window=max(2.0, QPS_WINDOW_SECONDS / scale))
