"""SkyPilot's ``service:`` section as SkyPilot 0.14.1 reads it, as a typed model.

The rules were read from SkyPilot 0.14.1 (``sky/serve/service_spec.py``,
``sky/utils/schemas.py:get_service_schema``, ``sky/serve/constants.py``); the
differential cases in ``tests/data/sky_compat/service/`` record its verdicts.

Every rule is a field validator on the field it is about (a cross-field rule sits on
the later field and reads the earlier ones from ``info.data``), so one load reports
every problem at once, each at the line of its own key. Defaults SkyPilot applies
later (probe delays, autoscaler delays) are resolved here: the fields and the
properties of ``ServiceSpec`` are the values the controller acts on.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from skystate.spec import limits
from skystate.spec.suggest import did_you_mean

__all__ = [
    "DEFAULT_DOWNSCALE_DELAY_SECONDS",
    "DEFAULT_ENDPOINT_PROBE_INTERVAL_SECONDS",
    "DEFAULT_INITIAL_DELAY_SECONDS",
    "DEFAULT_LB_POLICY",
    "DEFAULT_LB_STREAM_TIMEOUT_SECONDS",
    "DEFAULT_MIN_REPLICAS",
    "DEFAULT_QUEUE_LENGTH_THRESHOLD",
    "DEFAULT_READINESS_TIMEOUT_SECONDS",
    "DEFAULT_UPSCALE_DELAY_SECONDS",
    "LB_POLICIES",
    "SPOT_PLACERS",
    "LoadBalancerConfig",
    "PoolConfig",
    "ReadinessProbe",
    "ReplicaPolicy",
    "ServiceSpec",
    "TLSConfig",
]

# sky/serve/constants.py (0.14.1)
DEFAULT_INITIAL_DELAY_SECONDS = 1200
DEFAULT_READINESS_TIMEOUT_SECONDS = 15
DEFAULT_ENDPOINT_PROBE_INTERVAL_SECONDS = 10
DEFAULT_UPSCALE_DELAY_SECONDS = 300
DEFAULT_DOWNSCALE_DELAY_SECONDS = 1200
DEFAULT_LB_STREAM_TIMEOUT_SECONDS = 120
DEFAULT_MIN_REPLICAS = 1
DEFAULT_QUEUE_LENGTH_THRESHOLD = 1
# sky/serve/load_balancing_policies.py: least_load is the registered default.
LB_POLICIES = ("round_robin", "least_load", "instance_aware_least_load")
DEFAULT_LB_POLICY = "least_load"
SPOT_PLACERS = ("dynamic_fallback",)  # sky/serve/spot_placer.py

_ACCELERATOR_KEY = re.compile(r"^[A-Z0-9]+(?::[0-9]+)?$")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _integer(value: Any) -> Any:
    """JSON-schema ``integer``: an int (or an integral float), never a bool or a string."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be an integer, got {_short(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"must be an integer, got {_short(value)}")
        return int(value)
    return value


def _int_port(value: Any) -> Any:
    """SkyPilot asserts ``isinstance(ports, int)``: 8080.0 is refused, unlike other counts."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer port, got {_short(value)}")
    return value


def _number(value: Any) -> Any:
    """JSON-schema ``number``: an int or a float, never a bool or a string."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, got {_short(value)}")
    return value


