"""The SSH provider: clusters on existing hosts of a pool (``infra: ssh/<pool>``).

Configured by the Project's ``providers: ssh: pools:`` (``SSHPool``)::

    ssh:
      pools:
        lab:
          hosts: [10.0.0.5, 10.0.0.6, "10.0.0.7:2200"]   # "addr" or "addr:port"
          user: ubuntu
          identity_file: ~/.ssh/id_ed25519
          port: 22
          accelerators: {A100: 8}     # what EACH host has (default: none)
          cpus: 32                    # per host, for job scheduling (default: detected)
          remote_dir: ~/.skystate-node   # node folders; may contain "{host}"
          isolate_home: false         # true: jobs' HOME and / mounts inside the node folder
          insecure_host_keys: false   # true: no host-key checking (test rigs only)

Hosts are whole machines: a host belongs to at most one cluster, and a cluster's node is
a whole host. **Allocation lives on the hosts**: the node folder ``<remote_dir>/<cluster>``
holds ``tags.json`` (cluster, owner, rank, the cluster's host list, offer, labels), so
provisioning is idempotent and survives the controller losing its database; ``observe``
reads those tag files from every pool host. ``{host}`` in ``remote_dir`` gives each host
its own folder when home directories are shared (NFS) between hosts.

Offers: one per pool with at least ``num_nodes`` free (untagged, reachable) hosts:
provider ``ssh``, region = pool name, instance type ``ssh-host``, price 0. A request
without accelerators fits any pool; one with accelerators fits a pool whose declared
per-host ``accelerators`` has at least that many of that type (case-insensitive). The
offer (and so each node's schedulable inventory) carries the pool's *whole* declared
accelerators, since the cluster gets whole hosts. Spot requests get no offer (hosts are
never preempted); ``cpus``/``memory`` are matched against the pool's values, or against
what the free hosts report.

Lifecycle: ``provision`` claims hosts (an flock'd check on each host), copies the
runtime (``skystate/runtime`` + ``enums``/``exceptions``/``__init__``) into the node
folder's ``pkg/``, writes ``node.json`` (node IPs, the ``ssh`` runner, the pool key copied
to the head with mode 0600 and its ``known_hosts`` for reaching workers, self-stop
commands) and starts each node's agent detached. ``stop`` cancels jobs and ends the
agents but keeps the folders, so **a stopped SSH cluster keeps its hosts** (there is no
power control over an existing host: "stopped" means no skystate processes run there;
SkyPilot's SSH node pools behave the same). ``start`` restarts the agents. ``terminate``
ends everything and removes the folders, which releases the hosts. Autostop runs on the
head (``hostctl selfstop``): it stops/downs the workers over ``ssh`` and then itself.

Remote requirements: ``python3`` (3.8+), ``bash``, ``tar``, coreutils and ``ssh`` on
the head for multi-node clusters. Host keys: see ``ssh_conn``.

Timing (FACTS.md): connect ~66 ms, every ``run`` ~110–140 ms, so each operation is one
``run`` per host (several hosts in parallel) over one cached connection per host.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from skystate.exceptions import (
    ClusterDoesNotExist,
    InvalidClusterNameError,
    ProviderError,
    ResourcesUnavailableError,
)
from skystate.providers.base import (
    PROVIDER_CLUSTER_NAME,
    ClusterObservation,
    NodeInfo,
    NodeState,
    Offer,
    OfferQuery,
    ProvisionRequest,
    fit_quantity,
)
from skystate.providers.cloud_nodes import (
    PYTHON,
    NodeSlot,
    RemoteNode,
    SSHAgent,
    bring_up,
    selfstop_commands,
)
from skystate.providers.ssh_conn import Connections, Host, Pool, parallel

INSTANCE_TYPE = "ssh-host"



class _Scan:
    """What one host reported: its home, base folder, node folders, size."""

    def __init__(self, pool: Pool, host: Host, data: Mapping[str, Any]) -> None:
        self.pool, self.host = pool, host
        self.home = str(data["home"])
        self.clusters: dict[str, dict[str, Any]] = dict(data.get("clusters") or {})
        self.cpus = float(data.get("cpus") or 1)
        self.memory_gib = float(data.get("memory_gib") or 1)

    @property
    def free(self) -> bool:
        return not self.clusters


class SSHProvider:
    """Provider of clusters made of existing SSH hosts (see the module docstring)."""

    name = "ssh"

    def __init__(self, pools: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.pools = {
            name: Pool.from_config(name, dict(cfg)) for name, cfg in (pools or {}).items()
        }
        self.conns = Connections()

    def close(self) -> None:
        self.conns.close()

    # --- host access -------------------------------------------------------------------

    def _pool(self, name: str | None) -> Pool:
        pool = self.pools.get(name or "")
        if pool is None:
            raise ProviderError(
                f"ssh pool {name!r} is not configured (pools: {', '.join(self.pools) or 'none'})"
            )
        return pool

    def _hostctl(self, pool: Pool, host: Host, op: str, args: dict[str, Any]) -> dict[str, Any]:
        return self.conns.hostctl(pool, host, op, {"host": host.address, **args}, PYTHON)

    def _scan_host(self, item: tuple[Pool, Host]) -> _Scan | ProviderError:
        pool, host = item
        try:
            return _Scan(pool, host, self._hostctl(pool, host, "scan", {"base": pool.remote_dir}))
        except ProviderError as exc:
            return exc

    def _scan(self, pools: Sequence[Pool]) -> list[_Scan | ProviderError]:
        return parallel(self._scan_host, [(p, h) for p in pools for h in p.hosts])

    def _scan_strict(self, pools: Sequence[Pool]) -> list[_Scan]:
        """Scan hosts; an unreachable host is an error (never "the cluster is gone")."""
        scans = self._scan(pools)
        errors = [s for s in scans if isinstance(s, ProviderError)]
        if errors:
            raise ProviderError(
                "cannot observe every SSH host: " + "; ".join(str(e) for e in errors),
                transient=any(e.transient for e in errors),
            )
        return [s for s in scans if isinstance(s, _Scan)]

    # --- offers ------------------------------------------------------------------------

    def offers(self, query: OfferQuery) -> list[Offer]:
        if query.zone or query.use_spot:
            return []
        if query.instance_type and query.instance_type != INSTANCE_TYPE:
            return []
        if query.region is not None and query.region not in self.pools:
            return []
        candidates = []
        for pool in self.pools.values():
            if query.region is not None and pool.name != query.region:
                continue
            if not self._accelerators_fit(pool, query.accelerators):
                continue
            if len(pool.hosts) < query.num_nodes:
                continue
            candidates.append(pool)
        result = []
        scans = self._scan(candidates)
        for pool in candidates:
            free = [s for s in scans if isinstance(s, _Scan) and s.pool is pool and s.free]
            if len(free) < query.num_nodes:
                continue
            cpus = fit_quantity(query.cpus, pool.cpus or min(s.cpus for s in free))
            memory = fit_quantity(query.memory, pool.memory or min(s.memory_gib for s in free))
            if cpus is None or memory is None:
                continue
            result.append(
                Offer(
                    "ssh",
                    pool.name,
                    None,
                    INSTANCE_TYPE,
                    dict(pool.accelerators),
                    cpus,
                    memory,
                    False,
                    0.0,
                )  # fmt: skip
            )
        return result

    @staticmethod
    def _accelerators_fit(pool: Pool, wanted: Mapping[str, Any]) -> bool:
        have = {k.lower(): v for k, v in pool.accelerators.items()}
        return all(float(count) <= have.get(name.lower(), 0) for name, count in wanted.items())

    # --- lifecycle ---------------------------------------------------------------------

    def _check_name(self, name: str) -> None:
        if not PROVIDER_CLUSTER_NAME.match(name):
            raise InvalidClusterNameError(f"invalid SSH cluster name {name!r}")

    def provision(self, request: ProvisionRequest) -> ClusterObservation:
        """Claim free hosts (or find the ones the cluster's tags name), start the agents."""
        self._check_name(request.cluster_name)
        pool = self._pool(request.offer.region)
        scans = self._scan(self.pools.values())
        reachable = [s for s in scans if isinstance(s, _Scan)]
        existing = self._nodes_of(request.cluster_name, reachable)
        if existing:
            self._check_owner(request.cluster_name, existing, request.owner)
            head_tags = min(existing, key=lambda n: n[1]["tags"]["rank"])[1]["tags"]
            hosts = [self._host(pool, key) for key in head_tags.get("hosts") or []]
        else:
            hosts = []
        missing = request.num_nodes - len(hosts)
        if missing > 0:
            free = [s.host for s in reachable if s.pool is pool and s.free and s.host not in hosts]
            if len(free) < missing:
                down = [str(s) for s in scans if isinstance(s, ProviderError)]
                raise ResourcesUnavailableError(
                    f"ssh/{pool.name}: cluster {request.cluster_name!r} needs "
                    f"{request.num_nodes} host(s) but only {len(free) + len(hosts)} are free "
                    f"or its own" + (f" (unreachable: {'; '.join(down)})" if down else "")
                )
            hosts += free[:missing]
        tags = {
            "provider": "ssh",
            "cluster": request.cluster_name,
            "owner": request.owner,
            "num_nodes": len(hosts),
            "hosts": [h.key for h in hosts],
            "pool": pool.name,
            "created_at": time.time(),
            "offer": request.offer.to_dict(),
            "labels": dict(request.labels),
        }
        claims = parallel(
            lambda item: self._hostctl(
                pool, item[1], "claim",
                {"base": pool.remote_dir, "cluster": request.cluster_name,
                 "owner": request.owner, "tags": {**tags, "rank": item[0]}},
            ),
            list(enumerate(hosts)),
        )  # fmt: skip
        lost = [(h, c) for h, c in zip(hosts, claims, strict=True) if "taken_by" in c]
        if lost:
            if not existing:  # release what this call claimed, then report the race
                won = [(h, c) for h, c in zip(hosts, claims, strict=True) if "dir" in c]
                parallel(lambda hc: self._hostctl(pool, hc[0], "down", {
                    "dir": hc[1]["dir"], "owner": request.owner}), won)  # fmt: skip
            host, claim = lost[0]
            raise ResourcesUnavailableError(
                f"ssh/{pool.name}: host {host.label} was taken by cluster "
                f"{claim['taken_by']!r} (owner {claim.get('owner')!r}) meanwhile"
            )
        nodes = [
            (host, int(c["tags"].get("rank", rank)), c["dir"], c["home"], c["tags"])
            for rank, (host, c) in enumerate(zip(hosts, claims, strict=True))
        ]
        self._bring_up(pool, nodes)
        observation = self._observe_one(request.cluster_name)
        return observation

    def _host(self, pool: Pool, key: str) -> Host:
        for host in pool.hosts:
            if host.key == key:
                return host
        raise ProviderError(f"ssh pool {pool.name!r} no longer lists host {key}")

    @staticmethod
    def _nodes_of(name: str, scans: Sequence[_Scan]) -> list[tuple[_Scan, dict[str, Any]]]:
        return [(s, s.clusters[name]) for s in scans if name in s.clusters]

    @staticmethod
    def _check_owner(name: str, nodes: Sequence[tuple[_Scan, dict[str, Any]]], owner: str) -> None:
        owners = {str(n["tags"].get("owner")) for _, n in nodes}
        if owners != {owner}:
            raise ProviderError(
                f"SSH cluster {name!r} belongs to owner {', '.join(sorted(owners))}, "
                f"not {owner!r}; refusing to touch it."
            )

    def _bring_up(
        self, pool: Pool, nodes: list[tuple[Host, int, str, str, Mapping[str, Any]]]
    ) -> None:
        """Start the runtime on the claimed hosts (``cloud_nodes.bring_up``)."""
        head_tags = min(nodes, key=lambda n: n[1])[4]
        bring_up(
            self.conns, pool, [NodeSlot(rank, host, d) for host, rank, d, _, _ in nodes],
            cluster=str(head_tags["cluster"]), owner=str(head_tags["owner"]),
            offer=head_tags.get("offer") or {}, self_stop=selfstop_commands,
        )  # fmt: skip

    def _cluster_nodes(
        self, name: str, owner: str | None
    ) -> tuple[Pool | None, list[tuple[_Scan, dict[str, Any]]]]:
        self._check_name(name)
        nodes = self._nodes_of(name, self._scan_strict(list(self.pools.values())))
        if nodes and owner is not None:
            self._check_owner(name, nodes, owner)
        nodes.sort(key=lambda n: int(n[1]["tags"]["rank"]))
        return (nodes[0][0].pool if nodes else None), nodes

    def start(self, name: str, owner: str) -> ClusterObservation:
        pool, nodes = self._cluster_nodes(name, owner)
        if pool is None:
            raise ClusterDoesNotExist(f"SSH cluster {name!r} does not exist")
        self._bring_up(pool, [
            (s.host, int(n["tags"]["rank"]), n["dir"], s.home, n["tags"]) for s, n in nodes
        ])  # fmt: skip
        return self._observe_one(name)

    def stop(self, name: str, owner: str) -> ClusterObservation:
        """Cancel jobs and end the agents; folders (and so the hosts) stay the cluster's."""
        pool, nodes = self._cluster_nodes(name, owner)
        if pool is None:
            raise ClusterDoesNotExist(f"SSH cluster {name!r} does not exist")
        self._hostctl(pool, nodes[0][0].host, "stop", {"dir": nodes[0][1]["dir"],
                                                       "clear_marker": True})  # fmt: skip
        parallel(lambda sn: self._hostctl(pool, sn[0].host, "stop", {
            "dir": sn[1]["dir"], "cancel": False, "clear_marker": True}), nodes[1:])  # fmt: skip
        return self._observe_one(name)

    def terminate(self, name: str, owner: str) -> None:
        """End everything and remove the node folders (releases the hosts)."""
        pool, nodes = self._cluster_nodes(name, owner)
        if pool is None:
            return
        self._hostctl(pool, nodes[0][0].host, "down", {"dir": nodes[0][1]["dir"], "owner": owner})
        parallel(lambda sn: self._hostctl(pool, sn[0].host, "down", {
            "dir": sn[1]["dir"], "owner": owner, "cancel": False}), nodes[1:])  # fmt: skip

    # --- observation -------------------------------------------------------------------

    def observe(self, names: Sequence[str] | None = None) -> list[ClusterObservation]:
        """Every cluster tagged on any pool host; an unreachable host raises (transient)."""
        scans = self._scan_strict(list(self.pools.values()))
        wanted = set(names) if names is not None else None
        found: dict[str, list[tuple[_Scan, dict[str, Any]]]] = {}
        for scan in scans:
            for cluster, node in scan.clusters.items():
                if wanted is None or cluster in wanted:
                    found.setdefault(cluster, []).append((scan, node))
        return [self._observation(name, found[name]) for name in sorted(found)]

    def _observe_one(self, name: str) -> ClusterObservation:
        seen = self.observe([name])
        if not seen:
            raise ClusterDoesNotExist(f"SSH cluster {name!r} does not exist")
        return seen[0]

    @staticmethod
    def _observation(name: str, nodes: list[tuple[_Scan, dict[str, Any]]]) -> ClusterObservation:
        nodes = sorted(nodes, key=lambda n: int(n[1]["tags"].get("rank", 0)))
        infos = tuple(
            NodeInfo(
                rank=int(node["tags"].get("rank", 0)),
                node_id=scan.host.key,
                ip=scan.host.address,
                state=NodeState.RUNNING if node.get("agent") else NodeState.STOPPED,
                ssh_port=scan.host.port,
                ssh_user=scan.host.user,
                extra={"pool": scan.pool.name, "dir": node["dir"], "home": scan.home},
            )
            for scan, node in nodes
        )
        head = nodes[0][1]
        tags = {
            "cluster": str(head["tags"].get("cluster")),
            "owner": str(head["tags"].get("owner")),
        }
        tags.update({str(k): str(v) for k, v in (head["tags"].get("labels") or {}).items()})
        offer = head["tags"].get("offer")
        running = any(i.state is NodeState.RUNNING for i in infos)
        return ClusterObservation(
            name=name,
            owner=str(head["tags"].get("owner")),
            provider="ssh",
            nodes=infos,
            offer=Offer.from_dict(offer) if offer else None,
            tags=tags,
            stopped_by_autostop=not running and bool(head.get("autostopped")),
        )

    def agent(self, observation: ClusterObservation) -> SSHAgent:
        nodes = sorted(observation.nodes, key=lambda n: n.rank)
        if not nodes or any(not n.extra.get("dir") or not n.extra.get("pool") for n in nodes):
            nodes = sorted(self._observe_one(observation.name).nodes, key=lambda n: n.rank)
        pool = self._pool(str(nodes[0].extra["pool"]))
        remote = [
            RemoteNode(self._host(pool, n.node_id), str(n.extra["dir"]), str(n.extra["home"]))
            for n in nodes
        ]
        return SSHAgent(self.conns, pool, remote)
