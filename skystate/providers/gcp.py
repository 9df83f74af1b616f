"""The GCP provider: clusters of Compute Engine instances (``infra: gcp[/region[/zone]]``).

Configured by ``providers: gcp:`` (``skystate.spec.documents.GCPConfig``)::

    gcp:
      project: my-proj             # or $GOOGLE_CLOUD_PROJECT
      regions: [us-central1]       # offers only there (default: every catalog region)
      api_endpoint: null           # e.g. a local fake in tests (http:// → no credentials)
      ssh_user: skystate           # the login the controller uses on the instances
      identity_file: ~/.ssh/id_ed25519   # its public key (.pub) goes in ssh-keys metadata
      image: projects/debian-cloud/global/images/family/debian-12
      network: global/networks/default

**Ours, by labels.** Every instance and its boot disk carry ``skystate=true``,
``skystate-cluster``, ``skystate-owner`` and ``skystate-rank`` labels (values made
label-safe; the exact cluster name, owner and offer are also in the instance metadata).
``provision`` first lists the cluster's instances by label, so provisioning an existing
cluster returns it (missing ranks are created in its zone, stopped ones started), and
``observe`` rebuilds every cluster from labels alone (``refresh --rebuild``).

**Instances.** One per node, named ``<cluster>-<owner hash>-<rank>``, in the offer's
zone; machine type from the catalog offer; T4/V100/P100 offers attach guest
accelerators to the n1 type (a2/g2/a3 types carry theirs); GPUs and spot set
``onHostMaintenance: TERMINATE``; ``use_spot`` sets ``provisioningModel: SPOT`` with
``instanceTerminationAction: STOP`` (a preempted node shows as stopped and is started
again by the reconciler). ``ports`` become one firewall rule per cluster, targeting the
cluster's network tag, deleted with the cluster. Every insert/stop/start/delete waits for
its zone operation (``gcp_api``). A capacity error (``ZONE_RESOURCE_POOL_EXHAUSTED``,
``QUOTA_EXCEEDED``, stockouts) deletes what this call created and raises
``ResourcesUnavailableError``, so the failover loop tries the next offer; timeouts and 5xx
are transient ``ProviderError`` s and never mean "gone".

**Nodes run the skystate runtime over SSH** (``cloud_nodes``): once the instances run,
the runtime is copied to each and started; jobs run through the SSH runner from the head.

**Autostop** from inside the cluster: ``stop`` and ``down`` first end the runtime on every
node (``hostctl selfstop``), then the head calls the Compute API itself
(``gcp_selfstop``, with the instance's service-account token: instances get the
``compute`` scope) to stop — after labelling the head ``skystate-autostopped=true`` — or
delete every instance. A stop the API refuses falls back to ``sudo shutdown -h now`` (a
guest shutdown is a stop on GCE).

``test_ssh_address`` (tests only) sends every node's SSH to one address instead of the
instances' IPs (the fake API has no machines); the nodes then share that machine, so each
gets its own folder and home under ``remote_dir/<instance name>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from skystate.exceptions import ClusterDoesNotExist, ProviderError, ResourcesUnavailableError
from skystate.providers.base import (
    ClusterAgent,
    ClusterObservation,
    NodeInfo,
    NodeState,
    Offer,
    OfferQuery,
    ProvisionRequest,
)
from skystate.providers.gcp_api import ComputeAPI
from skystate.providers.gcp_instances import firewall_body, instance_body
from skystate.providers.gcp_names import (  # noqa: F401 - the provider's public names
    COMPUTE_SCOPE,
    DEFAULT_IMAGE,
    DEFAULT_NETWORK,
    GUEST_ACCELERATORS,
    LABEL_AUTOSTOPPED,
    LABEL_CLUSTER,
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_RANK,
    META_CLUSTER,
    META_OFFER,
    META_OWNER,
    GCPSettings,
    firewall_name,
    instance_name,
    label_value,
    network_tag,
)
from skystate.providers.gcp_nodes import gcp_cloud_nodes

_STATES = {
    "PROVISIONING": NodeState.PENDING, "STAGING": NodeState.PENDING,
    "REPAIRING": NodeState.PENDING, "RUNNING": NodeState.RUNNING,
    "STOPPING": NodeState.STOPPED, "SUSPENDING": NodeState.STOPPED,
    "SUSPENDED": NodeState.STOPPED, "STOPPED": NodeState.STOPPED,
    "TERMINATED": NodeState.STOPPED,  # GCE's TERMINATED is a stopped instance
}  # fmt: skip


@dataclass(frozen=True)
class _Instance:
    """What the provider reads from one GCE instance."""

    name: str
    zone: str
    cluster: str
    owner: str
    rank: int
    status: str
    labels: Mapping[str, str]
    public_ip: str | None
    private_ip: str | None
    instance_id: str
    offer: Mapping[str, Any] | None

    @classmethod
    def parse(cls, zone: str, inst: Any) -> _Instance:
        labels = dict(inst.labels)
        meta = {item.key: item.value for item in inst.metadata.items} if inst.metadata else {}
        nic = inst.network_interfaces[0] if inst.network_interfaces else None
        public = nic.access_configs[0].nat_i_p if nic and nic.access_configs else None
        offer = json.loads(meta[META_OFFER]) if meta.get(META_OFFER) else None
        return cls(
            name=inst.name, zone=zone, status=str(inst.status),
            cluster=meta.get(META_CLUSTER) or labels.get(LABEL_CLUSTER, ""),
            owner=meta.get(META_OWNER) or labels.get(LABEL_OWNER, ""),
            rank=int(labels.get(LABEL_RANK) or 0), labels=labels,
            public_ip=public or None, private_ip=(nic.network_i_p if nic else None) or None,
            instance_id=str(inst.id), offer=offer,
        )  # fmt: skip

    @property
    def state(self) -> NodeState:
        return _STATES.get(self.status, NodeState.PENDING)


class GCPProvider:
    """Provider of Compute Engine clusters (see the module docstring)."""

    name = "gcp"

    def __init__(self, settings: GCPSettings) -> None:
        self.settings = settings
        self._api: ComputeAPI | None = None
        self._nodes: Any = None

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> GCPProvider:
        return cls(GCPSettings.from_config(section))

    @property
    def api(self) -> ComputeAPI:
        if self._api is None:
            if not self.settings.project:
                raise ProviderError("GCP: no project: set providers.gcp.project (or "
                                    "$GOOGLE_CLOUD_PROJECT)")  # fmt: skip
            self._api = ComputeAPI(self.settings.project, self.settings.api_endpoint)
        return self._api

    @property
    def nodes(self) -> Any:
        """The runtime-over-SSH seam (``cloud_nodes.CloudNodes``), built on first use."""
        if self._nodes is None:
            self._nodes = gcp_cloud_nodes(self.settings)
        return self._nodes

    def close(self) -> None:
        if self._nodes is not None:
            self._nodes.close()

    # --- offers ------------------------------------------------------------------------

    def offers(self, query: OfferQuery) -> list[Offer]:
        from skystate.providers import catalog

        return catalog.offers("gcp", query, self.settings.regions)

    # --- reading instances -------------------------------------------------------------

    def _instances(self, cluster: str | None = None) -> list[_Instance]:
        wanted = {LABEL_MANAGED: "true"}
        if cluster is not None:
            wanted[LABEL_CLUSTER] = label_value(cluster)
        found = [_Instance.parse(zone, i) for zone, i in self.api.list_instances(wanted)]
        if cluster is not None:
            found = [i for i in found if i.cluster == cluster]
        return sorted(found, key=lambda i: (i.cluster, i.rank))

    def _owned(self, name: str, owner: str | None) -> list[_Instance]:
        found = self._instances(name)
        owners = {i.owner for i in found}
        if owner is not None and found and owners != {owner}:
            raise ProviderError(f"GCP cluster {name!r} belongs to owner "
                                f"{', '.join(sorted(owners))}, not {owner!r}; refusing to "
                                "touch it.")  # fmt: skip
        return found

    # --- lifecycle ---------------------------------------------------------------------

    def provision(self, request: ProvisionRequest) -> ClusterObservation:
        """Create the missing nodes (or find them by labels), start them, start the runtime."""
        name, owner = request.cluster_name, request.owner
        existing = self._owned(name, owner)
        zone = existing[0].zone if existing else request.offer.zone
        if not zone:
            raise ResourcesUnavailableError(f"GCP offer {request.offer.infra} names no zone")
        have = {i.rank for i in existing}
        missing = [r for r in range(request.num_nodes) if r not in have]
        bodies = [instance_body(self.settings, request, zone, rank) for rank in missing]
        try:
            self._wait_all([(zone, self.api.insert_instance(zone, b), f"insert {b['name']}")
                            for b in bodies])  # fmt: skip
            if request.ports:
                self.api.ensure_firewall(firewall_body(self.settings, request))
        except (ResourcesUnavailableError, ProviderError) as exc:
            if not existing:  # leave nothing behind before the next offer is tried
                self._cleanup(name, owner)
            raise _in_zone(exc, zone) from exc
        stopped = [i for i in existing if i.state is not NodeState.RUNNING]
        self._wait_all([(i.zone, self.api.instance_call("start", i.zone, i.name),
                         f"start {i.name}") for i in stopped])  # fmt: skip
        return self._bring_up(name, owner)

    def _cleanup(self, name: str, owner: str) -> None:
        try:
            self.terminate(name, owner)
        except ProviderError:
            pass  # the instances stay labelled: a later down or refresh finds them

    def _wait_all(self, operations: Sequence[tuple[str, Any, str]]) -> None:
        """Wait for every operation; the first failure is raised after all finished."""
        errors: list[Exception] = []
        for zone, operation, where in operations:
            try:
                self.api.wait(operation, zone, where)
            except (ResourcesUnavailableError, ProviderError) as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def _bring_up(self, name: str, owner: str) -> ClusterObservation:
        """Start the runtime on the (running) instances; the observation with node folders."""
        instances = self._owned(name, owner)
        if not instances:
            raise ClusterDoesNotExist(f"GCP cluster {name!r} does not exist")
        offer = instances[0].offer or {}
        folders = self.nodes.up(name, owner, offer, [self._cloud_node(i) for i in instances])
        return self._observation(name, instances, folders)

    def start(self, name: str, owner: str) -> ClusterObservation:
        instances = self._owned(name, owner)
        if not instances:
            raise ClusterDoesNotExist(f"GCP cluster {name!r} does not exist")
        stopped = [i for i in instances if i.state is not NodeState.RUNNING]
        self._wait_all([(i.zone, self.api.instance_call("start", i.zone, i.name),
                         f"start {i.name}") for i in stopped])  # fmt: skip
        head = instances[0]
        if LABEL_AUTOSTOPPED in head.labels:
            labels = {k: v for k, v in head.labels.items() if k != LABEL_AUTOSTOPPED}
            self.api.set_labels(head.zone, head.name, labels)
        return self._bring_up(name, owner)

    def stop(self, name: str, owner: str) -> ClusterObservation:
        """End the runtime (jobs cancelled), then stop every instance (disks stay)."""
        instances = self._owned(name, owner)
        if not instances:
            raise ClusterDoesNotExist(f"GCP cluster {name!r} does not exist")
        running = [i for i in instances if i.state is NodeState.RUNNING]
        if instances[0] in running:
            self.nodes.stop_runtime(name, [self._cloud_node(i) for i in running])
        self._wait_all([(i.zone, self.api.instance_call("stop", i.zone, i.name),
                         f"stop {i.name}") for i in running])  # fmt: skip
        return self._observation(name, self._owned(name, owner))

    def terminate(self, name: str, owner: str) -> None:
        """Delete every instance (boot disks go with them) and the cluster's firewall rule."""
        instances = self._owned(name, owner)
        head = instances[0] if instances else None
        if head is not None and head.state is NodeState.RUNNING:
            self.nodes.stop_runtime(name, [self._cloud_node(head)])
        self._wait_all([(i.zone, self.api.instance_call("delete", i.zone, i.name),
                         f"delete {i.name}") for i in instances])  # fmt: skip
        self.api.delete_firewall(firewall_name(name, owner))

    # --- observation -------------------------------------------------------------------

    def observe(self, names: Sequence[str] | None = None) -> list[ClusterObservation]:
        """Every cluster labelled ours (any owner), from one aggregated list call."""
        if names is not None and len(names) == 1:
            instances = self._instances(names[0])
        else:
            instances = self._instances()
        wanted = set(names) if names is not None else None
        grouped: dict[str, list[_Instance]] = {}
        for inst in instances:
            if wanted is None or inst.cluster in wanted:
                grouped.setdefault(inst.cluster, []).append(inst)
        return [self._observation(n, grouped[n]) for n in sorted(grouped)]

    def _observation(self, name: str, instances: Sequence[_Instance],
                     folders: Mapping[str, Mapping[str, str]] | None = None) -> ClusterObservation:
        infos = tuple(
            NodeInfo(
                rank=i.rank, node_id=i.name, ip=i.public_ip or i.private_ip or "",
                state=i.state, ssh_port=self.nodes_port, ssh_user=self.settings.ssh_user,
                extra={"zone": i.zone, "private_ip": i.private_ip, "instance_id": i.instance_id,
                       **dict((folders or {}).get(i.name) or {})},
            )
            for i in instances
        )  # fmt: skip
        head = instances[0]
        offer = Offer.from_dict(head.offer) if head.offer else None
        tags = {"cluster": name, "owner": head.owner}
        tags.update({k: v for k, v in head.labels.items() if not k.startswith(LABEL_MANAGED)})
        autostopped = head.labels.get(LABEL_AUTOSTOPPED) == "true"
        observation = ClusterObservation(name=name, owner=head.owner, provider="gcp",
                                         nodes=infos, offer=offer, tags=tags)
        stopped = observation.state is NodeState.STOPPED
        return replace(observation, stopped_by_autostop=stopped and autostopped)

    @property
    def nodes_port(self) -> int:
        address = self.settings.test_ssh_address
        return int(address.rpartition(":")[2]) if address else 22

    def _cloud_node(self, inst: _Instance) -> Any:
        from skystate.providers.cloud_nodes import CloudNode

        return CloudNode(rank=inst.rank, node_id=inst.name, public_ip=inst.public_ip,
                         private_ip=inst.private_ip, places={"zone": inst.zone})

    def agent(self, observation: ClusterObservation) -> ClusterAgent:
        from skystate.providers.cloud_nodes import CloudNode

        infos = sorted(observation.nodes, key=lambda n: n.rank)
        if not infos or any(not n.extra.get("zone") for n in infos):
            seen = self.observe([observation.name])
            if not seen:
                raise ClusterDoesNotExist(f"GCP cluster {observation.name!r} does not exist")
            infos = sorted(seen[0].nodes, key=lambda n: n.rank)
        nodes = [CloudNode(rank=n.rank, node_id=n.node_id, public_ip=n.ip or None,
                           private_ip=n.extra.get("private_ip"), places={"zone": n.extra["zone"]})
                 for n in infos]  # fmt: skip
        return self.nodes.agent(observation.name, nodes, infos)


def _in_zone(exc: Exception, zone: str) -> Exception:
    """The same error type, its message naming the zone (for ``failover_history``)."""
    if zone in str(exc):
        return exc
    if isinstance(exc, ResourcesUnavailableError):
        return ResourcesUnavailableError(f"{zone}: {exc}")
    if isinstance(exc, ProviderError):
        return ProviderError(f"{zone}: {exc}", transient=exc.transient)
    return exc
