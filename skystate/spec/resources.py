"""The SkyPilot ``resources`` block: what a cluster or job needs.

Every value is normalised on the way in (``"A100:8"`` → ``{"A100": 8}``, ``8`` →
``"8"``, ``8080`` → ``["8080"]``) so that two spellings of the same request hash the
same and the planner never sees a replace where nothing changed.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic._internal._model_construction import ModelMetaclass

from skystate.spec import limits

# Clouds SkyPilot accepts in ``cloud:``/``infra:`` (so its task YAMLs load unchanged),
# plus the providers only skystate has. Only some have a provider (see providers/).
KNOWN_CLOUDS = (
    "local", "ssh", "aws", "gcp", "azure", "kubernetes", "k8s", "lambda", "ibm", "oci",
    "scp", "runpod", "vast", "fluidstack", "cudo", "paperspace", "do", "nebius",
    "vsphere", "hyperbolic", "seeweb", "shadeform", "primeintellect", "slurm",
)
_QUANTITY = re.compile(r"^(-?\d+(\.\d+)?)(\+)?$")
_PORT = re.compile(r"^(\d+)(-(\d+))?$")
_ACCEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
_TIME = re.compile(r"^(\d+)\s*([smhdw]?)$", re.IGNORECASE)
_TIME_MINUTES = {"": 1, "m": 1, "s": 1 / 60, "h": 60, "d": 1440, "w": 10080}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$", re.IGNORECASE)
_QUANTITY_MAX = {"cpus": (limits.MAX_CPUS, ""), "memory": (limits.MAX_MEMORY_GB, " GB")}
_SIZE_GB = {"k": 1 / 1024**2, "m": 1 / 1024, "g": 1, "": 1, "t": 1024, "p": 1024**2}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AutostopSpec(_Strict):
    """``autostop: {idle_minutes, down, wait_for}``; also ``autostop: 30`` or ``false``."""

    idle_minutes: int = Field(default=5, ge=0)
    down: bool = False
    wait_for: Literal["jobs_and_ssh", "jobs", "none"] = "jobs_and_ssh"
    enabled: bool = True
    hook: str | None = None  # SkyPilot (deprecated there): command run before stopping
    hook_timeout: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return {"enabled": value}
        if isinstance(value, int):
            return {"idle_minutes": value}
        if isinstance(value, str) and _TIME.match(value.strip()):
            return {"idle_minutes": parse_minutes(value)}
        if isinstance(value, dict) and isinstance(value.get("idle_minutes"), str):
            if _TIME.match(value["idle_minutes"].strip()):
                value = {**value, "idle_minutes": parse_minutes(value["idle_minutes"])}
        if isinstance(value, dict) and "wait_for" in value and isinstance(value["wait_for"], str):
            return {**value, "wait_for": value["wait_for"].lower()}
        return value


class JobRecovery(_Strict):
    strategy: str | None = None
    max_restarts_on_errors: int = Field(default=0, ge=0, le=limits.MAX_RESTARTS)
    recover_on_exit_codes: list[int] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"strategy": value}
        if isinstance(value, dict) and isinstance(value.get("recover_on_exit_codes"), int):
            return {**value, "recover_on_exit_codes": [value["recover_on_exit_codes"]]}
        return value

    @field_validator("strategy")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.upper() if value else value


def parse_minutes(value: str) -> int:
    """SkyPilot's autostop time: ``30`` / ``"30m"`` / ``"2h"`` / ``"1d"`` → minutes."""
    match = _TIME.match(value.strip())
    if not match:
        raise ValueError(f"invalid time {value!r}: use minutes or a unit like '30m', '2h', '1d'")
    return max(0, round(int(match.group(1)) * _TIME_MINUTES[match.group(2).lower()]))


def parse_disk_size(value: Any) -> Any:
    """``256`` / ``"256"`` / ``"256GB"`` / ``"1TB"`` → GiB as an int (others left to pydantic)."""
    if isinstance(value, str):
        match = _SIZE.match(value.strip())
        if not match:
            raise ValueError(f"disk_size must be a size in GB like 256 or '1TB', got {value!r}")
        size = float(match.group(1)) * _SIZE_GB[match.group(2).lower()]
        return int(size) if size >= 1 or size == 0 else 1
    return value


