"""The skystate runtime on nodes reachable by SSH: the seam shared by ssh, aws and gcp.

A provider that owns machines (an SSH pool's hosts, a cloud's instances) decides *which*
machines form a cluster; this module makes them a skystate cluster:

* ``bring_up`` copies the runtime package (``skystate/runtime`` plus the few stdlib-only
  modules it imports) into each node folder, writes ``node.json`` (node refs, the ``ssh``
  runner, the key and ``known_hosts`` the head uses to reach its workers, self-stop
  commands) and starts every node's agent detached (``hostctl start``).
* ``SSHAgent`` is the ``ClusterAgent``: the runtime's CLI on the head, over one cached
  fabric connection; workdir and file mounts go as one tar per node.
* ``CloudNodes`` adds what cloud instances need on top: wait until a fresh instance
  accepts SSH, claim a node folder on it, a self-stop that also powers the machines off
  (the instance's shutdown behaviour turns that into a stop or a terminate), and an
  agent rebuilt from recorded node info.

Cloud host keys are not checked (``insecure_host_keys``): every launch has fresh keys
and public IPs are recycled between customers, so trust-on-first-use would refuse a
legitimate node as often as it caught an impostor; SkyPilot does the same.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skystate import exceptions as _exceptions
from skystate.enums import JobStatus
from skystate.exceptions import CommandError, NotSupportedError, ProviderError
from skystate.providers.base import JobRequest, NodeInfo
from skystate.providers.phases import phase
from skystate.providers.ssh_conn import Connections, Host, Pool, parallel, read_json_reply

WORKDIR = "~/sky_workdir"
PYTHON = "python3"
# the runtime imports only these of skystate (whichever exist in this version)
_PACKAGE_FILES = ("__init__.py", "enums.py", "status.py", "exceptions.py")
# Forwarded from the controller's environment to the agents it starts (tests use it).
FORWARDED_ENV = ("SKYSTATE_TIME_SCALE",)
_PACKAGE: list[bytes] = []


def agent_env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


def runtime_package() -> bytes:
    """A tar of the stdlib-only part of skystate the agent runs from (built once)."""
    if not _PACKAGE:
        root = Path(__file__).resolve().parent.parent
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name in _PACKAGE_FILES:
                if (root / name).exists():
                    tar.add(root / name, arcname=f"skystate/{name}")
            for path in sorted((root / "runtime").glob("*.py")):
                tar.add(path, arcname=f"skystate/runtime/{path.name}")
        _PACKAGE.append(buffer.getvalue())
    return _PACKAGE[0]


def hostctl_argv(node_dir: str, *args: str) -> list[str]:
    """Run the node's own copy of ``hostctl`` (the package in its folder)."""
    return ["env", f"PYTHONPATH={node_dir}/pkg", PYTHON, "-m", "skystate.runtime.hostctl", *args]


