"""SkyPilot's ``sky.Task`` (and a re-export of ``sky.Resources``).

Same constructor, attributes and fluent setters as the SDK reference. A task YAML
that SkyPilot accepts loads unchanged with ``Task.from_yaml``; errors raise
``SpecError`` (a ``ValueError``) naming file, line and field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from skystate.exceptions import SpecError, SpecIssue
from skystate.spec.dag import get_current_dag
from skystate.spec.documents import ServiceSpec, TaskSpec
from skystate.spec.issues import validate
from skystate.spec.limits import check_num_nodes
from skystate.spec.mounts import check_destination, missing_sources
from skystate.spec.resources import Resources
from skystate.spec.storage import Storage, StorageSpec
from skystate.spec.yaml_lines import YamlDoc, load_yaml_file

__all__ = ["CommandGen", "Resources", "Task"]

CommandGen = Callable[[int, list[str]], "str | None"]
ResourcesSpec = Resources | list[Resources] | set[Resources]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# TaskSpec fields kept as they are (no SDK attribute of their own beyond the name).
_EXTRA_FIELDS = (
    "config", "volumes", "inputs", "outputs", "pool", "managed_secrets", "volume_mounts",
    "api_server_access", "metadata",
)


def _env_dict(values: Any, what: str) -> dict[str, str]:
    """A dict or a list of (key, value) pairs → {str: str}; numbers/bools become strings."""
    if values is None:
        return {}
    items = values.items() if isinstance(values, dict) else values
    out: dict[str, str] = {}
    try:
        pairs = list(items)
    except TypeError:
        raise ValueError(f"{what} must be a dict or a list of (key, value) pairs") from None
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{what} must be a dict or a list of (key, value) pairs")
        key, value = pair
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise ValueError(f"{what}: invalid variable name {key!r}")
        if isinstance(value, bool):
            value = str(value).lower()
        elif value is None:
            value = ""
        elif isinstance(value, (int, float)):
            value = str(value)
        if not isinstance(value, str):
            raise ValueError(f"{what}: value of {key} must be a string, got {value!r}")
        out[key] = value
    return out


def _check_mount_paths(file_mounts: dict[str, Any]) -> None:
    for dst, src in file_mounts.items():
        if not isinstance(dst, str) or not dst:
            raise ValueError(f"file_mounts: destination {dst!r} must be a non-empty path")
        check_destination(dst)
        if dst.endswith("/") and dst != "/":
            raise ValueError(f"file_mounts: destination {dst!r} must not end with '/'")
        if isinstance(src, str) and src.endswith("/") and "://" not in src and src != "/":
            raise ValueError(f"file_mounts: source {src!r} must not end with '/'")
        if not isinstance(src, (str, dict, StorageSpec, Storage)):
            raise ValueError(f"file_mounts: source of {dst!r} must be a path, a URI or a "
                             "storage mapping")


class Task:
    """Task: a computation to be run on the cloud (SkyPilot's ``sky.Task``)."""

    def __init__(
        self,
        name: str | None = None,
        *,
        setup: str | None = None,
        run: str | CommandGen | None = None,
        envs: dict[str, str] | None = None,
        workdir: str | dict[str, Any] | None = None,
        num_nodes: int | None = None,
        docker_image: str | None = None,
        event_callback: str | None = None,
        blocked_resources: Iterable[Resources] | None = None,
        file_mounts_mapping: dict[str, str] | None = None,
    ) -> None:
        if run is not None and not isinstance(run, str) and not callable(run):
            raise ValueError(f"run must be a shell command (str) or a callable, got {run!r}")
        if setup is not None and not isinstance(setup, str):
            raise ValueError(f"setup must be a string, got {setup!r}")
        self.name = name
        self.setup = setup
        self.run = run
        self.envs: dict[str, str] = _env_dict(envs, "envs")
        self.secrets: dict[str, str] = {}
        self.workdir = workdir
        self.num_nodes = num_nodes  # type: ignore[assignment]  # property: None -> 1
        self.docker_image = docker_image
        self.event_callback = event_callback
        self.blocked_resources = set(blocked_resources) if blocked_resources else None
        self.file_mounts_mapping = file_mounts_mapping
        self.resources: set[Resources] | list[Resources] = {Resources()}
        self.resources_override: dict[str, Any] = {}
        self.file_mounts: dict[str, str] | None = None
        self.storage_mounts: dict[str, Storage] = {}
        self.service: ServiceSpec | None = None
        self.extra: dict[str, Any] = {}  # other SkyPilot task fields (config, volumes, ...)
        self._origin: YamlDoc | None = None  # the YAML it came from (for file:line errors)
        dag = get_current_dag()
        if dag is not None:  # ``with sky.Dag() as dag:`` collects the tasks made inside it
            dag.add(self)

    # --- properties --------------------------------------------------------------------

    @property
    def num_nodes(self) -> int:
        return self._num_nodes

    @num_nodes.setter
    def num_nodes(self, value: int | None) -> None:
        if value is None:
            value = 1
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"num_nodes must be a positive integer, got {value!r}")
        check_num_nodes(value)
        self._num_nodes = value

    @property
    def envs_and_secrets(self) -> dict[str, str]:
        return {**self.envs, **self.secrets}

    # --- fluent setters ----------------------------------------------------------------

    def set_resources(self, resources: ResourcesSpec) -> Task:
        """One Resources, or a set (any of them) / list (in order of preference)."""
        if isinstance(resources, Resources):
            self.resources = {resources}
        elif isinstance(resources, (set, frozenset)):
            self.resources = set(self._checked(resources))
        elif isinstance(resources, (list, tuple)):
            self.resources = list(self._checked(resources))
        else:
            raise ValueError(f"resources must be a Resources, a set or a list, got {resources!r}")
        if not self.resources:
            raise ValueError("resources must not be empty")
        if self.resources_override:
            self._apply_override()
        return self

    @staticmethod
    def _checked(items: Iterable[Any]) -> list[Resources]:
        out = list(items)
        for item in out:
            if not isinstance(item, Resources):
                raise ValueError(f"resources must be Resources objects, got {item!r}")
        return out

    def set_resources_override(self, override_params: dict[str, Any]) -> Task:
        """Apply ``Resources.copy(**override_params)`` to every resources option."""
        self.resources_override = {**self.resources_override, **(override_params or {})}
        self._apply_override()
        return self

    def _apply_override(self) -> None:
        changed = [r.copy(**self.resources_override) for r in self.resources]
        self.resources = changed if isinstance(self.resources, list) else set(changed)

    def set_file_mounts(self, file_mounts: dict[str, Any] | None) -> Task:
        self.file_mounts = None
        if file_mounts:
            self.update_file_mounts(file_mounts)
        return self

    def update_file_mounts(self, file_mounts: dict[str, Any]) -> Task:
        """``{remote_path: local path or URI}``; a mapping value is a storage mount."""
        _check_mount_paths(file_mounts)
        for dst, src in file_mounts.items():
            if isinstance(src, (dict, StorageSpec, Storage)):
                self.update_storage_mounts({dst: src})
            else:
                self.file_mounts = {**(self.file_mounts or {}), dst: src}
        return self

    def set_storage_mounts(self, storage_mounts: dict[str, Any] | None) -> Task:
        self.storage_mounts = {}
        if storage_mounts:
            self.update_storage_mounts(storage_mounts)
        return self

    def update_storage_mounts(self, storage_mounts: dict[str, Any]) -> Task:
        """``{mount_path: sky.Storage}`` (a storage mapping is taken too)."""
        for path, storage in storage_mounts.items():
            if not isinstance(path, str) or not path:
                raise ValueError(f"storage mount path {path!r} must be a non-empty string")
            check_destination(path)
            if isinstance(storage, (dict, StorageSpec)):
                storage = Storage.from_yaml_config(storage)
            if not isinstance(storage, Storage):
                raise ValueError(f"storage mount {path!r}: expected a sky.Storage, "
                                 f"got {type(storage).__name__}")
            key = path.rstrip("/") or "/"  # SkyPilot's example writes '/remote/imagenet/'
            if self.file_mounts and key in self.file_mounts:
                raise ValueError(f"{path!r} is both a file mount and a storage mount")
            self.storage_mounts[key] = storage
        return self

    def update_envs(self, envs: dict[str, Any] | list[tuple[str, Any]] | None) -> Task:
        self.envs.update(_env_dict(envs, "envs"))
        return self

    def update_secrets(self, secrets: dict[str, Any] | list[tuple[str, Any]] | None) -> Task:
        self.secrets.update(_env_dict(secrets, "secrets"))
        return self

    def set_service(self, service: ServiceSpec | dict[str, Any] | None) -> Task:
        """A ServiceSpec, or a ``service:`` mapping (SpecError naming every bad field)."""
        if service is None or isinstance(service, ServiceSpec):
            self.service = service
            return self
        if not isinstance(service, dict):
            raise SpecError([SpecIssue("<service>", None, "service", "must be a mapping")])
        issues: list[SpecIssue] = []
        doc = YamlDoc("<service>", {"service": service}, {(): 0})
        spec = validate(ServiceSpec, service, doc, issues, prefix=("service",))
        if spec is None:
            raise SpecError([
                SpecIssue(i.file, i.line or None, i.field, i.message) for i in issues
            ])
        self.service = spec
        return self

    # --- YAML ---------------------------------------------------------------------------

    @staticmethod
    def from_yaml(
        yaml_path: str | Path,
        env_overrides: list[tuple[str, str]] | dict[str, str] | None = None,
        secrets_overrides: list[tuple[str, str]] | dict[str, str] | None = None,
    ) -> Task:
        """Initialise a task from a SkyPilot task YAML. Raises SpecError (a ValueError).

        ``env_overrides``/``secrets_overrides`` (what ``--env``/``--secret`` give) are
        applied before the YAML is checked, as SkyPilot does: they may set an env the
        YAML leaves without a value, and they fill ``${VAR}`` in file_mounts.
        """
        shown = str(yaml_path)
        docs = load_yaml_file(Path(yaml_path).expanduser(), shown)
        if not docs:
            docs = [YamlDoc(shown, {}, {(): 1})]
        if len(docs) > 1:
            raise SpecError([SpecIssue(
                shown, docs[1].start_line, "",
                "expected a single task; this file has several documents (a pipeline)",
            )])
        doc = docs[0]
        if not isinstance(doc.data, dict):
            raise SpecError([SpecIssue(
                shown, doc.start_line, "",
                f"a task YAML must be a mapping, got {type(doc.data).__name__}",
            )])
        return Task._from_doc(doc, env_overrides, secrets_overrides)

    @staticmethod
    def from_yaml_config(
        config: dict[str, Any],
        env_overrides: list[tuple[str, str]] | dict[str, str] | None = None,
        secrets_overrides: list[tuple[str, str]] | dict[str, str] | None = None,
    ) -> Task:
        """Initialise a task from a task YAML's content (a dict)."""
        if not isinstance(config, dict):
            raise SpecError([SpecIssue("<task config>", None, "", "a task config must be a dict")])
        doc = YamlDoc("<task config>", config, {(): 0})
        return Task._from_doc(doc, env_overrides, secrets_overrides)

    @staticmethod
    def _from_doc(doc: YamlDoc, env_overrides: Any = None, secrets_overrides: Any = None) -> Task:
        data = dict(doc.data)
        for field, override in (("envs", env_overrides), ("secrets", secrets_overrides)):
            if override:
                given = data.get(field)
                base = given if isinstance(given, dict) else {}
                data[field] = {**base, **_env_dict(override, field)}
        issues: list[SpecIssue] = []
        spec = validate(TaskSpec, data, doc, issues)
        if spec is None:
            raise SpecError([
                SpecIssue(i.file, i.line or None, i.field, i.message) for i in issues
            ])
        task = Task.from_spec(spec)
        task._origin = doc
        return task

    @staticmethod
    def from_spec(spec: TaskSpec) -> Task:
        """A Task from a validated TaskSpec (or a Job/ManagedJob/Service document)."""
        task = Task(
            spec.name if isinstance(getattr(spec, "name", None), str) else None,
            setup=spec.setup,
            run=spec.run,
            envs=spec.envs,
            workdir=spec.workdir,
            num_nodes=spec.num_nodes,
            event_callback=spec.event_callback,
            file_mounts_mapping=spec.file_mounts_mapping,
        )
        task.secrets = dict(spec.secrets or {})
        if spec.resources is not None:
            res = spec.resources
            if res.any_of:
                task.resources = set(res.candidates())
            elif res.ordered:
                task.resources = list(res.candidates())
            else:
                task.resources = {res}
        if spec.file_mounts:
            task.update_file_mounts(dict(spec.file_mounts))
        task.service = spec.service
        task.extra = {k: getattr(spec, k) for k in _EXTRA_FIELDS if getattr(spec, k) is not None}
        return task

    def to_yaml_config(self) -> dict[str, Any]:
        """The task as a SkyPilot task YAML dict (loads back to an equal task)."""
        if callable(self.run):
            raise ValueError("a task whose run is a callable cannot be written as YAML")
        config: dict[str, Any] = {}

        def put(key: str, value: Any) -> None:
            if value not in (None, {}, []):
                config[key] = value

        put("name", self.name)
        put("workdir", self.workdir)
        if self._num_nodes != 1:
            config["num_nodes"] = self._num_nodes
        put("resources", self._resources_config())
        put("envs", dict(self.envs))
        put("secrets", dict(self.secrets))
        put("file_mounts", {**(self.file_mounts or {}), **{
            dst: storage.to_yaml_config() for dst, storage in self.storage_mounts.items()}})
        put("setup", self.setup)
        put("run", self.run)
        if self.service is not None:
            put("service", self.service.model_dump(mode="json", exclude_none=True))
        put("event_callback", self.event_callback)
        put("file_mounts_mapping", self.file_mounts_mapping)
        for key, value in self.extra.items():
            put("_metadata" if key == "metadata" else key, value)
        return config

    def _resources_config(self) -> dict[str, Any] | None:
        options = list(self.resources)
        dumped = [r.model_dump(mode="json", exclude_none=True, by_alias=True) for r in options]
        if len(dumped) == 1:
            return dumped[0] or None
        if isinstance(self.resources, list):
            return {"ordered": dumped}
        return {"any_of": sorted(dumped, key=lambda d: repr(sorted(d.items())))}

    def to_spec(self) -> TaskSpec:
        """This task as a validated TaskSpec (what the runtime and planner consume)."""
        return TaskSpec.model_validate(self.to_yaml_config())

    def check_sources(self) -> None:
        """Raise SpecError (file:line when loaded from YAML) for a missing local source.

        Called before anything is provisioned, so a typo in ``workdir`` or a mount
        source costs nothing.
        """
        origin = self._origin
        file = origin.file if origin is not None else "<task>"

        def where(path: tuple[Any, ...]) -> tuple[str, int | None]:
            return file, (origin.line_of(path) or None) if origin is not None else None

        mounts = {**(self.file_mounts or {}), **{
            dst: storage.to_yaml_config() for dst, storage in self.storage_mounts.items()}}
        issues = missing_sources(self.workdir, mounts, where)
        if issues:
            raise SpecError(issues)

    # --- misc -----------------------------------------------------------------------------

    def __rshift__(self, other: Task) -> Task:
        """``a >> b``: ``b`` runs after ``a`` in the current Dag (SkyPilot's pipeline form)."""
        dag = get_current_dag()
        if dag is None:
            raise ValueError("task >> task needs an enclosing `with sky.Dag():` block")
        dag.add_edge(self, other)
        return other

    def __repr__(self) -> str:
        if isinstance(self.run, str):
            run = self.run if len(self.run) <= 40 else self.run[:37] + "..."
            what = f"run={run!r}"
        elif self.run is not None:
            what = "run=<fn>"
        else:
            what = "<empty>"
        name = f"{self.name}: " if self.name else ""
        return f"Task({name}{what})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Task):
            return NotImplemented
        if callable(self.run) or callable(other.run):
            return self is other
        return self.to_yaml_config() == other.to_yaml_config()

    __hash__ = object.__hash__
