"""The SkyPilot ``resources`` block: what a cluster or job needs.

Every value is normalised on the way in (``"A100:8"`` → ``{"A100": 8}``, ``8`` →
``"8"``, ``8080`` → ``["8080"]``) so that two spellings of the same request hash the
same and the planner never sees a replace where nothing changed.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic._internal._model_construction import ModelMetaclass

from skystate.spec import limits
from skystate.spec.block_cache import BlockCache, block_key
from skystate.spec.issues import located, validate_rest
from skystate.spec.quantities import (
    TIME_PATTERN,
    check_size_text,
    parse_accelerators,
    parse_disk_size,
    parse_minutes,
    parse_ports,
    parse_quantity,
    quantity_bounds,
)
from skystate.spec.resource_options import LOCATION_FIELDS, expand
from skystate.spec.suggest import did_you_mean

__all__ = [
    "KNOWN_CLOUDS", "AutostopSpec", "JobRecovery", "Resources", "merge_resources",
    "parse_accelerators", "parse_disk_size", "parse_infra", "parse_minutes", "parse_ports",
    "parse_quantity", "quantity_bounds",
]

# Clouds SkyPilot 0.14 accepts in ``cloud:``/``infra:`` (so its task YAMLs load unchanged),
# plus ``local``, a provider only skystate has. Only some have a provider (see providers/).
SKY_CLOUDS = (
    "aws", "azure", "gcp", "ibm", "lambda", "scp", "oci", "kubernetes", "runpod", "vast",
    "vsphere", "cudo", "fluidstack", "paperspace", "primeintellect", "do", "nebius", "ssh",
    "slurm", "hyperbolic", "seeweb", "shadeform", "yotta", "mithril", "verda",
)
KNOWN_CLOUDS = ("local", *SKY_CLOUDS)
_INFRA_CLOUDS = (*KNOWN_CLOUDS, "k8s")  # ``k8s`` is a short name in ``infra:`` only
_TIME_TEXT = re.compile(r"^[0-9]+[mhdwMHDW]?$")  # SkyPilot's autostop time pattern
_GKE_TPUS = ("tpu-v4-podslice", "tpu-v5-lite-device", "tpu-v5-lite-podslice", "tpu-v5p-slice",
             "tpu-v6e-slice")
_ACCELERATOR_ARGS = {"runtime_version": str, "tpu_name": str, "tpu_vm": bool,
                     "gcp_queued_resource": bool}
_VALIDATED: BlockCache[Resources] = BlockCache()  # validated blocks, by their written form
_VOLUME_FIELDS = {"disk_tier": str, "path": str, "auto_delete": bool, "storage_type": str,
                  "name": str, "attach_mode": str}


class _Strict(BaseModel):
    # defer_build: a model is built when first used (a plan uses few of them)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              defer_build=True)


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
        if isinstance(value, str) and TIME_PATTERN.match(value.strip()):
            return {"idle_minutes": parse_minutes(value)}
        if isinstance(value, dict) and isinstance(value.get("idle_minutes"), str):
            if TIME_PATTERN.match(value["idle_minutes"].strip()):
                value = {**value, "idle_minutes": parse_minutes(value["idle_minutes"])}
        if isinstance(value, dict) and "wait_for" in value and isinstance(value["wait_for"], str):
            return {**value, "wait_for": value["wait_for"].lower()}
        return value


class ResourcesAutostop(AutostopSpec):
    """``resources.autostop`` as SkyPilot reads it: ``true`` or a mapping without
    ``idle_minutes`` means 0 idle minutes; times are ``30``, ``'30m'``, ``'2h'``..."""

    idle_minutes: StrictInt = Field(default=0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _sky_forms(cls, value: Any) -> Any:
        if isinstance(value, str) and not _TIME_TEXT.match(value):
            raise ValueError(f"must be minutes or a time like '30m', '2h', '1d', got {value!r}")
        if isinstance(value, dict) and isinstance(value.get("idle_minutes"), str):
            raise located("autostop", [(("idle_minutes",), "must be an integer, got "
                                                           f"{value['idle_minutes']!r}")])
        return value


ExitCode = Annotated[int, Field(strict=True, ge=0, le=255)]


class JobRecovery(_Strict):
    strategy: str | None = None
    max_restarts_on_errors: StrictInt = Field(default=0, ge=0, le=limits.MAX_RESTARTS)
    recover_on_exit_codes: list[ExitCode] | None = None

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

    @field_validator("recover_on_exit_codes")
    @classmethod
    def _unique(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"must not repeat an exit code, got {value!r}")
        return value


def parse_infra(infra: str) -> tuple[str, str | None, str | None]:
    """``aws/us-east-1/us-east-1a`` → (provider, region, zone); ``ssh/lab`` → pool as region."""
    parts = [p for p in infra.strip().split("/")]
    if not parts[0] or any(not p for p in parts):
        raise ValueError(f"{infra!r} must look like 'cloud[/region[/zone]]'")
    provider = parts[0].lower()
    if provider == "*":
        provider = ""
    elif provider not in _INFRA_CLOUDS:
        hint = did_you_mean(provider, _INFRA_CLOUDS)
        raise ValueError(f"unknown cloud {parts[0]!r} in {infra!r}{hint}")
    if provider in ("kubernetes", "k8s"):
        return "kubernetes", "/".join(parts[1:]) or None, None
    if provider == "ssh":  # the rest is the pool's name
        return "ssh", "/".join(parts[1:]) or None, None
    if len(parts) > 3:
        raise ValueError(f"{infra!r} has too many parts (cloud/region/zone)")
    region = parts[1] if len(parts) > 1 and parts[1] != "*" else None
    zone = parts[2] if len(parts) > 2 else None
    return provider, region, zone


def _key_errors(value: Any, fields: dict[str, type], extra: bool,
                where: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """(path, message) for each key of ``value`` that is unknown or of the wrong type."""
    if not isinstance(value, dict):
        return []
    errors = []
    for key, item in value.items():
        kind = fields.get(key)
        if kind is None:
            if not extra:
                errors.append(((*where, key),
                               f"unknown field {key!r}{did_you_mean(str(key), fields)}"))
        elif not isinstance(item, kind) or (kind is not bool and isinstance(item, bool)):
            expected = "true or false" if kind is bool else "a string"
            errors.append(((*where, key), f"must be {expected}, got {item!r}"))
    return errors


def _raise(what: str, errors: list[tuple[tuple[Any, ...], str]]) -> None:
    if errors:
        raise located(what, errors)


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
    nested fields) is untouched. A call is validated as its keyword arguments' dict, so
    that it may return the model of an identical block validated before.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if len(args) > len(_POSITIONAL):
            raise TypeError(f"Resources() takes at most {len(_POSITIONAL)} positional arguments")
        for name, value in zip(_POSITIONAL, args, strict=False):
            if name in kwargs:
                raise TypeError(f"Resources() got multiple values for argument {name!r}")
            kwargs[name] = value
        return cls.model_validate({k: v for k, v in kwargs.items() if v is not None})

    @property
    def __signature__(cls) -> inspect.Signature:
        """The seed's signature, whenever asked: pydantic writes its own (fields in
        declaration order) when a deferred model is built on first use; that write is
        ignored below, so ``inspect.signature(sky.Resources)`` never changes."""
        return _seed_signature()

    @__signature__.setter
    def __signature__(cls, _value: Any) -> None:
        pass


class Resources(_Strict, metaclass=_ResourcesMeta):
    """SkyPilot's ``resources`` block (same fields and meaning).

    Also SkyPilot's ``sky.Resources``: positional arguments in SkyPilot's order,
    ``cloud=sky.AWS()``, immutable, ``.copy(**changes)``, hashable (usable in sets).
    As in SkyPilot, ``cloud``/``region``/``zone`` read back what ``infra`` names (and a
    TPU implies ``gcp``); such derived values are not written back out.
    """

    OTHER_NAMES: ClassVar[tuple[str, ...]] = ("gpus",)  # accepted names that are not fields

    infra: str | None = None
    cloud: str | None = None
    region: str | None = None
    zone: str | None = None
    instance_type: str | None = None
    cpus: str | None = None
    memory: str | None = None
    accelerators: dict[str, int | float] | None = None
    accelerator_args: dict[str, Any] | None = None
    use_spot: StrictBool | None = None
    job_recovery: JobRecovery | None = None
    disk_size: int | None = Field(default=None, gt=0)
    disk_tier: Literal["low", "medium", "high", "ultra", "best"] | None = None
    network_tier: Literal["standard", "best"] | None = None
    ports: list[str] | None = None
    image_id: str | dict[str, str] | None = None
    labels: dict[str, str] | None = None
    autostop: ResourcesAutostop | None = None
    priority: StrictInt | None = Field(default=None, ge=-1000, le=1000)
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

    @model_validator(mode="wrap")
    @classmethod
    def _sky_shorthands(cls, value: Any, handler: Any) -> Any:
        """A list of resources is ``any_of``; the rest is SkyPilot's (see resource_options).
        Problems found here are reported with the rest of the block's, all at once.

        Each distinct written block is validated once (see block_cache): a Resources is
        immutable, so clusters and jobs that write the same block share one."""
        if isinstance(value, list):
            value = {"any_of": value}
        if not isinstance(value, dict):
            return handler(value)
        key = block_key(value)
        found = _VALIDATED.get(key)
        if found is not None:
            return found
        return _VALIDATED.put(key, cls._checked(value, handler)._consistent())

    @classmethod
    def _checked(cls, value: dict[str, Any], handler: Any) -> Resources:
        errors = []
        if value.get("infra") is not None:
            errors += [((key,), f"set either infra or {key} (infra names the cloud, region and "
                                "zone), not both")
                       for key in LOCATION_FIELDS if value.get(key) is not None]
        if value.get("any_of") is not None and value.get("ordered") is not None:
            errors.append((("ordered",), "set either any_of or ordered, not both"))
        if "hooks" in value:
            errors.append((("hooks",), "lifecycle hooks go under the task's top-level "
                                       "config.hooks, not under resources"))
        value, more = expand(value)
        return validate_rest("Resources", handler, value, errors + more)

    @field_validator("disk_size", mode="before")
    @classmethod
    def _disk_size(cls, value: Any) -> Any:
        size = parse_disk_size(value)
        if isinstance(size, int) and size > limits.MAX_DISK_GB:
            raise ValueError(f"must be at most {limits.MAX_DISK_GB:,} GB (64 TB), got {value!r}")
        return size

    @field_validator("ephemeral_storage", mode="before")
    @classmethod
    def _size_text(cls, value: Any) -> Any:
        return None if value is None else check_size_text(value)

    @field_validator("cpus", "memory", mode="before")
    @classmethod
    def _quantity(cls, value: Any, info: Any) -> str | None:
        return parse_quantity(value, info.field_name)

    @field_validator("accelerators", mode="before")
    @classmethod
    def _accelerators(cls, value: Any) -> dict[str, int | float] | None:
        return parse_accelerators(value)

    @field_validator("accelerator_args", mode="before")
    @classmethod
    def _accelerator_args(cls, value: Any) -> Any:
        _raise("accelerator_args", _key_errors(value, _ACCELERATOR_ARGS, extra=False))
        return value

    @field_validator("docker_login_config", mode="before")
    @classmethod
    def _docker_login(cls, value: Any) -> Any:
        if isinstance(value, dict):
            missing = [k for k in ("username", "password", "server") if k not in value]
            if missing:
                raise ValueError(f"missing {', '.join(missing)} (needs username, password, "
                                 "server)")
            fields = dict.fromkeys(("username", "password", "server"), str)
            _raise("_docker_login_config", _key_errors(value, fields, extra=False))
        return value

    @field_validator("volumes", mode="before")
    @classmethod
    def _volumes(cls, value: Any) -> Any:
        if isinstance(value, list):
            errors = []
            for i, item in enumerate(value):
                errors += _key_errors(item, _VOLUME_FIELDS, extra=True, where=(i,))
                if isinstance(item, dict) and "disk_size" in item:
                    try:
                        check_size_text(item["disk_size"])
                    except ValueError as err:
                        errors.append(((i, "disk_size"), str(err)))
            _raise("volumes", errors)
        return value

    @field_validator("job_recovery", mode="before")
    @classmethod
    def _no_recovery(cls, value: Any) -> Any:
        """SkyPilot: strategy ``none`` means no job recovery."""
        strategy = value.get("strategy") if isinstance(value, dict) else value
        return None if strategy == "none" else value

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
            raise ValueError(f"unknown cloud {value!r}{did_you_mean(value, KNOWN_CLOUDS)}")
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

    def _consistent(self) -> Resources:
        """``cloud``/``region``/``zone`` read back what ``infra`` (or a TPU) implies; once
        (pydantic runs this model's validator twice when it is nested in another model)."""
        if "_derived" in self.__dict__:
            return self
        derived: dict[str, str | None] = {}
        if self.infra:
            provider, region, zone = parse_infra(self.infra)
            if provider == "ssh" and region:  # SkyPilot names a pool's context ssh-<pool>
                region = f"ssh-{region}"
            derived = {"cloud": provider or None, "region": region, "zone": zone}
        name = next(iter(self.accelerators or {}), "")
        if "tpu" in name.lower():
            cloud = derived.get("cloud", self.cloud)
            if cloud is None:
                derived["cloud"] = "kubernetes" if name in _GKE_TPUS else "gcp"
            elif cloud not in ("gcp", "kubernetes"):
                raise ValueError(f"TPU accelerators ({name}) need cloud gcp or kubernetes, "
                                 f"got {cloud}")
        for key, val in derived.items():
            object.__setattr__(self, key, val)
        object.__setattr__(self, "_derived", frozenset(derived))
        return self

    @model_serializer(mode="wrap")
    def _without_derived(self, handler: Any) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for key in getattr(self, "_derived", ()):
                data.pop(key, None)
        return data

    # --- derived views -----------------------------------------------------------------

    def location(self) -> tuple[str | None, str | None, str | None]:
        """(provider, region, zone) from ``infra`` or the legacy cloud/region/zone."""
        if self.infra:
            provider, region, zone = parse_infra(self.infra)
            return provider or None, region, zone
        return self.cloud, self.region, self.zone

    def candidates(self) -> list[Resources]:
        """Concrete requests: each ``any_of``/``ordered`` entry merged over the base
        (SkyPilot's merge: the entry's fields win, ``labels`` are combined)."""
        options = self.any_of or self.ordered
        if not options:
            return [self]
        base = self.model_dump(exclude_none=True, exclude={"any_of", "ordered"})
        merged = []
        for option in options:
            own = option.model_dump(exclude_none=True)
            data = {**base, **own}
            if base.get("labels") and own.get("labels"):
                data["labels"] = {**base["labels"], **own["labels"]}
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


@functools.cache
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