def parse_quantity(value: Any, field: str) -> str | None:
    """``8`` / ``"8"`` / ``"8+"`` / ``8.5`` → canonical string; errors name the form."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{field} must be a number or a string like '8' or '8+'")
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"{field} must be a number or a string like '8' or '8+', got {value!r}")
    number = float(match.group(1))
    if number <= 0:
        raise ValueError(f"{field} must be positive, got {value!r}")
    top, unit = _QUANTITY_MAX.get(field, (None, ""))
    if top is not None and number > top:
        raise ValueError(f"{field} must be at most {top:,}{unit} per node, got {value!r}")
    canonical = str(int(number)) if number.is_integer() else str(number)
    return canonical + ("+" if match.group(3) else "")


def quantity_bounds(value: str | None) -> tuple[float, bool]:
    """(amount, at_least) of a canonical quantity; (0, True) when unset."""
    if value is None:
        return 0.0, True
    return float(value.rstrip("+")), value.endswith("+")


def parse_accelerators(value: Any) -> dict[str, int | float] | None:
    """``"A100"``, ``"A100:8"`` or ``{"A100": 8}`` → ``{"A100": 8}``."""
    if value is None:
        return None
    if isinstance(value, str):
        name, _, count_text = value.strip().partition(":")
        try:
            count: float = float(count_text) if count_text else 1.0
        except ValueError:
            raise ValueError(
                f"accelerators must look like 'A100' or 'A100:8', got {value!r}"
            ) from None
        value = {name.strip(): count}
    if not isinstance(value, dict):
        raise ValueError(f"accelerators must be a string like 'A100:8' or a mapping, got {value!r}")
    if len(value) != 1:
        raise ValueError(f"accelerators must name exactly one accelerator type, got {value!r}")
    (name, count), = value.items()
    if not isinstance(name, str) or not _ACCEL_NAME.match(name):
        raise ValueError(f"accelerators: invalid accelerator name {name!r}")
    if isinstance(count, bool) or not isinstance(count, (int, float)):
        raise ValueError(f"accelerators: count of {name} must be a number, got {count!r}")
    if count <= 0 or count != count:
        raise ValueError(f"accelerators: count of {name} must be positive, got {count!r}")
    if count > limits.MAX_ACCELERATORS:
        raise ValueError(f"accelerators: count of {name} must be at most "
                         f"{limits.MAX_ACCELERATORS} per node, got {count:g}")
    return {name: int(count) if float(count).is_integer() else float(count)}


def parse_ports(value: Any) -> list[str] | None:
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    if len(items) > limits.MAX_PORT_ENTRIES:
        raise ValueError(f"ports: at most {limits.MAX_PORT_ENTRIES} ports or ranges (use "
                         f"ranges like '8000-8100'), got {len(items)}")
    ports: list[str] = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"ports: invalid port {item!r}")
        text = str(item).strip()
        match = _PORT.match(text)
        if not match:
            raise ValueError(f"ports: invalid port or range {item!r} (use 8080 or '8000-8010')")
        low = int(match.group(1))
        high = int(match.group(3) or low)
        if not (1 <= low <= high <= 65535):
            raise ValueError(f"ports: {item!r} is out of range 1-65535")
        ports.append(text)
    return ports


def parse_infra(infra: str) -> tuple[str, str | None, str | None]:
    """``aws/us-east-1/us-east-1a`` → (provider, region, zone); ``ssh/lab`` → pool as region."""
    parts = [p for p in infra.strip().split("/")]
    if not parts[0] or any(not p for p in parts):
        raise ValueError(f"infra: {infra!r} must look like 'cloud[/region[/zone]]'")
    provider = parts[0].lower()
    if provider == "*":
        provider = ""
    elif provider not in KNOWN_CLOUDS:
        raise ValueError(f"infra: unknown cloud {parts[0]!r} in {infra!r}")
    if provider in ("kubernetes", "k8s"):
        return "kubernetes", "/".join(parts[1:]) or None, None
    if len(parts) > 3:
        raise ValueError(f"infra: {infra!r} has too many parts (cloud/region/zone)")
    region = parts[1] if len(parts) > 1 and parts[1] != "*" else None
    zone = parts[2] if len(parts) > 2 else None
    return provider, region, zone


# SkyPilot's positional order: ``sky.Resources(sky.AWS(), 'p3.2xlarge')``.
_POSITIONAL = (
    "cloud", "instance_type", "cpus", "memory", "accelerators", "accelerator_args",
    "use_spot", "job_recovery", "region", "zone", "image_id", "disk_size", "disk_tier",
    "ports", "labels", "_docker_login_config", "_docker_username_for_runpod",
    "_is_image_managed", "_requires_fuse", "_cluster_config_overrides",
)


class _ResourcesMeta(ModelMetaclass):
    """Lets ``Resources(...)`` take SkyPilot's positional arguments.

    Only direct calls go through here; validation from dicts (``model_validate``,
    nested fields) is untouched.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if len(args) > len(_POSITIONAL):
            raise TypeError(f"Resources() takes at most {len(_POSITIONAL)} positional arguments")
        for name, value in zip(_POSITIONAL, args, strict=False):
            if name in kwargs:
                raise TypeError(f"Resources() got multiple values for argument {name!r}")
            kwargs[name] = value
        return super().__call__(**{k: v for k, v in kwargs.items() if v is not None})


