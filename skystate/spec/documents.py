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
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from skystate.spec import limits
from skystate.spec.mounts import check_destination
from skystate.spec.resources import AutostopSpec, Resources
from skystate.spec.storage import StorageSpec

CLUSTER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
JOB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,127}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _env_values(value: Any) -> Any:
    """SkyPilot accepts numbers/bools as env values; they become strings."""
    if isinstance(value, dict):
        return {
            k: (str(v).lower() if isinstance(v, bool) else ("" if v is None else str(v)))
            if isinstance(v, (bool, int, float)) or v is None
            else v
            for k, v in value.items()
        }
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


class ServiceSpec(_Strict):
    """SkyPilot's ``service:`` section (validated; reconciled by a later release)."""

    readiness_probe: str | dict[str, Any] | None = None
    replica_policy: dict[str, Any] | None = None
    replicas: int | None = Field(default=None, ge=0, le=limits.MAX_REPLICAS)
    load_balancing_policy: str | None = None
    ports: int | str | None = None
    tls: dict[str, Any] | None = None
    pool: bool | dict[str, Any] | None = None
    workers: int | None = None
    load_balancer: dict[str, Any] | None = None


class TaskFields(_Strict):
    """Every field of a SkyPilot task YAML."""

    workdir: str | dict[str, Any] | None = None
    num_nodes: int | None = Field(default=None, ge=1, le=limits.MAX_NUM_NODES)
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
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    # Less common SkyPilot task fields, accepted so that its task YAMLs load unchanged.
    pool: dict[str, Any] | None = None
    managed_secrets: list[str | dict[str, Any]] | None = None
    volume_mounts: list[dict[str, Any]] | None = None
    file_mounts_mapping: dict[str, Any] | None = None
    api_server_access: bool | None = None
    metadata: dict[str, Any] | None = Field(default=None, alias="_metadata")

    _env = field_validator("envs", "secrets", mode="before")(_env_values)
    _env_size = field_validator("envs", "secrets")(_envs_size)
    _commands = field_validator("setup", "run")(_command)

    @model_validator(mode="before")
    @classmethod
    def _secret_refs(cls, value: Any) -> Any:
        """SkyPilot's ``secrets: [name, ...]`` form only names managed secrets."""
        if isinstance(value, dict) and isinstance(value.get("secrets"), list):
            refs = [*(value.get("managed_secrets") or []), *value["secrets"]]
            value = {k: v for k, v in value.items() if k != "secrets"}
            value["managed_secrets"] = refs
        return value


class TaskSpec(TaskFields):
    """A whole SkyPilot task YAML document (``name`` optional, as in SkyPilot)."""

    name: str | None = None


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
    kind: Literal["ManagedJob"] = "ManagedJob"
    from_: str | None = Field(default=None, alias="from")

    _name = field_validator("name")(Job._name.__func__)  # type: ignore[attr-defined]


class Service(TaskFields, _Named):
    kind: Literal["Service"] = "Service"
    from_: str | None = Field(default=None, alias="from")

    _name = field_validator("name")(Cluster._name.__func__)  # type: ignore[attr-defined]


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
