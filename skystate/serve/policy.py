"""A service version's policy as the controller uses it, read from the task's ``service:``.

SkyPilot's defaults: readiness probe ``/`` with ``initial_delay_seconds`` 1200 and
``timeout_seconds`` 15; ``replicas`` 1 unless ``replica_policy`` gives
``min_replicas``/``max_replicas``/``target_qps_per_replica`` (``upscale_delay_seconds``
300, ``downscale_delay_seconds`` 1200, ``num_overprovision`` 0); load balancing
``least_load`` (the effective values of ``skystate.spec.service.ServiceSpec``, which
holds SkyPilot's rules). Controller timings (probe period, delays) are divided by
``SKYSTATE_TIME_SCALE``; the probe's own HTTP timeout is real seconds. Validation with
file:line errors is the spec's; here a bad section is a ``ValueError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from skystate.runtime.layout import env_seconds
from skystate.serve.fallback import Mix, mix_of

Record = dict[str, Any]

PROBE_SECONDS = 10.0  # SkyPilot probes every 10 s
PROBE_FAILURES = 3  # consecutive failed probes of a ready replica -> FAILED_PROBING
QPS_WINDOW_SECONDS = 60.0


def _scale() -> float:
    from skystate.runtime.layout import time_scale

    return time_scale()


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
    qps_per_accelerator: dict[str, float] | None = None  # instance_aware_least_load's
    port: int | None = None  # the declared port (service.ports or resources.ports)
    probe_period: float = PROBE_SECONDS  # scaled
    qps_window: float = QPS_WINDOW_SECONDS  # scaled (at least 2 s)
    mix: Mix = Mix()  # spot / on-demand fallback (serve/fallback.py)


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


def policy_of(config: Record) -> Policy:
    """The policy of one version's task config (its ``service:`` section, validated by
    ``skystate.spec.service.ServiceSpec``; a bad one is a ``ValueError``)."""
    from pydantic import ValidationError

    from skystate.spec.service import ServiceSpec

    section = config.get("service")
    if not isinstance(section, dict):
        raise ValueError("the task has no service section (service: readiness_probe, "
                         "replicas, ...)")
    try:
        spec = ServiceSpec.model_validate(section)
    except ValidationError as exc:
        raise ValueError(f"invalid service section: {exc}") from None
    scale = _scale()
    probe = spec.readiness_probe
    qps = spec.target_qps_per_replica
    if isinstance(qps, dict):  # per accelerator: the smallest is the safe figure here
        qps = min(qps.values()) if qps else None
    scaling = Scaling(min_replicas=spec.min_replicas, max_replicas=spec.max_replicas,
                      target_qps=float(qps) if qps is not None else None,
                      upscale_delay=float(spec.upscale_delay_seconds) / scale,
                      downscale_delay=float(spec.downscale_delay_seconds) / scale,
                      num_overprovision=int(spec.num_overprovision or 0))
    period = env_seconds("SKYSTATE_SERVE_PROBE_SECONDS",
                          float(spec.probe_interval_seconds)) / scale
    mix = mix_of(config, spec)
    if spec.use_ondemand_fallback and not mix.use_spot:
        raise ValueError("base_ondemand_fallback_replicas and dynamic_ondemand_fallback are "
                         "only supported when resources.use_spot is true")
    per_accelerator = spec.target_qps_per_replica
    per_accelerator = ({str(k): float(v) for k, v in per_accelerator.items()}
                       if isinstance(per_accelerator, dict) else None)
    return Policy(
        probe=Probe(path=probe.path, initial_delay=float(probe.initial_delay_seconds) / scale,
                    timeout=float(probe.timeout_seconds), post_data=probe.post_data,
                    headers={str(k): str(v) for k, v in (probe.headers or {}).items()}),
        scaling=scaling, load_balancing=spec.lb_policy,
        qps_per_accelerator=per_accelerator,
        port=spec.ports if spec.ports is not None else _port(config, {}),
        probe_period=max(0.05, period), qps_window=max(2.0, QPS_WINDOW_SECONDS / scale),
        mix=mix)
