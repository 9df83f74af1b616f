"""The documents of a state directory: Project, Cluster, Job, ManagedJob, Service.

Jobs, managed jobs and services are SkyPilot task fields plus a few of our own, so
they share ``TaskFields``; ``from:`` is resolved by the loader before validation.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictInt,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from skystate.spec import limits, task_rules
from skystate.spec.issues import validate_rest
from skystate.spec.mounts import check_destination
from skystate.spec.resources import AutostopSpec, Resources
from skystate.spec.service import ServiceSpec
from skystate.spec.storage import StorageSpec

CLUSTER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
JOB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,127}$")


class _Strict(BaseModel):
    # defer_build: a model is built when first used (a plan uses few of them)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              defer_build=True)


def _env_values(value: Any) -> Any:
    """A Cluster's envs: numbers/bools become strings (``str()``, as SkyPilot), null ``""``."""
    if isinstance(value, dict):
        return {k: "" if v is None else v if isinstance(v, str) else str(v)
                for k, v in value.items()}
    return value


# A file_mounts key: a destination on the node (an error names its own line).
Destination = Annotated[str, AfterValidator(check_destination)]


def _mount_kind(value: Any) -> str:
    return "StorageSpec" if isinstance(value, (dict, StorageSpec)) else "str"


# A file_mounts value: a path or URI, or a storage mapping (only that arm's errors shown).
MountSource = Annotated[
    Annotated[str, Tag("str")] | Annotated[StorageSpec, Tag("StorageSpec")],
    Discriminator(_mount_kind),
]


def _command(value: Any, info: ValidationInfo) -> Any:
    return limits.check_command(value, str(info.field_name))


def _envs_size(value: Any, info: ValidationInfo) -> Any:
    return limits.check_envs(value, str(info.field_name))


