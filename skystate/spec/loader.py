"""Load a state directory into a validated DesiredState.

Every problem of the whole directory is collected and raised at once as one
``SpecError``; each issue names the file (relative to the cwd when possible), the
line of the offending key, the dotted field path and one sentence.

Choices (documented for users):

- Files: ``*.yaml``/``*.yml`` found recursively, sorted; hidden files and folders
  (``.git``, ``.venv``...) are skipped, and so are files named by a ``from:`` (they are
  SkyPilot task YAMLs, not state documents).
- A document of the root ``skystate.yaml`` without ``kind`` is the Project.
- Defaults: ``Project.defaults.resources`` is merged under every resources block
  (the block wins field by field, a location in the block replaces the default's);
  ``defaults.autostop`` applies to clusters without their own ``autostop``.
- ``from:`` (Job, ManagedJob, Service): the task YAML is loaded and validated, then
  inline fields win per top-level field; ``envs``/``secrets``/``file_mounts`` merge
  key by key and ``resources`` field by field.
- Relative ``workdir`` and local ``file_mounts`` sources become absolute, relative
  to the file that wrote them (``~`` and URIs such as ``s3://`` are kept as written).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from skystate.exceptions import SpecError, SpecIssue
from skystate.spec.desired import DesiredState, Source, address
from skystate.spec.documents import (
    CLUSTER_NAME,
    DOCUMENT_KINDS,
    Cluster,
    Job,
    ManagedJob,
    Project,
    Service,
    TaskSpec,
)
from skystate.spec.issues import translate, validate
from skystate.spec.mounts import missing_sources
from skystate.spec.resources import merge_resources
from skystate.spec.suggest import did_you_mean
from skystate.spec.task_rules import null_env_message
from skystate.spec.yaml_lines import YamlDoc, load_yaml_file

__all__ = [
    "PROJECT_FILE",
    "display_path",
    "find_state_files",
    "load_state_dir",
    "load_state_files",
    "load_task_yaml",
    "overlay_task",
    "owner_from_dir",
    "project_of",
]

PROJECT_FILE = "skystate.yaml"
YAML_SUFFIXES = (".yaml", ".yml")
TASK_KINDS = ("Job", "ManagedJob", "Service")
TASK_MODELS = (Job, ManagedJob, Service)
_KEYWISE = ("envs", "secrets", "file_mounts")
_LOCATION = ("infra", "cloud", "region", "zone")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def display_path(path: Path) -> str:
    """``path`` relative to the cwd when it is below it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def owner_from_dir(path: str | Path) -> str:
    """A directory name made into a valid owner label (cluster-name pattern)."""
    name = re.sub(r"[^a-z0-9-]+", "-", Path(path).resolve().name.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = f"p-{name}".rstrip("-")
    name = name[:63].rstrip("-")
    return name if CLUSTER_NAME.match(name) else "default"


def find_state_files(root: str | Path) -> list[Path]:
    """Every ``*.yaml``/``*.yml`` under ``root`` (sorted; hidden entries skipped)."""
    base = Path(root)
    found: list[Path] = []
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(
            Path(folder, f)
            for f in files
            if f.endswith(YAML_SUFFIXES) and not f.startswith(".")
        )
    return sorted(found, key=lambda p: p.relative_to(base).parts)


# --- path helpers ------------------------------------------------------------------------


def _absolute(source: str, base: Path) -> str:
    if not source or _URI.match(source) or source.startswith("~") or os.path.isabs(source):
        return source
    return os.path.normpath(os.path.join(base, source))


def _absolutize(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative ``workdir`` and local ``file_mounts`` sources, made absolute."""
    out = dict(data)
    workdir = out.get("workdir")
    if isinstance(workdir, str):
        out["workdir"] = _absolute(workdir, base)
    mounts = out.get("file_mounts")
    if isinstance(mounts, dict):
        fixed: dict[Any, Any] = {}
        for dst, src in mounts.items():
            if isinstance(src, str):
                src = _absolute(src, base)
            elif isinstance(src, dict) and isinstance(src.get("source"), str):
                src = {**src, "source": _absolute(src["source"], base)}
            elif isinstance(src, dict) and isinstance(src.get("source"), list):
                src = {**src, "source": [_absolute(s, base) if isinstance(s, str) else s
                                         for s in src["source"]]}
            fixed[dst] = src
        out["file_mounts"] = fixed
    return out


# --- from: ---------------------------------------------------------------------------------


def _merge_resources_data(base: Any, own: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(own, dict):
        return own
    data = dict(base)
    if any(k in own for k in _LOCATION):
        for key in _LOCATION:
            data.pop(key, None)
    if "any_of" in own or "ordered" in own:
        data.pop("any_of", None)
        data.pop("ordered", None)
    data.update(own)
    return data


def overlay_task(base: dict[str, Any], inline: dict[str, Any]) -> dict[str, Any]:
    """Inline document fields over a task YAML (see the module docstring)."""
    merged = {k: v for k, v in base.items() if k != "name"}
    for key, value in inline.items():
        if key in _KEYWISE and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        elif key == "resources" and key in merged:
            merged[key] = _merge_resources_data(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass
class _Task:
    data: dict[str, Any] | None  # absolutised task data, None when invalid
    doc: YamlDoc | None = None  # where its fields are written


def load_task_yaml(path: Path, issues: list[SpecIssue]) -> dict[str, Any] | None:
    """A SkyPilot task YAML as data (validated as TaskSpec), or None with issues added."""
    return _load_task(path, issues).data


def _load_task(path: Path, issues: list[SpecIssue]) -> _Task:
    shown = display_path(path)
    try:
        docs = load_yaml_file(path, shown)
    except SpecError as err:
        issues.extend(err.issues)
        return _Task(None)
    if not docs:
        return _Task({})
    if len(docs) > 1:
        issues.append(SpecIssue(
            shown, docs[1].start_line, "",
            "from: must name a single-task YAML, this file has several documents",
        ))
        return _Task(None)
    doc = docs[0]
    if not isinstance(doc.data, dict):
        issues.append(SpecIssue(shown, doc.start_line, "", "a task YAML must be a mapping"))
        return _Task(None)
    if "kind" in doc.data:
        issues.append(SpecIssue(shown, doc.line_of(("kind",)), "kind", (
            "from: must name a SkyPilot task YAML; this is a state document "
            f"(kind: {doc.data['kind']!r})"
        )))
        return _Task(None)
    checked = dict(doc.data)
    if isinstance(checked.get("envs"), dict):  # a document using it may set an env left null
        checked["envs"] = {k: v for k, v in checked["envs"].items() if v is not None}
    if validate(TaskSpec, checked, doc, issues) is None:
        return _Task(None)
    return _Task(_absolutize(doc.data, path.parent), doc)


def _unset_envs(data: dict[str, Any], task: _Task, issues: list[SpecIssue]) -> bool:
    """Issues (at the task file's lines) for envs that neither file gives a value."""
    envs = data.get("envs")
    unset = [k for k, v in envs.items() if v is None] if isinstance(envs, dict) else []
    for name in unset:
        doc = task.doc
        issues.append(SpecIssue(doc.file if doc else "?", doc.line_of(("envs", name)) if doc
                                else None, f"envs.{name}", null_env_message(str(name))))
    return bool(unset)


# --- the loader ------------------------------------------------------------------------------


@dataclass
class _Doc:
    doc: YamlDoc
    path: Path  # absolute path of its file
    kind: str
    data: dict[str, Any]


class _Loader:
    def __init__(self) -> None:
        self.issues: list[SpecIssue] = []
        self.tasks: dict[Path, _Task] = {}
        self.state_files: set[Path] = set()  # files with a ``kind:`` document
        self.from_edges: dict[Path, list[Path]] = {}  # state file -> its from: files

    # parse and sort documents by kind -------------------------------------------------

    def parse(self, files: Iterable[Path], root: Path | None) -> list[_Doc]:
        parsed: list[tuple[Path, list[YamlDoc]]] = []
        for path in files:
            try:
                parsed.append((path, load_yaml_file(path, display_path(path))))
            except SpecError as err:
                self.issues.extend(err.issues)
        targets = self._from_targets(parsed)
        out: list[_Doc] = []
        for path, docs in parsed:
            if path in targets:
                continue
            is_project_file = root is not None and path == root / PROJECT_FILE
            for doc in docs:
                item = self._classify(doc, path, is_project_file)
                if item is not None:
                    out.append(item)
        return out

    def _from_targets(self, parsed: list[tuple[Path, list[YamlDoc]]]) -> set[Path]:
        """Files named by a ``from:`` (task YAMLs, not state files); records the edges.

        A file holding a document with ``kind`` is a state file even when a ``from:``
        names it: that ``from:`` is then an error (see ``_from_state_file``).
        """
        targets: set[Path] = set()
        for path, docs in parsed:
            for doc in docs:
                data = doc.data
                if not isinstance(data, dict) or "kind" not in data:
                    continue
                self.state_files.add(path)
                if data.get("kind") in TASK_KINDS:
                    ref = data.get("from")
                    if isinstance(ref, str) and ref:
                        target = Path(os.path.normpath(path.parent / ref))
                        targets.add(target)
                        self.from_edges.setdefault(path, []).append(target)
        return targets - self.state_files

    def _classify(self, doc: YamlDoc, path: Path, is_project_file: bool) -> _Doc | None:
        data = doc.data
        if not isinstance(data, dict):
            self.issues.append(SpecIssue(
                doc.file, doc.start_line, "",
                f"a document must be a mapping, got {type(data).__name__}",
            ))
            return None
        kind = data.get("kind")
        if kind is None and is_project_file:
            kind = "Project"
            data = {"kind": "Project", **data}
        if kind is None:
            hint = ""
            if any(k in data for k in ("run", "setup", "resources")):
                hint = " (a SkyPilot task YAML? use it from a Job with 'from:')"
            kinds = ", ".join(DOCUMENT_KINDS)
            self.issues.append(SpecIssue(
                doc.file, doc.start_line, "kind", f"missing 'kind' (one of {kinds}){hint}"
            ))
            return None
        if kind not in DOCUMENT_KINDS:
            self.issues.append(SpecIssue(
                doc.file, doc.line_of(("kind",)), "kind",
                f"unknown kind {kind!r}{did_you_mean(str(kind), DOCUMENT_KINDS)}",
            ))
            return None
        return _Doc(doc, path, kind, data)

    # validate -------------------------------------------------------------------------

    def project(self, docs: list[_Doc], root: Path | None) -> tuple[Project, _Doc | None]:
        projects = [d for d in docs if d.kind == "Project"]
        for extra in projects[1:]:
            first = projects[0].doc
            self.issues.append(SpecIssue(
                extra.doc.file, extra.doc.start_line, "kind",
                f"a second Project (the first is at {first.file}:{first.start_line}); "
                "a state directory has at most one",
            ))
        if projects:
            found = validate(Project, projects[0].data, projects[0].doc, self.issues)
            if found is not None:
                return found, projects[0]
        name = owner_from_dir(root) if root is not None else "default"
        return Project(name=name), None

    def document(self, item: _Doc, project: Project) -> Any:
        doc, data = item.doc, _absolutize(item.data, item.path.parent)
        if item.kind in TASK_KINDS and "from" in data:
            ref = data["from"]
            if not isinstance(ref, str) or not ref:
                self.issues.append(SpecIssue(doc.file, doc.line_of(("from",)), "from",
                                             "from must be the path of a SkyPilot task YAML"))
                return None
            target = Path(os.path.normpath(item.path.parent / ref))
            if target in self.state_files:
                self.issues.append(SpecIssue(doc.file, doc.line_of(("from",)), "from",
                                             self._from_state_file(item.path, target, ref)))
                return None
            if not target.is_file():
                self.issues.append(SpecIssue(doc.file, doc.line_of(("from",)), "from",
                                             f"task file {ref!r} not found"))
                return None
            if target not in self.tasks:
                self.tasks[target] = _load_task(target, self.issues)
            base = self.tasks[target].data
            if base is None:
                return None
            data = overlay_task(base, data)
            if _unset_envs(data, self.tasks[target], self.issues):
                return None
        model = DOCUMENT_KINDS[item.kind]
        result = validate(model, data, doc, self.issues)
        if result is None:
            return None
        if isinstance(result, (Cluster, *TASK_MODELS)) and (
                result.workdir is not None or result.file_mounts):  # else nothing to check
            self._check_sources(result, item)
        return self._apply_defaults(result, project, doc)

    def _check_sources(self, result: Any, item: _Doc) -> None:
        """A local workdir / mount source that does not exist fails validation."""
        doc = item.doc

        def where(path: tuple[Any, ...]) -> tuple[str, int | None]:
            if path[0] in item.data or "from" not in item.data:
                return doc.file, doc.line_of(path)
            return doc.file, doc.line_of(("from",))  # the value came from the task YAML

        self.issues.extend(missing_sources(result.workdir, result.file_mounts, where))

    def _from_state_file(self, path: Path, target: Path, ref: str) -> str:
        """The message for a ``from:`` naming a state file: itself, a cycle, or another."""
        if target == path:
            return f"{ref!r} is this file itself; from: must name a SkyPilot task YAML"
        chain, todo = {target: [path, target]}, [target]
        while todo:
            here = todo.pop()
            for nxt in self.from_edges.get(here, []):
                if nxt == path:
                    names = " -> ".join(display_path(p) for p in [*chain[here], path])
                    return (f"a cycle of from: ({names}); from: must name a SkyPilot task "
                            "YAML, not a state file")
                if nxt not in chain:
                    chain[nxt] = [*chain[here], nxt]
                    todo.append(nxt)
        return f"{ref!r} is a state file (it has 'kind:' documents), not a SkyPilot task YAML"

    def _apply_defaults(self, result: Any, project: Project, doc: YamlDoc) -> Any:
        defaults = project.defaults
        changes: dict[str, Any] = {}
        if defaults.resources is not None and isinstance(result, (Cluster, Job, ManagedJob,
                                                                   Service)):
            try:
                changes["resources"] = merge_resources(defaults.resources, result.resources)
            except ValidationError as err:
                self.issues.extend(translate(err, type(result.resources or defaults.resources),
                                             doc, ("resources",)))
                return None
        if isinstance(result, Cluster) and result.autostop is None and defaults.autostop:
            changes["autostop"] = defaults.autostop
        return result.model_copy(update=changes) if changes else result

    # cross-document checks ---------------------------------------------------------------

    def check_references(
        self, state: DesiredState, docs: dict[str, YamlDoc], declared: set[str]
    ) -> None:
        """Jobs name a cluster of the directory and fit in it.

        ``declared`` holds every cluster name written, valid or not: a job on an
        invalid cluster gets no second, misleading "not defined" issue.
        """
        clusters = state.clusters
        for (cluster, name), job in state.jobs.items():
            doc = docs[address("Job", name, cluster)]
            target = clusters.get(cluster)
            if target is None and cluster in declared:
                continue
            if target is None:
                hint = did_you_mean(cluster, sorted(declared | set(clusters)))
                self.issues.append(SpecIssue(
                    doc.file, doc.line_of(("cluster",)), "cluster",
                    f"cluster {cluster!r} is not defined in this directory{hint}",
                ))
            elif job.num_nodes is not None and job.num_nodes > target.num_nodes:
                self.issues.append(SpecIssue(
                    doc.file, doc.line_of(("num_nodes",)), "num_nodes",
                    f"num_nodes {job.num_nodes} exceeds the {target.num_nodes} node(s) "
                    f"of cluster {cluster!r}",
                ))


def _raw_address(item: _Doc) -> str | None:
    name = item.data.get("name")
    if not isinstance(name, str):
        return None
    cluster = item.data.get("cluster") if item.kind == "Job" else None
    return address(item.kind, name, cluster if isinstance(cluster, str) else None)


def _duplicates(docs: list[_Doc], issues: list[SpecIssue]) -> set[int]:
    """Ids of documents that repeat an earlier (kind, name), each reported once.

    Checked on the raw documents, so a duplicate is found even when one copy is
    otherwise invalid. A job's identity is (cluster, name).
    """
    first: dict[str, YamlDoc] = {}
    repeated: set[int] = set()
    for item in docs:
        addr = _raw_address(item)
        if addr is None or item.kind == "Project":
            continue
        if addr not in first:
            first[addr] = item.doc
            continue
        prior, doc = first[addr], item.doc
        name = item.data["name"]
        what = (
            f"job {name!r} on cluster {item.data['cluster']!r}"
            if item.kind == "Job"
            else f"{item.kind} {name!r}"
        )
        issues.append(SpecIssue(
            doc.file, doc.line_of(("name",)), "name",
            f"duplicate {what}: also defined at {prior.file}:{prior.line_of(('name',))}",
        ))
        repeated.add(id(item))
    return repeated


def _register(state: DesiredState, docs: dict[str, YamlDoc], result: Any, doc: YamlDoc) -> None:
    cluster = result.cluster if isinstance(result, Job) else None
    addr = address(result.kind, result.name, cluster)
    docs[addr] = doc
    state.sources[addr] = Source(doc.file, doc.start_line)
    if isinstance(result, Cluster):
        state.clusters[result.name] = result
    elif isinstance(result, Job):
        state.jobs[(result.cluster, result.name)] = result
    elif isinstance(result, ManagedJob):
        state.managed_jobs[result.name] = result
    elif isinstance(result, Service):
        state.services[result.name] = result


def load_state_files(files: Iterable[str | Path], root: str | Path | None = None) -> DesiredState:
    """Load the given state files (e.g. after a watch event). Raises SpecError.

    ``root`` is the state directory: it names the default owner and locates
    ``skystate.yaml``.
    """
    root_path = Path(root).absolute() if root is not None else None
    paths = [Path(os.path.normpath(Path(f).absolute())) for f in files]
    loader = _Loader()
    docs = loader.parse(paths, root_path)
    project, project_doc = loader.project(docs, root_path)
    state = DesiredState(project=project, owner=project.name, root=root_path)
    where: dict[str, YamlDoc] = {}
    if project_doc is not None:
        state.sources[address("Project", project.name)] = Source(
            project_doc.doc.file, project_doc.doc.start_line
        )
    repeated = _duplicates(docs, loader.issues)
    for item in docs:
        if item.kind == "Project":
            continue
        result = loader.document(item, project)
        if result is not None and id(item) not in repeated:
            _register(state, where, result, item.doc)
    declared = {d.data.get("name") for d in docs if d.kind == "Cluster"}
    loader.check_references(state, where, {n for n in declared if isinstance(n, str)})
    if loader.issues:
        raise SpecError(_ordered(loader.issues))
    return state


def _ordered(issues: list[SpecIssue]) -> list[SpecIssue]:
    unique = list(dict.fromkeys(issues))
    return sorted(unique, key=lambda i: (i.file, i.line or 0))


def project_of(directory: str | Path) -> Project | None:
    """The Project of ``directory`` if it is a state directory (it has ``skystate.yaml``),
    else None: what commands run inside one (``check``, ``show-gpus``) configure providers
    from. Problems in other documents are left to ``validate``; a bad Project raises."""
    root = Path(directory).absolute()
    if not (root / PROJECT_FILE).is_file():
        return None
    loader = _Loader()
    docs = loader.parse(find_state_files(root), root)
    loader.issues.clear()
    project, _ = loader.project(docs, root)
    if loader.issues:
        raise SpecError(_ordered(loader.issues))
    return project


def load_state_dir(path: str | Path) -> DesiredState:
    """Load, validate and resolve a state directory (or a single state file).

    Raises ``SpecError`` listing every problem found, each with file, line and field.
    """
    root = Path(path)
    if not root.exists():
        raise SpecError([SpecIssue(str(path), None, "", "state directory not found")])
    if root.is_file():
        return load_state_files([root], root.absolute().parent)
    files = find_state_files(root)
    if not files:
        raise SpecError([SpecIssue(
            str(path), None, "", "no *.yaml or *.yml files in the state directory"
        )])
    return load_state_files(files, root)