def selfstop_commands(slot: NodeSlot, refs: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Autostop on a host we cannot power off: stop (or down) the runtime on every node."""
    return {a: hostctl_argv(slot.dir, "selfstop", a, slot.dir) for a in ("stop", "down")}


@dataclass(frozen=True)
class NodeSlot:
    """One node of a cluster: how the controller reaches it and its folder there."""

    rank: int
    host: Host
    dir: str
    internal_ip: str | None = None  # what the other nodes use (default: host.address)


def bring_up(
    conns: Connections,
    pool: Pool,
    slots: Sequence[NodeSlot],
    *,
    cluster: str,
    owner: str,
    offer: Mapping[str, Any],
    self_stop: Callable[[NodeSlot, Sequence[Mapping[str, Any]]], dict[str, list[str]]],
) -> None:
    """Copy the runtime, write node.json (+ key, known_hosts) and start every agent."""
    slots = sorted(slots, key=lambda s: s.rank)
    head_dir = slots[0].dir
    refs = [
        {"rank": s.rank, "ip": s.internal_ip or s.host.address, "dir": s.dir,
         "ssh_user": s.host.user, "ssh_port": s.host.port}
        for s in slots
    ]  # fmt: skip
    files: dict[str, str] = {}
    options: dict[str, Any] = {
        "isolate_home": pool.isolate_home,
        "insecure_host_keys": pool.insecure_host_keys,
        "known_hosts": f"{head_dir}/ssh/known_hosts",
    }
    if len(slots) > 1:
        if pool.identity_file:
            files["ssh/id"] = Path(pool.identity_file).read_text()
            options["identity_file"] = f"{head_dir}/ssh/id"
        if not pool.insecure_host_keys:
            files["ssh/known_hosts"] = "".join(
                conns.server_key_line(pool, s.host) + "\n" for s in slots
            )
    package = runtime_package()

    def up(slot: NodeSlot) -> None:
        pkg = f"{slot.dir}/.pkg.tar"
        conns.put(pool, slot.host, package, pkg)
        config = {
            "cluster": cluster, "owner": owner, "rank": slot.rank,
            "num_nodes": len(slots), "nodes": refs,
            "accelerators": dict(offer.get("accelerators") or {}),
            "cpus": float(offer.get("cpus") or 1.0), "memory_gib": offer.get("memory_gib"),
            "self_stop": self_stop(slot, refs),
            "runner": "ssh", "count_ssh_sessions": True, "runner_options": options,
        }  # fmt: skip
        conns.hostctl(pool, slot.host, "start", {"host": slot.host.address, "env": agent_env(),
            "dir": slot.dir, "package": pkg, "node": config,
            "files": files if slot.rank == 0 else {}}, PYTHON)  # fmt: skip

    parallel(up, slots)


# --- the ClusterAgent -------------------------------------------------------------------


class RemoteNode:
    """A node as the agent reaches it: host, node folder and the user's home there."""

    def __init__(self, host: Host, node_dir: str, home: str) -> None:
        self.host, self.dir, self.home = host, node_dir, home

    def resolve(self, path: str, isolate_home: bool) -> str:
        """A path as jobs see it → the absolute path on this host (cf. ``NodePaths``)."""
        home = f"{self.dir}/home" if isolate_home else self.home
        if path == "~" or path.startswith("~/"):
            return f"{home}/{path[2:]}".rstrip("/")
        if path.startswith("/"):
            return f"{self.dir}/root{path}" if isolate_home else path
        return f"{home}/{path}"


def _sync_tar(node: RemoteNode, isolate_home: bool, items: list[tuple[str, str]]) -> bytes:
    """A tar whose member names are the absolute targets on the node (minus the ``/``)."""
    buffer = io.BytesIO()

    def owned_by_nobody(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if "/.git/" in f"/{info.name}/":
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for remote, local in items:
            if "://" in local:
                raise NotSupportedError(f"SSH-reached clusters cannot mount {local!r} "
                                        "(cloud storage)")  # fmt: skip
            source = Path(local).expanduser()
            if not source.exists():
                raise FileNotFoundError(f"local path {source} does not exist")
            target = node.resolve(remote, isolate_home).lstrip("/")
            tar.add(source, arcname=target, filter=owned_by_nobody)
    return buffer.getvalue()


INLINE_STDIN_BYTES = 32 * 1024  # a runtime call's JSON input sent inside the command


class SSHAgent:
    """ClusterAgent of a cluster reached by SSH: the runtime's CLI on the head, over fabric.

    Every call is one ``run`` on the head's cached connection (~0.1–0.2 s); a submit with
    a workdir or file mounts first puts one tar per node over SFTP and unpacks it in the
    same ``run`` as the submit (workers in parallel).
    """

    def __init__(
        self,
        conns: Connections,
        pool: Pool,
        nodes: list[RemoteNode],
        on_autostop: Callable[[bool], None] | None = None,
    ) -> None:
        self.conns, self.pool, self.nodes = conns, pool, nodes
        self.head = nodes[0]
        # called with ``down`` before autostop is enabled (clouds set the shutdown behaviour)
        self.on_autostop = on_autostop

    def _runtime_command(self, command: str, *args: str, stdin: Any = None) -> str:
        d = shlex.quote(self.head.dir)
        text = (
            f"cd {d} && PYTHONPATH={d}/pkg {PYTHON} -m skystate.runtime {command} "
            f"--node-dir {d} {' '.join(shlex.quote(a) for a in args)}"
        )
        if stdin is None:
            return text
        data = json.dumps(stdin)
        if len(data) <= INLINE_STDIN_BYTES:
            marker = "SKYSTATE_JSON_EOF"
            return text + f" <<'{marker}'\n{data}\n{marker}"
        # sshd runs the command as one argument of ``$SHELL -c`` (at most 128 KiB on
        # Linux): a large job spec (setup/run near their limits) goes by SFTP instead.
        path = f"{self.head.dir}/runtime/stdin-{time.time_ns()}.json"
        self.conns.put(self.pool, self.head.host, data.encode(), path)
        q = shlex.quote(path)
        return text + f" <{q}; s=$?; rm -f {q}; exit $s"

    def _call(self, command: str, *args: str, stdin: Any = None, prefix: str = "") -> Any:
        result = self.conns.run(
            self.pool, self.head.host, prefix + self._runtime_command(command, *args, stdin=stdin)
        )
        data = read_json_reply(self.head.host.label, f"runtime {command}", result)
        if isinstance(data, dict) and set(data) == {"error", "type"}:
            cls = getattr(_exceptions, str(data["type"]), None)
            if isinstance(cls, type) and issubclass(cls, Exception):
                try:
                    raise cls(data["error"])
                except TypeError:
                    pass
            if data["type"] in ("ValueError", "KeyError"):
                raise ValueError(data["error"])
            raise ProviderError(f"ssh {self.head.host.label}: {data['type']}: {data['error']}")
        return data

    def sync(self, workdir: str | None, file_mounts: Mapping[str, str] | None = None) -> str:
        """Send the workdir (to ``~/sky_workdir``) and file mounts to every node.

        Workers are done here; for the head, returns the shell prefix that unpacks its
        tar, so the caller folds it into its own ``run``.
        """
        items = ([(WORKDIR, workdir)] if workdir else []) + list((file_mounts or {}).items())
        if not items:
            return ""
        stamp = f"{time.time_ns()}"

        def put(node: RemoteNode) -> str:
            data = _sync_tar(node, self.pool.isolate_home, items)
            path = f"{node.dir}/runtime/sync-{stamp}.tar"
            self.conns.put(self.pool, node.host, data, path)
            return f"tar --no-same-owner -xf {shlex.quote(path)} -C / && rm -f {shlex.quote(path)}"

        commands = parallel(put, self.nodes)

        def unpack(pair: tuple[RemoteNode, str]) -> None:
            result = self.conns.run(self.pool, pair[0].host, pair[1])
            if result.return_code != 0:
                raise CommandError(int(result.return_code), f"ssh {pair[0].host.label}: "
                                   "unpack the workdir/file mounts", str(result.stderr))

        parallel(unpack, list(zip(self.nodes[1:], commands[1:], strict=True)))
        return f"{commands[0]} && "

    def submit(self, job: JobRequest) -> int:
        prefix = self.sync(job.workdir, job.file_mounts)
        spec = job.agent_spec(WORKDIR)
        return int(self._call("submit", stdin=spec, prefix=prefix)["job_id"])

    def queue(self, job_ids: Sequence[int] | None = None,
              detailed: bool = False) -> list[dict[str, Any]]:
        jobs = self._call("queue", *[str(int(i)) for i in job_ids or []],
                          *(["--detailed"] if detailed else []))
        for job in jobs:
            job["status"] = JobStatus(job["status"])
        return jobs

    def cancel(self, job_ids: Sequence[int] | None = None, all_jobs: bool = False) -> list[int]:
        if job_ids is None and not all_jobs:
            return []
        args = ["--all"] if all_jobs else [str(int(i)) for i in job_ids or []]
        if not args:
            return []
        return [int(i) for i in self._call("cancel", *args)["cancelled"]]

    def log_path(self, job_id: int) -> str:
        return f"{self.head.dir}/logs/jobs/{int(job_id)}.log"

    def read_log(self, job_id: int) -> str:
        return str(self._call("log", str(int(job_id)))["log"])

    def set_autostop(self, idle_minutes: int, down: bool, wait_for: str) -> None:
        if self.on_autostop is not None and idle_minutes >= 0:
            self.on_autostop(down)
        args = ["-i", str(idle_minutes), "--wait-for", wait_for] + (["--down"] if down else [])
        self._call("autostop", *args)

    def run_setup(self, setup: str, envs: Mapping[str, str], workdir: str | None,
                  file_mounts: Mapping[str, str] | None = None) -> int:
        """Run the cluster's setup on every node now (workdir and mounts synced first)."""
        prefix = self.sync(workdir, file_mounts)
        spec = {"script": setup, "envs": dict(envs), "workdir": WORKDIR if workdir else None}
        return int(self._call("setup", stdin=spec, prefix=prefix)["exit_code"])


# --- cloud instances --------------------------------------------------------------------

DEFAULT_SHUTDOWN = ("sudo", "-n", "shutdown", "-h", "now")


@dataclass(frozen=True)
class NodeAccess:
    """How the controller logs in to a cloud's instances (a provider's config section).

    ``shutdown_command`` powers a node off from inside; ``{instance_id}``, ``{region}``
    and ``{zone}`` in it are replaced. ``address_override`` ("host:port") is for test
    rigs only: every node's sshd is reached there instead of at the instance's IP (cloud
    emulators have no machines); with it, nodes are never powered off unless
    ``shutdown_command`` is given explicitly. ``refused`` says why nodes must not be
    dialled at all (an emulator's made-up addresses): every node call fails with it.
    ``ssh_timeout``: how long a new instance may take to accept SSH (progress is printed
    while it waits).
    """

    user: str = "ubuntu"
    identity_file: str | None = None
    port: int = 22
    remote_dir: str = "~/.skystate-node"
    isolate_home: bool = False
    shutdown_command: tuple[str, ...] | None = None
    address_override: str | None = None
    ssh_timeout: float = 300.0  # how long a new instance may take to accept SSH
    refused: str | None = None

    @property
    def power_off(self) -> tuple[str, ...] | None:
        if self.shutdown_command is not None:
            return self.shutdown_command or None
        return None if self.address_override else DEFAULT_SHUTDOWN


@dataclass(frozen=True)
class CloudNode:
    """One instance of a cloud cluster as the provider sees it."""

    rank: int
    node_id: str
    public_ip: str | None
    private_ip: str | None
    places: Mapping[str, str] = field(default_factory=dict)  # region, zone (for commands)


class CloudNodes:
    """Runs the skystate runtime on a cloud cluster's instances (used by aws and gcp)."""

    def __init__(self, provider: str, access: NodeAccess) -> None:
        self.provider, self.access = provider, access
        self.conns = Connections()

    def close(self) -> None:
        self.conns.close()

    def check_dialable(self) -> None:
        if self.access.refused:
            raise NotSupportedError(self.access.refused)

    def host(self, node: CloudNode) -> Host:
        self.check_dialable()
        if self.access.address_override:
            address, _, port = self.access.address_override.rpartition(":")
            return Host(self.provider, address, int(port), self.access.user)
        address = node.public_ip or node.private_ip
        if not address:
            raise ProviderError(f"{self.provider} node {node.node_id} has no IP address yet",
                                transient=True)  # fmt: skip
        return Host(self.provider, address, self.access.port, self.access.user)

    def pool(self, cluster: str, nodes: Sequence[CloudNode]) -> Pool:
        return Pool(
            name=f"{self.provider}:{cluster}",
            hosts=tuple(self.host(n) for n in nodes),
            identity_file=self.access.identity_file,
            remote_dir=self.access.remote_dir,
            isolate_home=self.access.isolate_home,
            insecure_host_keys=True,
        )

    def _internal_ip(self, node: CloudNode) -> str:
        if self.access.address_override:
            return self.host(node).address
        return node.private_ip or self.host(node).address

    def _wait_for_ssh(self, pool: Pool, node: CloudNode) -> None:
        """A fresh instance boots for a while before its sshd answers (progress printed:
        it is the request's log)."""
        started = time.monotonic()
        deadline = started + self.access.ssh_timeout
        delay = 1.0
        self.check_dialable()
        while True:
            try:
                self.conns.get(pool, self.host(node))
                return
            except ProviderError as exc:
                if not exc.transient or time.monotonic() + delay > deadline:
                    raise ProviderError(
                        f"{self.provider} node {node.node_id}: no SSH within "
                        f"{self.access.ssh_timeout:g}s (ssh_timeout): {exc}",
                        transient=True,
                    ) from exc
                print(f"{self.provider} node {node.node_id}: waiting for SSH "
                      f"({time.monotonic() - started:.0f}s of {self.access.ssh_timeout:g}s): "
                      f"{exc}", flush=True)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def up(
        self, cluster: str, owner: str, offer: Mapping[str, Any], nodes: Sequence[CloudNode]
    ) -> dict[str, dict[str, str]]:
        """Start the runtime on every node; ``{node_id: {"dir", "home"}}`` of each node."""
        nodes = sorted(nodes, key=lambda n: n.rank)
        pool = self.pool(cluster, nodes)

        def claim(node: CloudNode) -> dict[str, Any]:
            self._wait_for_ssh(pool, node)
            tags = {
                "provider": self.provider,
                "cluster": cluster,
                "owner": owner,
                "rank": node.rank,
                "node_id": node.node_id,
                "offer": dict(offer),
            }
            return self.conns.hostctl(pool, self.host(node), "claim", {
                "host": node.node_id, "base": self.access.remote_dir, "cluster": cluster,
                "owner": owner, "tags": tags}, PYTHON)  # fmt: skip

        count = len(nodes)
        with phase(f"Cluster {cluster}: waiting for SSH on {count} node(s)",
                   done=lambda: f"Cluster {cluster}: SSH is up on {count} node(s)"):
            parallel(lambda node: self._wait_for_ssh(pool, node), nodes)
        with phase(f"Cluster {cluster}: starting the runtime on {count} node(s)",
                   done=lambda: f"Cluster {cluster}: runtime up on {count} node(s)"):
            return self._start_runtime(cluster, owner, offer, nodes, pool, claim)

    def _start_runtime(self, cluster: str, owner: str, offer: Mapping[str, Any],
                       nodes: Sequence[CloudNode], pool: Pool,
                       claim: Callable[[CloudNode], dict[str, Any]]
                       ) -> dict[str, dict[str, str]]:
        claims = parallel(claim, nodes)
        for node, got in zip(nodes, claims, strict=True):
            if "taken_by" in got:
                raise ProviderError(
                    f"{self.provider} node {node.node_id} already runs cluster "
                    f"{got['taken_by']!r} (owner {got.get('owner')!r})"
                )
        slots = [NodeSlot(n.rank, self.host(n), str(c["dir"]), self._internal_ip(n))
                 for n, c in zip(nodes, claims, strict=True)]  # fmt: skip
        by_rank = {n.rank: n for n in nodes}
        bring_up(
            self.conns,
            pool,
            slots,
            cluster=cluster,
            owner=owner,
            offer=offer,
            self_stop=lambda slot, refs: self._self_stop(slot, refs, by_rank),
        )
        return {n.node_id: {"dir": str(c["dir"]), "home": str(c["home"])}
                for n, c in zip(nodes, claims, strict=True)}  # fmt: skip

    def _self_stop(
        self, slot: NodeSlot, refs: Sequence[Mapping[str, Any]], nodes: Mapping[int, CloudNode]
    ) -> dict[str, list[str]]:
        """End the runtime everywhere (``hostctl selfstop``) and power every node off.

        ``stop`` powers the workers off after the runtime ended cleanly on them; ``down``
        powers them off first, since ``selfstop down`` deletes the head's folder and with
        it the key the head reaches its workers with. The head powers itself off last.
        """
        from skystate.runtime.ssh_command import ssh_argv

        power_off = self.access.power_off
        selfstop = {a: shlex.join(hostctl_argv(slot.dir, "selfstop", a, slot.dir))
                    for a in ("stop", "down")}  # fmt: skip
        if not power_off:
            return {action: ["bash", "-c", line] for action, line in selfstop.items()}
        options: dict[str, Any] = {"insecure_host_keys": True}
        if self.access.identity_file and len(refs) > 1:
            options["identity_file"] = f"{slot.dir}/ssh/id"
        workers, own = [], ""
        for ref in refs:
            command = shlex.join(self._format(power_off, nodes[int(ref["rank"])]))
            if int(ref["rank"]) == slot.rank:
                own = command
            else:
                workers.append(shlex.join([*ssh_argv(Path(slot.dir), options, dict(ref)),
                                           command]))  # fmt: skip
        return {
            "stop": ["bash", "-c", "\n".join([selfstop["stop"], *workers, own])],
            "down": ["bash", "-c", "\n".join([*workers, selfstop["down"], own])],
        }

    @staticmethod
    def _format(command: Sequence[str], node: CloudNode) -> list[str]:
        values = {"instance_id": node.node_id, **node.places}
        return [part.format_map(_Blank(values)) for part in command]

    def stop_runtime(self, cluster: str, nodes: Sequence[CloudNode]) -> None:
        """Before the machines stop: cancel the head's jobs and end its agent (best effort)."""
        head = min(nodes, key=lambda n: n.rank, default=None)
        if head is None:
            return
        pool = self.pool(cluster, [head])
        try:
            found = self._locate(pool, cluster, head)
            self.conns.hostctl(pool, self.host(head), "stop",
                               {"dir": found["dir"], "clear_marker": True}, PYTHON)  # fmt: skip
        except ProviderError:
            pass  # an unreachable head stops with its machine all the same

    def agent(
        self,
        cluster: str,
        nodes: Sequence[CloudNode],
        infos: Sequence[NodeInfo],
        on_autostop: Callable[[bool], None] | None = None,
    ) -> SSHAgent:
        """The agent of a running cluster; folders found from records or by asking nodes."""
        nodes = sorted(nodes, key=lambda n: n.rank)
        pool = self.pool(cluster, nodes)
        known = {i.node_id: dict(i.extra) for i in infos}
        remote = []
        for node in nodes:
            extra = known.get(node.node_id) or {}
            if not extra.get("dir") or not extra.get("home"):
                extra = self._locate(pool, cluster, node)
            remote.append(RemoteNode(self.host(node), str(extra["dir"]), str(extra["home"])))
        return SSHAgent(self.conns, pool, remote, on_autostop)

    def _locate(self, pool: Pool, cluster: str, node: CloudNode) -> dict[str, str]:
        scan = self.conns.hostctl(pool, self.host(node), "scan", {
            "host": node.node_id, "base": self.access.remote_dir}, PYTHON)  # fmt: skip
        found = (scan.get("clusters") or {}).get(cluster)
        if not found:
            raise ProviderError(f"{self.provider} node {node.node_id} runs no skystate runtime "
                                f"for cluster {cluster!r}", transient=True)  # fmt: skip
        return {"dir": str(found["dir"]), "home": str(scan["home"])}


class _Blank(dict[str, str]):
    """``format_map`` values where an unknown placeholder stays as written."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