class TaskFields(_Strict):
    """Every field of a SkyPilot task YAML (SkyPilot's rules: see ``task_rules``)."""

    workdir: str | dict[str, Any] | None = None
    num_nodes: StrictInt | None = Field(default=None, ge=1, le=limits.MAX_NUM_NODES)
    resources: Resources | None = None
    envs: dict[str, str] | None = None
    secrets: dict[str, str] | None = None
    # a mapping is a storage mount (a bucket: spec.storage)
    file_mounts: dict[Destination, MountSource] | None = None
    setup: str | None = None
    run: str | None = None
    service: ServiceSpec | None = None
    config: dict[str, Any] | None = None
    volumes: dict[str, Any] | None = None
    event_callback: str | None = None
    inputs: dict[str, float] | None = None
    outputs: dict[str, float] | None = None
    # Less common SkyPilot task fields, accepted so that its task YAMLs load unchanged.
    pool: dict[str, Any] | None = None
    managed_secrets: list[str | dict[str, Any]] | None = None
    volume_mounts: list[dict[str, Any]] | None = None
    file_mounts_mapping: dict[str, Any] | None = None
    api_server_access: bool | None = None
    metadata: dict[str, Any] | None = Field(default=None, alias="_metadata")

    _envs = field_validator("envs", mode="before")(task_rules.check_envs)
    _secrets = field_validator("secrets", mode="before")(_env_values)
    _env_size = field_validator("envs", "secrets")(_envs_size)
    _commands = field_validator("setup", "run")(_command)
    _mounts = field_validator("file_mounts", mode="before")(task_rules.check_mounts)
    _workdir = field_validator("workdir", mode="before")(task_rules.check_workdir)
    _inputs = field_validator("inputs", "outputs", mode="before")(task_rules.check_inputs)
    _config = field_validator("config", mode="before")(task_rules.check_config)

    @field_validator("pool")
    @classmethod
    def _pool_or_service(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("service") is not None:
            raise ValueError("a task has either service or pool, not both")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _sky_task(cls, value: Any, handler: Any) -> Any:
        """Managed-secret references split out; ``${VAR}`` filled in (see task_rules)."""
        if not isinstance(value, dict):
            return handler(value)
        value, errors = task_rules.split_secrets(value)
        return validate_rest(cls.__name__, handler, task_rules.fill_env_vars(value), errors)

    @field_validator("resources", mode="before")
    @classmethod
    def _one_block(cls, value: Any) -> Any:
        if isinstance(value, list):
            raise ValueError("must be a mapping; for several options use any_of: (any of "
                             "them) or ordered: (in order of preference) inside it")
        return value


class TaskSpec(TaskFields):
    """A whole SkyPilot task YAML document (``name`` optional, as in SkyPilot)."""

    name: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not task_rules.TASK_NAME.match(value):
            raise ValueError(f"invalid task name {value!r}: use letters, digits and single or "
                             "double '.', '_', '-' between them, starting and ending with a "
                             "letter or digit")
        return value


class _Named(_Strict):
    kind: str
    name: str


class Cluster(_Named):
    kind: Literal["Cluster"] = "Cluster"
    resources: Resources = Field(default_factory=Resources)
    num_nodes: int = Field(default=1, ge=1, le=limits.MAX_NUM_NODES)
    power: Literal["up", "stopped"] = "up"
    autostop: AutostopSpec | None = None
    protect: bool = False
    setup: str | None = None
    workdir: str | None = None
    # a mapping is a storage mount (a bucket: spec.storage), staged as a Job's
    file_mounts: dict[Destination, MountSource] | None = None
    envs: dict[str, str] | None = None

    _env = field_validator("envs", mode="before")(_env_values)
    _env_size = field_validator("envs")(_envs_size)
    _commands = field_validator("setup")(_command)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not CLUSTER_NAME.match(value):
            raise ValueError(
                f"invalid cluster name {value!r}: use lowercase letters, digits and '-', "
                "starting with a letter, at most 63 characters"
            )
        return value

    def immutable_view(self) -> dict[str, Any]:
        """The fields whose change needs a replace (down + create)."""
        return {"resources": self.resources.canonical(), "num_nodes": self.num_nodes}

    def mutable_view(self) -> dict[str, Any]:
        """The fields changed in place (setup re-run, autostop re-set)."""
        return {
            "setup": self.setup,
            "workdir": self.workdir,
            "file_mounts": {
                dst: src if isinstance(src, str)
                else src.model_dump(mode="json", exclude_none=True)
                for dst, src in self.file_mounts.items()
            } if self.file_mounts is not None else None,
            "envs": self.envs,
        }


class Job(TaskFields, _Named):
    kind: Literal["Job"] = "Job"
    cluster: str
    from_: str | None = Field(default=None, alias="from")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not JOB_NAME.match(value):
            raise ValueError(
                f"invalid job name {value!r}: use letters, digits, '-', '_' and '.', "
                "starting with a letter"
            )
        return value


class ManagedJob(TaskFields, _Named):
    """A managed job run once per spec (its own cluster, recovered on preemption).
    ``max_duration`` ("90m", "2h", "1d" or seconds): the job is cancelled once it has run
    this long, and the plan estimates its cost from it; ``protect``: a spec change or
    removal from the files never cancels it."""

    kind: Literal["ManagedJob"] = "ManagedJob"
    from_: str | None = Field(default=None, alias="from")
    max_duration: str | float | None = None
    protect: bool = False

    @field_validator("max_duration")
    @classmethod
    def _duration(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            duration_seconds(value)
        return value

    _name = field_validator("name")(Job._name.__func__)  # type: ignore[attr-defined]


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(value: str | float) -> float:
    """``"90m"``, ``"2h"``, ``"1d"``, ``"30s"`` or a number of seconds; ValueError else."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().lower()
        unit = _DURATION_UNITS.get(text[-1:]) if text else None
        try:
            seconds = float(text[:-1]) * unit if unit else float(text)
        except ValueError:
            raise ValueError(f"invalid duration {value!r}: use e.g. 90m, 2h, 1d or "
                             "seconds") from None
    if not seconds > 0:
        raise ValueError(f"duration {value!r} must be positive")
    return seconds


class Service(TaskFields, _Named):
    kind: Literal["Service"] = "Service"
    from_: str | None = Field(default=None, alias="from")
    update_mode: Literal["rolling", "blue_green"] = "rolling"  # how a changed spec rolls out
    protect: bool = False  # never taken down by apply/prune (as for a Cluster)

    _name = field_validator("name")(Cluster._name.__func__)  # type: ignore[attr-defined]

    @model_validator(mode="after")
    def _served(self) -> Service:
        missing = [f for f in ("service", "run") if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a Service needs {' and '.join(missing)} (what to serve and how "
                             "to tell it is ready)")
        return self


# --- Project ---------------------------------------------------------------------------


class LocalConfig(_Strict):
    accelerators: dict[str, int] = Field(default_factory=dict)
    cpus: float | None = Field(default=None, gt=0)
    memory: float | None = Field(default=None, gt=0)


class SSHPool(_Strict):
    """A pool of existing hosts (``infra: ssh/<pool>``); see ``skystate.providers.ssh``."""

    hosts: list[str] = Field(min_length=1)  # "addr" or "addr:port"
    user: str | None = None
    identity_file: str | None = None
    port: int = Field(default=22, ge=1, le=65535)
    accelerators: dict[str, int] = Field(default_factory=dict)  # what each host has
    cpus: float | None = Field(default=None, gt=0)  # per host, for job scheduling
    memory: float | None = Field(default=None, gt=0)  # GiB per host (informational)
    remote_dir: str = "~/.skystate-node"  # node folders; "{host}" expands (shared homes)
    isolate_home: bool = False  # jobs' HOME (and / mounts) inside the node folder
    insecure_host_keys: bool = False  # true: skip host-key checks (test rigs only)


class SSHConfig(_Strict):
    pools: dict[str, SSHPool] = Field(default_factory=dict)


class AWSConfig(_Strict):
    """``providers: aws:``; see ``skystate.providers.aws``."""

    regions: list[str] | None = None
    endpoint_url: str | None = None  # e.g. a moto server
    ssh_user: str = "ubuntu"
    identity_file: str | None = None  # private key; its .pub becomes the EC2 key pair
    key_name: str | None = None  # an existing EC2 key pair (matching identity_file)
    image_id: str | dict[str, str] | None = None  # AMI, or {region: AMI}
    security_group: str | None = None  # existing group name (default: one per cluster)
    remote_dir: str = "~/.skystate-node"  # node folders; "{host}" expands to the instance id
    isolate_home: bool = False  # jobs' HOME (and / mounts) inside the node folder
    shutdown_command: list[str] | None = None  # powers a node off (default: sudo shutdown)
    ssh_timeout: float = Field(300.0, gt=0)  # seconds a new instance may take to accept SSH
    # TEST ONLY: reach every node's sshd at "host:port" (a cloud emulator has no machines;
    # an endpoint_url other than AWS's own needs it, its instances' IPs are made up)
    test_ssh_address: str | None = None


class GCPConfig(_Strict):
    """``infra: gcp/...``; see ``skystate.providers.gcp``."""

    project: str | None = None  # default: $GOOGLE_CLOUD_PROJECT
    regions: list[str] | None = None  # offers only there (default: every catalog region)
    api_endpoint: str | None = None  # plain http:// (a local fake/emulator): no credentials
    ssh_user: str = "skystate"  # login on the instances
    identity_file: str | None = None  # private key; its .pub goes in the ssh-keys metadata
    remote_dir: str = "~/.skystate-node"  # node folders on the instances
    image: str = "projects/debian-cloud/global/images/family/debian-12"
    network: str = "global/networks/default"
    ssh_timeout: float = Field(300.0, gt=0)  # seconds a new instance may take to accept SSH
    # TESTS ONLY: reach every node's sshd at this "host:port" instead of its IP (fake API).
    test_ssh_address: str | None = None


class ProvidersConfig(_Strict):
    local: LocalConfig = Field(default_factory=LocalConfig)
    ssh: SSHConfig = Field(default_factory=SSHConfig)
    aws: AWSConfig = Field(default_factory=AWSConfig)
    gcp: GCPConfig = Field(default_factory=GCPConfig)


class Defaults(_Strict):
    resources: Resources | None = None
    autostop: AutostopSpec | None = None


class Project(_Named):
    kind: Literal["Project"] = "Project"
    defaults: Defaults = Field(default_factory=Defaults)
    providers: ProvidersConfig = Field(default_factory=ProvidersConfig)

    _name = field_validator("name")(Cluster._name.__func__)  # type: ignore[attr-defined]


DOCUMENT_KINDS: dict[str, type[_Named]] = {
    "Project": Project,
    "Cluster": Cluster,
    "Job": Job,
    "ManagedJob": ManagedJob,
    "Service": Service,
}
