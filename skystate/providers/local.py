"""The local provider: clusters of real processes in per-node folders on this machine.

A cluster ``c`` is ``<root>/c/node-<rank>/`` (root: ``$SKYSTATE_HOME/local``), one
runtime agent per node (``python -m skystate.runtime agent``). Accelerators are a
*simulated inventory* for the whole machine (``LocalProvider(accelerators={"A100": 8})``):
every existing local cluster, running or stopped, holds its share, and provisioning past
the rest raises ``ResourcesUnavailableError``. CPUs and memory per node default to this
machine's; a query may ask for less (``cpus: 2`` on an 8-core box gives 2-CPU nodes for
the job scheduler) but not more.

Choices: spot is accepted and ignored (a local node is never preempted, the offer echoes
``use_spot``); regions, zones and instance types other than ``local`` give no offer.

File mounts and workdirs map remote paths into each node folder: ``~/x`` →
``node-N/home/x``, ``/data`` → ``node-N/root/data``, relative paths under home; the
workdir goes to ``~/sky_workdir`` (as on SkyPilot hosts), which is the job's cwd. Jobs
run with ``HOME`` set to the node's home.

``python -m skystate.providers.local stop|down CLUSTER_DIR`` is the self-stop program
the agents run by autostop (see ``local_nodes``). ``... preempt CLUSTER_DIR|NAME`` does
what a cloud's spot preemption does: every process of the cluster SIGKILLed and its nodes
reported gone (``observe`` omits them), so managed-job recovery can be tested for real.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skystate import runtime
from skystate.exceptions import (
    ClusterDoesNotExist,
    InvalidClusterNameError,
    NotSupportedError,
    ProviderError,
    ResourcesUnavailableError,
)
from skystate.home import local_clusters_dir
from skystate.providers.base import (
    PROVIDER_CLUSTER_NAME,
    ClusterObservation,
    JobRequest,
    NodeInfo,
    NodeState,
    Offer,
    OfferQuery,
    ProvisionRequest,
    fit_quantity,
)
from skystate.providers.local_nodes import (
    LocalNode,
    read_nodes,
    remove_cluster_dir,
    self_stop_main,
    start_agent,
    stop_nodes,
    wait_ready,
    write_node_configs,
    write_tags,
)
from skystate.providers.phases import phase
from skystate.runtime.hostctl import machine_memory_gib

WORKDIR = "~/sky_workdir"




def _provision_lock(root: Path) -> Any:
    from filelock import FileLock  # loaded to provision, not to plan

    return FileLock(str(root / ".provision.lock"))


class LocalProvider:
    """Provider of clusters made of local node folders and processes."""

    name = "local"

    def __init__(
        self,
        accelerators: Mapping[str, int] | None = None,
        cpus_per_node: float | None = None,
        memory_gib_per_node: float | None = None,
        root: Path | None = None,
    ) -> None:
        self.inventory = {str(k): int(v) for k, v in (accelerators or {}).items()}
        self.cpus_per_node = float(cpus_per_node or os.cpu_count() or 1)
        self.memory_gib_per_node = float(memory_gib_per_node or machine_memory_gib())
        self._root = Path(root) if root else None

    @property
    def root(self) -> Path:
        return (self._root or local_clusters_dir()).resolve()

    def _cluster_dir(self, name: str) -> Path:
        if not PROVIDER_CLUSTER_NAME.match(name):
            raise InvalidClusterNameError(f"invalid local cluster name {name!r}")
        return self.root / name

    # --- offers and inventory ----------------------------------------------------------

    def _canonical(self, name: str) -> str | None:
        return next((k for k in self.inventory if k.lower() == name.lower()), None)

    def offers(self, query: OfferQuery) -> list[Offer]:
        """At most one offer: this machine, if it can ever satisfy the query."""
        if query.region or query.zone:
            return []
        if query.instance_type and query.instance_type != "local":
            return []
        cpus = fit_quantity(query.cpus, self.cpus_per_node)
        memory = fit_quantity(query.memory, self.memory_gib_per_node)
        if cpus is None or memory is None:
            return []
        accelerators: dict[str, int] = {}
        for name, count in query.accelerators.items():
            canonical = self._canonical(name)
            whole = math.ceil(float(count))  # {T4: 0.5}: a node with one T4, as SkyPilot's
            if canonical is None or whole * query.num_nodes > self.inventory[canonical]:
                return []
            accelerators[canonical] = whole
        return [
            Offer("local", None, None, "local", accelerators, cpus, memory, query.use_spot, 0.0)
        ]

    def _held(self, exclude: str | None = None) -> dict[str, int]:
        """Accelerators held by every existing local cluster (running or stopped)."""
        held: dict[str, int] = {}
        if not self.root.is_dir():
            return held
        for cluster_dir in self.root.iterdir():
            if cluster_dir.name == exclude or not cluster_dir.is_dir():
                continue
            for node in read_nodes(cluster_dir):
                for name, count in (node.tags.get("offer") or {}).get("accelerators", {}).items():
                    held[name] = held.get(name, 0) + int(count)
        return held

    def _check_inventory(self, request: ProvisionRequest) -> None:
        held = self._held(exclude=request.cluster_name)
        for name, count in request.offer.accelerators.items():
            total = self.inventory.get(name, 0)
            free = total - held.get(name, 0)
            need = int(count) * request.num_nodes
            if need > free:
                raise ResourcesUnavailableError(
                    f"local: cluster {request.cluster_name!r} needs {name}:{need} "
                    f"({request.num_nodes} node(s) x {count}) but only {name}:{max(free, 0)} "
                    f"of {total} are free (other local clusters hold {held.get(name, 0)})."
                )

    # --- lifecycle --------------------------------------------------------------------

    def _owned_nodes(self, name: str, owner: str) -> list[LocalNode]:
        nodes = read_nodes(self._cluster_dir(name))
        owners = {str(n.tags.get("owner")) for n in nodes}
        if nodes and owners != {owner}:
            raise ProviderError(
                f"local cluster {name!r} belongs to owner {', '.join(sorted(owners))}, "
                f"not {owner!r}; refusing to touch it."
            )
        return nodes

    def provision(self, request: ProvisionRequest) -> ClusterObservation:
        """Create the cluster, or adopt/return the one its tags show; nodes running."""
        cluster_dir = self._cluster_dir(request.cluster_name)
        self.root.mkdir(parents=True, exist_ok=True)
        with _provision_lock(self.root):
            existing = {n.rank: n for n in self._owned_nodes(request.cluster_name, request.owner)}
            if len(existing) < request.num_nodes:
                self._check_inventory(request)
            for rank in range(request.num_nodes):
                if rank not in existing:  # tag first, start later: never an untagged node
                    write_tags(cluster_dir, rank, self._tags(request, rank))
            nodes = read_nodes(cluster_dir)
            write_node_configs(cluster_dir, nodes)
        nodes[0].paths.autostop_marker.unlink(missing_ok=True)
        name, count = request.cluster_name, len(nodes)
        with phase(f"Cluster {name}: starting the runtime on {count} local node(s)",
                   done=lambda: f"Cluster {name}: runtime up on {count} local node(s)"):
            for node in nodes:
                start_agent(node)
            wait_ready(nodes)
        return self._observe_one(request.cluster_name)

    def _tags(self, request: ProvisionRequest, rank: int) -> dict[str, Any]:
        return {
            "provider": "local",
            "cluster": request.cluster_name,
            "owner": request.owner,
            "rank": rank,
            "num_nodes": request.num_nodes,
            "created_at": time.time(),
            "offer": request.offer.to_dict(),
            "labels": dict(request.labels),
        }

    def start(self, name: str, owner: str) -> ClusterObservation:
        nodes = self._owned_nodes(name, owner)
        if not nodes:
            raise ClusterDoesNotExist(f"local cluster {name!r} does not exist")
        nodes[0].paths.autostop_marker.unlink(missing_ok=True)
        write_node_configs(self._cluster_dir(name), nodes)
        for node in nodes:
            start_agent(node)
        wait_ready(nodes)
        return self._observe_one(name)

    def stop(self, name: str, owner: str) -> ClusterObservation:
        """Cancel running jobs and end every process of the cluster; keep its folders."""
        nodes = self._owned_nodes(name, owner)
        if not nodes:
            raise ClusterDoesNotExist(f"local cluster {name!r} does not exist")
        stop_nodes(nodes)
        for node in nodes:
            node.paths.autostop_marker.unlink(missing_ok=True)  # stopped by us, not autostop
        return self._observe_one(name)

    def terminate(self, name: str, owner: str) -> None:
        """End every process and remove the folders; succeeds if nothing is left."""
        nodes = self._owned_nodes(name, owner)
        stop_nodes(nodes)
        with _provision_lock(self.root):
            remove_cluster_dir(self._cluster_dir(name))

    # --- observation ------------------------------------------------------------------

    def observe(self, names: Sequence[str] | None = None) -> list[ClusterObservation]:
        """Every local cluster with at least one tagged node (or just ``names``)."""
        if not self.root.is_dir():
            return []
        wanted = set(names) if names is not None else None
        result = []
        for cluster_dir in sorted(self.root.iterdir()):
            if not cluster_dir.is_dir() or (wanted is not None and cluster_dir.name not in wanted):
                continue
            observation = self._observe_dir(cluster_dir)
            if observation is not None:
                result.append(observation)
        return result

    def _observe_one(self, name: str) -> ClusterObservation:
        observation = self._observe_dir(self._cluster_dir(name))
        if observation is None:
            raise ClusterDoesNotExist(f"local cluster {name!r} does not exist")
        return observation

    def _observe_dir(self, cluster_dir: Path) -> ClusterObservation | None:
        nodes = read_nodes(cluster_dir)
        if not nodes:
            return None
        infos = tuple(
            NodeInfo(
                rank=n.rank,
                node_id=n.dir.name,
                ip="127.0.0.1",
                state=NodeState.RUNNING if n.agent_pid() else NodeState.STOPPED,
                extra={"dir": str(n.dir)},
            )
            for n in nodes
        )
        head = nodes[0]
        tags = {"cluster": str(head.tags["cluster"]), "owner": str(head.tags["owner"])}
        tags.update({str(k): str(v) for k, v in (head.tags.get("labels") or {}).items()})
        offer = head.tags.get("offer")
        running = any(i.state is NodeState.RUNNING for i in infos)
        return ClusterObservation(
            name=cluster_dir.name,
            owner=str(head.tags["owner"]),
            provider="local",
            nodes=infos,
            offer=Offer.from_dict(offer) if offer else None,
            tags=tags,
            stopped_by_autostop=not running and head.paths.autostop_marker.exists(),
        )

    def agent(self, observation: ClusterObservation) -> LocalAgent:
        nodes = read_nodes(self._cluster_dir(observation.name))
        if not nodes:
            raise ClusterDoesNotExist(f"local cluster {observation.name!r} does not exist")
        return LocalAgent([n.dir for n in nodes])


def _check_inside(node: Path, remote: str, source: Path, target: Path) -> None:
    """Refuse a copy that would write outside the node folder (through a symlink there).

    The spec already refuses destinations that climb out with ``..``; a symlink a job
    left in the node (``ln -s / ~/out``) is caught here, for the target and for every
    path below it that the copy would write through.
    """
    root = node.resolve()

    def check(path: Path) -> None:
        real = Path(os.path.realpath(path))
        if real != root and root not in real.parents:
            raise ProviderError(
                f"file mount {remote!r}: {path} leads outside the node folder {root} "
                f"(to {real}, through a symlink); nothing was copied"
            )

    check(target)
    if not source.is_dir() or not target.exists():
        return
    for folder, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if d != ".git"]  # not copied (see _copy)
        rel = Path(folder).relative_to(source)
        for name in (*dirs, *files):
            if os.path.lexists(target / rel / name):
                check(target / rel / name)


def _copy(source: Path, target: Path) -> None:
    """Copy a file or a folder (merged into an existing one; ``.git`` skipped)."""
    if source.is_dir():
        shutil.copytree(
            source, target, dirs_exist_ok=True, symlinks=True,
            ignore=shutil.ignore_patterns(".git"),
        )  # fmt: skip
    elif source.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    else:
        raise FileNotFoundError(f"local path {source} does not exist")


class LocalAgent:
    """ClusterAgent for a local cluster: the runtime's Python API, in-process."""

    def __init__(self, node_dirs: Sequence[Path]) -> None:
        self.node_dirs = [Path(d) for d in node_dirs]
        self.head = self.node_dirs[0]

    def sync(self, workdir: str | None, file_mounts: Mapping[str, str] | None = None) -> None:
        """Copy the workdir to ``~/sky_workdir`` and file mounts into every node folder."""
        for node in self.node_dirs:
            paths = runtime.NodePaths(node)
            items = [(WORKDIR, workdir)] if workdir else []
            for remote, local in [*items, *(file_mounts or {}).items()]:
                if "://" in local:
                    raise NotSupportedError(f"local clusters cannot mount {local!r}")
                source, target = Path(local).expanduser(), paths.resolve(remote)
                _check_inside(node, remote, source, target)
                _copy(source, target)

    def submit(self, job: JobRequest) -> int:
        self.sync(job.workdir, job.file_mounts)
        spec = job.agent_spec(WORKDIR)
        return runtime.submit(self.head, spec)

    def queue(self, job_ids: Sequence[int] | None = None,
              detailed: bool = False) -> list[dict[str, Any]]:
        return runtime.queue(self.head, job_ids, detailed=detailed)

    def cancel(self, job_ids: Sequence[int] | None = None, all_jobs: bool = False) -> list[int]:
        return runtime.cancel(self.head, job_ids, all_jobs)

    def log_path(self, job_id: int) -> str:
        return str(runtime.log_path(self.head, job_id))

    def read_log(self, job_id: int) -> str:
        return runtime.read_log(self.head, job_id)

    def set_autostop(self, idle_minutes: int, down: bool, wait_for: str) -> None:
        runtime.set_autostop(self.head, idle_minutes, down, wait_for)

    def run_setup(self, setup: str, envs: Mapping[str, str], workdir: str | None,
                  file_mounts: Mapping[str, str] | None = None) -> int:
        """Run the cluster's setup on every node now (workdir and mounts synced first)."""
        self.sync(workdir, file_mounts)
        return runtime.run_on_nodes(self.head, setup, envs, WORKDIR if workdir else None)


if __name__ == "__main__":
    sys.exit(self_stop_main(sys.argv[1:]))