class Resources(_Strict, metaclass=_ResourcesMeta):
    """SkyPilot's ``resources`` block (same fields and meaning).

    Also SkyPilot's ``sky.Resources``: positional arguments in SkyPilot's order,
    ``cloud=sky.AWS()``, immutable, ``.copy(**changes)``, hashable (usable in sets).
    """

    infra: str | None = None
    cloud: str | None = None
    region: str | None = None
    zone: str | None = None
    instance_type: str | None = None
    cpus: str | None = None
    memory: str | None = None
    accelerators: dict[str, int | float] | None = None
    accelerator_args: dict[str, Any] | None = None
    use_spot: bool | None = None
    job_recovery: JobRecovery | None = None
    spot_recovery: JobRecovery | None = None
    disk_size: int | None = Field(default=None, gt=0)
    disk_tier: Literal["low", "medium", "high", "ultra", "best"] | None = None
    network_tier: Literal["standard", "best"] | None = None
    ports: list[str] | None = None
    image_id: str | dict[str, str] | None = None
    labels: dict[str, str] | None = None
    autostop: AutostopSpec | None = None
    priority: int | None = Field(default=None, ge=0, le=1000)
    any_of: list[Resources] | None = None
    ordered: list[Resources] | None = None
    # Less common SkyPilot fields, accepted so that its task YAMLs load unchanged.
    volumes: list[dict[str, Any]] | None = None
    ephemeral_storage: int | str | None = None
    local_disk: str | None = None
    max_hourly_cost: float | None = Field(default=None, gt=0)
    priority_class: str | None = None
    no_missing_accel_warnings: bool | None = Field(
        default=None, alias="_no_missing_accel_warnings"
    )
    docker_login_config: dict[str, str] | None = Field(default=None, alias="_docker_login_config")
    docker_username_for_runpod: str | None = Field(
        default=None, alias="_docker_username_for_runpod"
    )
    is_image_managed: bool | None = Field(default=None, alias="_is_image_managed")
    requires_fuse: bool | None = Field(default=None, alias="_requires_fuse")
    cluster_config_overrides: dict[str, Any] | None = Field(
        default=None, alias="_cluster_config_overrides"
    )

    @model_validator(mode="before")
    @classmethod
    def _accelerator_choices(cls, value: Any) -> Any:
        """SkyPilot shorthands: a list of resources is ``any_of``; several accelerators
        (``[A100, H100]`` in order of preference, ``{A100: 8, H100: 8}`` any of them)
        become ``ordered``/``any_of`` entries."""
        if isinstance(value, list):
            return {"any_of": value}
        if not isinstance(value, dict):
            return value
        accels = value.get("accelerators")
        if isinstance(accels, list) and len(accels) == 1:
            return {**value, "accelerators": accels[0]}
        if isinstance(accels, dict) and len(accels) == 1:
            ((name, count),) = accels.items()
            return {**value, "accelerators": {name: 1 if count is None else count}}
        several = (isinstance(accels, list) and len(accels) > 1) or (
            isinstance(accels, dict) and len(accels) > 1
        )
        if not several:
            return value
        if isinstance(accels, dict):
            options, key = [{n: 1 if c is None else c} for n, c in accels.items()], "any_of"
        else:
            options, key = list(accels), "ordered"
        if value.get("any_of") or value.get("ordered"):
            raise ValueError(
                "accelerators: several accelerators cannot be combined with any_of/ordered"
            )
        rest = {k: v for k, v in value.items() if k != "accelerators"}
        return {**rest, key: [{"accelerators": option} for option in options]}

    @field_validator("disk_size", mode="before")
    @classmethod
    def _disk_size(cls, value: Any) -> Any:
        size = parse_disk_size(value)
        if isinstance(size, int) and size > limits.MAX_DISK_GB:
            raise ValueError(f"disk_size must be at most {limits.MAX_DISK_GB:,} GB (64 TB), "
                             f"got {value!r}")
        return size

    @field_validator("cpus", "memory", mode="before")
    @classmethod
    def _quantity(cls, value: Any, info: Any) -> str | None:
        return parse_quantity(value, info.field_name)

    @field_validator("accelerators", mode="before")
    @classmethod
    def _accelerators(cls, value: Any) -> dict[str, int | float] | None:
        return parse_accelerators(value)

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, value: Any) -> list[str] | None:
        return parse_ports(value)

    @field_validator("cloud", mode="before")
    @classmethod
    def _cloud_object(cls, value: Any) -> Any:
        """``cloud=sky.AWS()`` (any object whose ``str()`` is the cloud name)."""
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, (int, float, bool, list, dict)):
            return value  # a type error, reported as such
        return str(value)

    @field_validator("cloud")
    @classmethod
    def _cloud(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.lower() not in KNOWN_CLOUDS:
            raise ValueError(f"unknown cloud {value!r}")
        return value.lower()

    @field_validator("infra")
    @classmethod
    def _infra(cls, value: str | None) -> str | None:
        if value is not None:
            parse_infra(value)
        return value

    @field_validator("disk_tier", "network_tier", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Resources:
        if self.infra and (self.cloud or self.region or self.zone):
            raise ValueError("set either infra or cloud/region/zone, not both")
        if self.any_of and self.ordered:
            raise ValueError("set either any_of or ordered, not both")
        return self

    # --- derived views -----------------------------------------------------------------

    def location(self) -> tuple[str | None, str | None, str | None]:
        """(provider, region, zone) from ``infra`` or the legacy cloud/region/zone."""
        if self.infra:
            provider, region, zone = parse_infra(self.infra)
            return provider or None, region, zone
        return self.cloud, self.region, self.zone

    def candidates(self) -> list[Resources]:
        """Concrete requests: each ``any_of``/``ordered`` entry merged over the base."""
        options = self.any_of or self.ordered
        base = self.model_dump(exclude_none=True, exclude={"any_of", "ordered"})
        if not options:
            return [self]
        merged = []
        for option in options:
            data = {**base, **option.model_dump(exclude_none=True)}
            if option.infra:
                for key in ("cloud", "region", "zone"):
                    data.pop(key, None)
            elif option.cloud or option.region or option.zone:
                data.pop("infra", None)
            merged.append(Resources.model_validate(data))
        return merged

    def canonical(self) -> dict[str, Any]:
        """A dict that is equal for equal requests (used for hashing and diffs)."""
        return self.model_dump(mode="json", exclude_none=True)

    def copy(self, **changes: Any) -> Resources:  # type: ignore[override]
        """SkyPilot's ``Resources.copy(**new_properties)``."""
        return Resources.model_validate({**self.model_dump(exclude_none=True), **changes})

    def __repr_args__(self) -> Any:
        return [(k, v) for k, v in super().__repr_args__() if v is not None]

    def __hash__(self) -> int:
        return hash(json.dumps(self.canonical(), sort_keys=True))

    def accelerator_str(self) -> str:
        if not self.accelerators:
            return "-"
        ((name, count),) = self.accelerators.items()
        return f"{name}:{count}"


def merge_resources(defaults: Resources | None, resources: Resources | None) -> Resources:
    """Project defaults under a resources block (the block wins field by field)."""
    if defaults is None:
        return resources or Resources()
    if resources is None:
        return defaults
    data = defaults.model_dump(exclude_none=True)
    own = resources.model_dump(exclude_none=True)
    if "infra" in own or any(k in own for k in ("cloud", "region", "zone")):
        for key in ("infra", "cloud", "region", "zone"):
            data.pop(key, None)
    if "any_of" in own or "ordered" in own:
        data.pop("any_of", None)
        data.pop("ordered", None)
    data.update(own)
    return Resources.model_validate(data)


def _seed_signature() -> inspect.Signature:
    """``inspect.signature(sky.Resources)``: the seed's parameters in the seed's order
    (all positional-or-keyword), then skystate's own fields, keyword-only."""
    fields = {(f.alias or name): f.annotation for name, f in Resources.model_fields.items()}
    param = inspect.Parameter
    seed = [param(name, param.POSITIONAL_OR_KEYWORD, default=None, annotation=fields[name])
            for name in _POSITIONAL]
    extra = [param(name, param.KEYWORD_ONLY, default=None, annotation=annotation)
             for name, annotation in fields.items() if name not in _POSITIONAL]
    return inspect.Signature([*seed, *extra], return_annotation=None)


Resources.__signature__ = _seed_signature()  # type: ignore[misc]
