"""Node folders of the local provider: tags, node.json, agent processes, stop/down.

Kept apart from ``local.py`` because it is also the self-stop program an agent runs by
autostop (``python -m skystate.providers.local stop|down CLUSTER_DIR``): it works on
folders alone, with no controller and no state store.

A cluster is ``<root>/<cluster>/node-<rank>/``; each node folder follows the layout in
``skystate.runtime``'s docstring, plus ``tags.json`` (cluster, owner, rank, created_at,
offer, labels), written *before* anything is started so a crash never leaves an
untagged (unfindable) node.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skystate import runtime
from skystate.exceptions import ProviderError
from skystate.runtime.jobdb import close_all
from skystate.runtime.layout import NodeConfig, NodePaths, NodeRef, write_json_atomic
from skystate.runtime.procs import kill_pid
from skystate.server.procs import untagged_env

TAGS_FILE = "tags.json"
AGENT_READY_TIMEOUT = 20.0


@dataclass(frozen=True)
class LocalNode:
    """One tagged node folder."""

    rank: int
    dir: Path
    tags: Mapping[str, Any]

    @property
    def paths(self) -> NodePaths:
        return NodePaths(self.dir)

    def agent_pid(self) -> int | None:
        return runtime.agent_pid(self.dir)


def node_dir(cluster_dir: Path, rank: int) -> Path:
    return cluster_dir / f"node-{rank}"


def read_nodes(cluster_dir: Path) -> list[LocalNode]:
    """Tagged nodes of a cluster folder, by rank (untagged folders are ignored)."""
    nodes = []
    if not cluster_dir.is_dir():
        return nodes
    for entry in sorted(cluster_dir.glob("node-*")):
        try:
            tags = json.loads((entry / TAGS_FILE).read_text())
        except (OSError, ValueError):
            continue
        nodes.append(LocalNode(int(tags["rank"]), entry.resolve(), tags))
    return sorted(nodes, key=lambda n: n.rank)


def write_tags(cluster_dir: Path, rank: int, tags: Mapping[str, Any]) -> Path:
    folder = node_dir(cluster_dir, rank)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / TAGS_FILE, dict(tags))
    return folder.resolve()


def self_stop_commands(cluster_dir: Path) -> dict[str, list[str]]:
    base = [sys.executable, "-m", "skystate.providers.local"]
    return {
        "stop": [*base, "stop", str(cluster_dir.resolve())],
        "down": [*base, "down", str(cluster_dir.resolve())],
    }


def write_node_configs(cluster_dir: Path, nodes: list[LocalNode]) -> None:
    """(Re)write every node's node.json from its tags and the current node list."""
    refs = tuple(NodeRef(rank=n.rank, ip="127.0.0.1", dir=str(n.dir)) for n in nodes)
    for node in nodes:
        offer = node.tags.get("offer") or {}
        config = NodeConfig(
            cluster=str(node.tags["cluster"]),
            owner=str(node.tags["owner"]),
            rank=node.rank,
            num_nodes=len(nodes),
            nodes=refs,
            accelerators=dict(offer.get("accelerators") or {}),
            cpus=float(offer.get("cpus") or 1.0),
            memory_gib=offer.get("memory_gib"),
            self_stop=self_stop_commands(cluster_dir),
        )
        node.paths.make_dirs()
        write_json_atomic(node.paths.node_file, config.to_dict())


def start_agent(node: LocalNode) -> None:
    """Start the node's agent detached (own session; survives our exit), if not alive.

    A throw-away bash backgrounds it, so the agent is never our child (no zombie, no
    ResourceWarning) and outlives whatever process provisioned it.
    """
    if node.agent_pid() is not None:
        return
    node.paths.make_dirs()
    node.paths.pid_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "skystate.runtime", "agent", "--node-dir", str(node.dir)]
    subprocess.run(
        [
            "bash",
            "-c",
            'log=$1; shift; "$@" >>"$log" 2>&1 </dev/null &',
            "_",
            str(node.paths.agent_log),
            *argv,
        ],  # fmt: skip
        check=True,
        start_new_session=True,
        cwd=str(node.dir),
        env=untagged_env(),
        stdin=subprocess.DEVNULL,
    )