def _boolean(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {_short(value)}")
    return value


def _string(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {_short(value)}")
    return value


Integer = Annotated[int, BeforeValidator(_integer)]
Count = Annotated[int, BeforeValidator(_integer), Field(ge=0)]
Number = Annotated[int | float, BeforeValidator(_number)]
Boolean = Annotated[bool, BeforeValidator(_boolean)]
String = Annotated[str, BeforeValidator(_string)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Section(_Strict):
    """A nested mapping: SkyPilot's schema refuses a null value anywhere inside one."""

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, value: Any) -> Any:
        if isinstance(value, dict):
            nulls = [str(k) for k, v in value.items() if v is None]
            if nulls:
                raise ValueError(f"{', '.join(nulls)}: a value is required here (not null)")
        return value


class ReadinessProbe(_Section):
    """``readiness_probe``: a path, or a mapping with ``path`` and the probe settings."""

    path: String
    initial_delay_seconds: Number = DEFAULT_INITIAL_DELAY_SECONDS
    timeout_seconds: Number = DEFAULT_READINESS_TIMEOUT_SECONDS
    endpoint_probe_interval_seconds: Number = DEFAULT_ENDPOINT_PROBE_INTERVAL_SECONDS
    consecutive_failure_threshold_timeout: Number | None = None
    post_data: Any = None  # a mapping, or a JSON string (parsed here)
    headers: dict[str, String] | None = None

    @field_validator("path")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"the readiness probe path must start with '/', got {value!r}")
        return value

    @field_validator("post_data", mode="before")
    @classmethod
    def _post_data(cls, value: Any) -> Any:
        if value is None or isinstance(value, dict):
            return value
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(f"post_data is not valid JSON: {_short(value)}") from None
        raise ValueError(f"post_data must be a mapping or a JSON string, got {_short(value)}")


def _probe(value: Any) -> Any:
    if isinstance(value, str):
        return {"path": value}
    if value is None:
        raise ValueError("readiness_probe must be a path or a mapping with 'path', got null")
    return value


class ReplicaPolicy(_Section):
    """``replica_policy``: fixed (min = max) or autoscaled by QPS (min < max)."""

    min_replicas: Count = Field(le=limits.MAX_REPLICAS)
    max_replicas: Count | None = Field(default=None, le=limits.MAX_REPLICAS)
    num_overprovision: Count | None = None
    target_qps_per_replica: Number | dict[str, Number] | None = Field(
        default=None, validate_default=True
    )
    dynamic_ondemand_fallback: Boolean | None = None
    base_ondemand_fallback_replicas: Count | None = None
    spot_placer: String | None = None
    upscale_delay_seconds: Number = DEFAULT_UPSCALE_DELAY_SECONDS
    downscale_delay_seconds: Number = DEFAULT_DOWNSCALE_DELAY_SECONDS

    @field_validator("max_replicas")
    @classmethod
    def _max(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_replicas")
        if value is not None and isinstance(low, int) and value < low:
            raise ValueError(
                f"max_replicas ({value}) must be at least min_replicas ({low})"
            )
        return value

    @field_validator("target_qps_per_replica")
    @classmethod
    def _qps(cls, value: Any, info: ValidationInfo) -> Any:
        low, high = info.data.get("min_replicas"), info.data.get("max_replicas")
        if value is None:
            if high is not None and low is not None and high != low:
                raise ValueError(
                    f"min_replicas ({low}) and max_replicas ({high}) differ: autoscaling "
                    "needs target_qps_per_replica"
                )
            return value
        if isinstance(value, dict):
            for key, qps in value.items():
                if not _ACCELERATOR_KEY.match(key):
                    raise ValueError(
                        f"target_qps_per_replica: {key!r} is not an accelerator name "
                        "like 'H100' or 'A100:1'"
                    )
                if qps < 0:
                    raise ValueError(f"target_qps_per_replica[{key}] must be at least 0")
        elif value < 0:
            raise ValueError(f"target_qps_per_replica must be at least 0, got {value}")
        if high is None and "max_replicas" not in info.data:
            return value  # max_replicas itself was invalid (reported there)
        if high is None:
            raise ValueError("target_qps_per_replica needs max_replicas (autoscaling bounds)")
        return value

    @field_validator("spot_placer")
    @classmethod
    def _placer(cls, value: str | None) -> str | None:
        if value is not None and value.lower() not in SPOT_PLACERS:
            raise ValueError(
                f"unknown spot_placer {value!r}{did_you_mean(value, SPOT_PLACERS)} "
                f"(one of {', '.join(SPOT_PLACERS)})"
            )
        return value


class TLSConfig(_Section):
    """``tls``: the load balancer serves HTTPS with this key and certificate."""

    keyfile: String
    certfile: String


class LoadBalancerConfig(_Section):
    stream_timeout_seconds: Number = DEFAULT_LB_STREAM_TIMEOUT_SECONDS


class PoolConfig(_Section):
    """``pool`` (a SkyPilot worker pool, validated as SkyPilot does; not served)."""

    workers: Count | None = None
    min_workers: Count | None = None
    queue_length_threshold: Integer | None = Field(default=None, ge=1)
    max_workers: Count | None = Field(default=None, validate_default=True)
    upscale_delay_seconds: Number | None = Field(default=None, ge=0, validate_default=True)
    downscale_delay_seconds: Number | None = Field(default=None, ge=0, validate_default=True)

    @field_validator("max_workers")
    @classmethod
    def _bounds(cls, value: int | None, info: ValidationInfo) -> int | None:
        data = info.data
        if value is None:
            if data.get("min_workers") is not None:
                raise ValueError("min_workers needs max_workers")
            if data.get("queue_length_threshold") is not None:
                raise ValueError("queue_length_threshold needs max_workers")
            if data.get("workers") is None and data.get("min_workers") is None:
                raise ValueError("a pool needs workers, or min_workers and max_workers")
            return value
        low = data.get("min_workers")
        if low is None:
            low = data.get("workers")
        if low is not None and low > value:
            raise ValueError(f"max_workers ({value}) must be at least the workers ({low})")
        return value

    @field_validator("upscale_delay_seconds", "downscale_delay_seconds")
    @classmethod
    def _delays(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("max_workers") is None:
            raise ValueError(f"{info.field_name} needs max_workers (pool autoscaling)")
        return value


def _refuse_with_pool(value: Any, info: ValidationInfo) -> Any:
    if value is not None and info.data.get("pool") is not None:
        raise ValueError(f"{info.field_name} is not supported for a pool")
    return value


class ServiceSpec(_Strict):
    """SkyPilot's ``service:`` section, validated; see the properties for effective values."""

    pool: PoolConfig | None = None
    readiness_probe: Annotated[ReadinessProbe, BeforeValidator(_probe)] = Field(
        default_factory=lambda: ReadinessProbe(path="/")
    )
    replicas: Count | None = Field(default=None, le=limits.MAX_REPLICAS)
    replica_policy: ReplicaPolicy | None = None
    workers: Count | None = Field(default=None, le=limits.MAX_REPLICAS)
    load_balancing_policy: String | None = Field(default=None, validate_default=True)
    ports: Annotated[int, BeforeValidator(_int_port)] | None = None
    tls: TLSConfig | None = None
    load_balancer: LoadBalancerConfig | None = None

    @field_validator("readiness_probe")
    @classmethod
    def _pool_probe(cls, value: ReadinessProbe, info: ValidationInfo) -> ReadinessProbe:
        if info.data.get("pool") is not None:
            for name in ("post_data", "headers"):
                if getattr(value, name) is not None:
                    raise ValueError(f"{name} is not supported for a pool")
        return value

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("pool") is not None:
            raise ValueError("replicas is not supported for a pool: use pool.workers")
        return value

    @field_validator("replica_policy")
    @classmethod
    def _policy(cls, value: ReplicaPolicy | None, info: ValidationInfo) -> Any:
        if value is None:
            return value
        if info.data.get("replicas") is not None:
            raise ValueError("give either replicas or replica_policy, not both")
        if info.data.get("pool") is not None:
            raise ValueError("replica_policy is not supported for a pool: use pool.workers")
        return value

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("replicas") is not None:
            raise ValueError("give either replicas or workers, not both")
        return value

    @field_validator("load_balancing_policy")
    @classmethod
    def _lb(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            if value not in LB_POLICIES:
                raise ValueError(
                    f"unknown load balancing policy {value!r}"
                    f"{did_you_mean(value, LB_POLICIES)} (one of {', '.join(LB_POLICIES)})"
                )
            _refuse_with_pool(value, info)
        policy = info.data.get("replica_policy")
        per_gpu = policy is not None and isinstance(policy.target_qps_per_replica, dict)
        if per_gpu and value != "instance_aware_least_load":
            raise ValueError(
                "a per-accelerator target_qps_per_replica needs load_balancing_policy "
                "'instance_aware_least_load'"
            )
        if value == "instance_aware_least_load" and not per_gpu and "replica_policy" in info.data:
            raise ValueError(
                "load_balancing_policy 'instance_aware_least_load' needs "
                "target_qps_per_replica as a mapping of accelerator to QPS"
            )
        return value

    @field_validator("ports")
    @classmethod
    def _port(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not 1 <= value <= 65535:
            raise ValueError(f"ports must be a port between 1 and 65535, got {value}")
        return _refuse_with_pool(value, info)

    _tls_pool = field_validator("tls")(_refuse_with_pool)

    # --- effective values -----------------------------------------------------------

    @property
    def probe_path(self) -> str:
        return self.readiness_probe.path

    @property
    def initial_delay_seconds(self) -> float:
        return self.readiness_probe.initial_delay_seconds

    @property
    def probe_timeout_seconds(self) -> float:
        return self.readiness_probe.timeout_seconds

    @property
    def probe_interval_seconds(self) -> float:
        return self.readiness_probe.endpoint_probe_interval_seconds

    @property
    def probe_method(self) -> Literal["GET", "POST"]:
        return "GET" if self.readiness_probe.post_data is None else "POST"

    @property
    def min_replicas(self) -> int:
        if self.replicas is not None:
            return self.replicas
        if self.replica_policy is not None:
            return self.replica_policy.min_replicas
        pool = self.pool
        if pool is not None and pool.max_workers is not None and pool.min_workers is not None:
            return pool.min_workers
        workers = pool.workers if pool is not None and pool.workers is not None else None
        if self.workers is not None:
            return self.workers
        return workers if workers is not None else DEFAULT_MIN_REPLICAS

    @property
    def max_replicas(self) -> int:
        """The upper bound; SkyPilot's unset ``max_replicas`` means ``min_replicas``."""
        if self.replica_policy is not None and self.replica_policy.max_replicas is not None:
            return self.replica_policy.max_replicas
        if self.pool is not None and self.pool.max_workers is not None:
            return self.pool.max_workers
        return self.min_replicas

    @property
    def autoscaling(self) -> bool:
        return self.max_replicas > self.min_replicas

    @property
    def target_qps_per_replica(self) -> float | dict[str, float] | None:
        return self.replica_policy.target_qps_per_replica if self.replica_policy else None

    @property
    def upscale_delay_seconds(self) -> float:
        if self.replica_policy is not None:
            return self.replica_policy.upscale_delay_seconds
        if self.pool is not None and self.pool.upscale_delay_seconds is not None:
            return self.pool.upscale_delay_seconds
        return DEFAULT_UPSCALE_DELAY_SECONDS

    @property
    def downscale_delay_seconds(self) -> float:
        if self.replica_policy is not None:
            return self.replica_policy.downscale_delay_seconds
        if self.pool is not None and self.pool.downscale_delay_seconds is not None:
            return self.pool.downscale_delay_seconds
        return DEFAULT_DOWNSCALE_DELAY_SECONDS

    @property
    def lb_policy(self) -> str:
        """The policy in effect (SkyPilot 0.14.1's default is ``least_load``)."""
        return self.load_balancing_policy or DEFAULT_LB_POLICY

    @property
    def lb_stream_timeout_seconds(self) -> float:
        lb = self.load_balancer
        return lb.stream_timeout_seconds if lb is not None else DEFAULT_LB_STREAM_TIMEOUT_SECONDS

    @property
    def base_ondemand_fallback_replicas(self) -> int:
        policy = self.replica_policy
        base = policy.base_ondemand_fallback_replicas if policy is not None else None
        return base or 0

    @property
    def dynamic_ondemand_fallback(self) -> bool:
        policy = self.replica_policy
        return bool(policy is not None and policy.dynamic_ondemand_fallback)

    @property
    def use_ondemand_fallback(self) -> bool:
        return self.dynamic_ondemand_fallback or self.base_ondemand_fallback_replicas > 0

    @property
    def num_overprovision(self) -> int | None:
        return self.replica_policy.num_overprovision if self.replica_policy else None

    @property
    def spot_placer(self) -> str | None:
        return self.replica_policy.spot_placer if self.replica_policy else None

    @property
    def is_pool(self) -> bool:
        return self.pool is not None

    @property
    def queue_length_threshold(self) -> int | None:
        """A pool autoscaled by queue length (``max_workers`` set) waits for this many."""
        pool = self.pool
        if pool is None or pool.max_workers is None:
            return None
        if pool.queue_length_threshold is None:
            return DEFAULT_QUEUE_LENGTH_THRESHOLD
        return pool.queue_length_threshold