def wait_ready(nodes: list[LocalNode], timeout: float = AGENT_READY_TIMEOUT) -> None:
    """Wait until every node's agent has written its pid file; raise with its log if not."""
    deadline = time.monotonic() + timeout
    for node in nodes:
        while node.agent_pid() is None:
            if time.monotonic() > deadline:
                tail = _tail(node.paths.agent_log)
                raise ProviderError(
                    f"agent of {node.dir} did not start within {timeout:.0f}s:\n{tail}",
                    transient=True,
                )
            time.sleep(0.02)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no agent log)"


def stop_nodes(nodes: list[LocalNode]) -> None:
    """Cancel the cluster's active jobs, then end every node's agent."""
    head = next((n for n in nodes if n.rank == 0), None)
    if head is not None and head.paths.db.exists():
        runtime.cancel(head.dir, all_jobs=True)
    for node in nodes:
        pid = node.agent_pid()
        if pid is not None:
            kill_pid(pid)


def remove_cluster_dir(cluster_dir: Path) -> None:
    close_all()
    shutil.rmtree(cluster_dir, ignore_errors=True)


PREEMPTED_TAGS_FILE = "tags.preempted.json"


def _processes_under(folder: Path) -> list[int]:
    """Processes whose cwd is inside ``folder`` (a node's agent, wrappers and jobs)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == str(folder) or cwd.startswith(f"{folder}/"):
            pids.append(int(entry.name))
    return pids


def preempt_nodes(cluster_dir: Path) -> int:
    """Do to a cluster what a cloud's preemption does: every process killed at once
    (SIGKILL, no cancel, no exit records), and the nodes reported gone (their tags are
    moved aside, so ``observe`` no longer lists them; ``terminate`` still cleans up the
    folder). Returns how many nodes were preempted."""
    cluster_dir = cluster_dir.resolve()
    nodes = read_nodes(cluster_dir)
    head = next((n for n in nodes if n.rank == 0), None)
    groups: list[int] = []
    if head is not None and head.paths.db.exists():
        groups = [int(j["pid"]) for j in runtime.queue(head.dir, detailed=True)
                  if j.get("pid") and j["status"] in ("SETTING_UP", "RUNNING")]
    for node in nodes:  # tags first: from here on the node is gone, even if we die now
        (node.dir / TAGS_FILE).replace(node.dir / PREEMPTED_TAGS_FILE)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for node in nodes:
        for pid in _processes_under(node.dir):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    close_all()
    return len(nodes)


def _cluster_dir_arg(text: str) -> Path:
    """A cluster folder, or a cluster name under this home's local clusters."""
    path = Path(text)
    if path.is_dir() or "/" in text:
        return path
    from skystate.home import local_clusters_dir

    return local_clusters_dir() / text


def self_stop_main(argv: list[str]) -> int:
    """``python -m skystate.providers.local stop|down CLUSTER_DIR`` (run by autostop), and
    ``preempt CLUSTER_DIR|NAME`` (tests: a preemption as a cloud would do it)."""
    if len(argv) != 2 or argv[0] not in ("stop", "down", "preempt"):
        print("usage: python -m skystate.providers.local stop|down|preempt CLUSTER_DIR",
              file=sys.stderr)
        return 2
    if argv[0] == "preempt":
        count = preempt_nodes(_cluster_dir_arg(argv[1]))
        print(f"preempted: {argv[1]} ({count} nodes)", flush=True)
        return 0 if count else 1
    action, cluster_dir = argv[0], Path(argv[1])
    nodes = read_nodes(cluster_dir)
    stop_nodes(nodes)
    if action == "down":
        remove_cluster_dir(cluster_dir)
    print(f"{action}: {cluster_dir} ({len(nodes)} nodes)", flush=True)
    return 0
