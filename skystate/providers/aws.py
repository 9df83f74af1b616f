"""The AWS provider: clusters of EC2 instances (``infra: aws[/region[/zone]]``), via boto3.

Configured by ``providers: aws:`` (``AWSConfig``)::

    aws:
      regions: [us-east-1, us-west-2]   # where offers and observe() look (default: catalog)
      endpoint_url: null                # e.g. a moto server in tests
      ssh_user: ubuntu
      identity_file: ~/.ssh/id_ed25519  # default: a key made in $SKYSTATE_HOME/ssh/
      key_name: null                    # existing key pair; default: the key's .pub imported
      image_id: null                    # AMI or {region: AMI}; default: newest Ubuntu
      security_group: null              # default: one group per cluster, opening 22 + ports
      ssh_timeout: 300                  # seconds a new instance may take to accept SSH

**Tags are the truth.** Every instance and its volumes are created with the tags
``skystate-cluster``, ``skystate-owner``, ``skystate-offer`` (the offer as JSON) and the
cluster's labels in the same ``RunInstances`` call, so no untagged instance ever exists;
``skystate-rank`` is added right after. ``provision`` first looks for the cluster's
tagged instances in every configured region: a cluster that exists is returned (stopped
instances are started, missing ranks launched), so a crash mid-provision never makes a
second cluster; instances a crash left without a rank get the free ranks. ``observe``
lists every instance tagged ``skystate-cluster`` (refresh and ``--rebuild`` use it).

Nodes run the skystate runtime over SSH (``cloud_nodes``): jobs go through the runtime's
SSH runner. Autostop fires on the head, which ends the runtime everywhere and then runs
``sudo shutdown`` on every node; ``InstanceInitiatedShutdownBehavior`` (``stop``, or
``terminate`` once autostop asks for ``down``) makes EC2 stop or terminate it. Spot
instances are one-time requests, which EC2 cannot stop: they always terminate, and
``stop`` of a spot cluster is refused. A stop by autostop is seen as
``StateReason.Code == Client.InstanceInitiatedShutdown``.

Failures map as ``aws_api`` describes: capacity/quota → the next offer, throttling →
backoff.

An ``endpoint_url`` that is not AWS's own (``*.amazonaws.com``) is an emulator such as
moto: its instances have made-up public IPs in real address space, which are never
dialled (host keys are not checked on cloud nodes). Without ``test_ssh_address`` such a
provider refuses to provision or reach nodes, at once and saying why.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skystate.exceptions import (
    ClusterDoesNotExist,
    NotSupportedError,
    ProviderError,
    ResourcesUnavailableError,
)
from skystate.home import home
from skystate.providers import aws_api
from skystate.providers.aws_api import EC2, tag_list, tags_of
from skystate.providers.base import (
    ClusterAgent,
    ClusterObservation,
    NodeInfo,
    NodeState,
    Offer,
    OfferQuery,
    ProvisionRequest,
)
from skystate.providers.cloud_nodes import CloudNode, CloudNodes, NodeAccess
from skystate.providers.phases import phase
from skystate.providers.ssh_conn import parallel
from skystate.spec.documents import AWSConfig

CLUSTER_TAG, OWNER_TAG, RANK_TAG, OFFER_TAG = (
    "skystate-cluster", "skystate-owner", "skystate-rank", "skystate-offer",
)  # fmt: skip
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
_STATES = {"pending": NodeState.PENDING, "running": NodeState.RUNNING,
           "stopping": NodeState.PENDING, "stopped": NodeState.STOPPED}  # fmt: skip
AUTOSTOP_REASON = "Client.InstanceInitiatedShutdown"
DEFAULT_DISK_GB = 256


class AWSProvider:
    """Provider of EC2 clusters (see the module docstring)."""

    name = "aws"

    def __init__(self, config: AWSConfig | Mapping[str, Any] | None = None) -> None:
        self.config = config if isinstance(config, AWSConfig) else AWSConfig.model_validate(
            dict(config or {}))  # fmt: skip
        self.ec2 = EC2(self.config.endpoint_url)
        identity = self.config.identity_file
        access = NodeAccess(
            user=self.config.ssh_user,
            identity_file=str(Path(identity).expanduser()) if identity else default_key_path(),
            remote_dir=self.config.remote_dir,
            isolate_home=self.config.isolate_home,
            shutdown_command=tuple(self.config.shutdown_command)
            if self.config.shutdown_command is not None else None,
            address_override=self.config.test_ssh_address,
            ssh_timeout=self.config.ssh_timeout,
            refused=_emulator_refusal(self.config),
        )  # fmt: skip
        self.nodes = CloudNodes("aws", access)
        self._key_lock = threading.Lock()

    def close(self) -> None:
        self.nodes.close()

    @property
    def regions(self) -> list[str]:
        if self.config.regions:
            return list(self.config.regions)
        from skystate.providers import catalog

        return sorted({e.region for e in catalog.entries("aws")})

    # --- offers ------------------------------------------------------------------------

    def offers(self, query: OfferQuery) -> list[Offer]:
        from skystate.providers import catalog

        return catalog.offers("aws", query, regions=self.regions)

    # --- reading instances --------------------------------------------------------------

    def _instances(self, names: Sequence[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(region, instance) of every live instance tagged as a skystate cluster node."""
        filters = [{"Name": "instance-state-name", "Values": LIVE_STATES}]
        filters.append({"Name": f"tag:{CLUSTER_TAG}", "Values": list(names)} if names
                       else {"Name": "tag-key", "Values": [CLUSTER_TAG]})  # fmt: skip
        if names is not None and not names:
            return []

        def scan(region: str) -> list[tuple[str, dict[str, Any]]]:
            reservations = self.ec2.pages(region, "describe_instances", "Reservations",
                                          Filters=filters)  # fmt: skip
            return [(region, i) for r in reservations for i in r.get("Instances") or []]

        return [item for found in parallel(scan, self.regions) for item in found]

    def _cluster(self, name: str, owner: str | None) -> list[tuple[str, dict[str, Any]]]:
        found = self._instances([name])
        owners = {tags_of(i).get(OWNER_TAG) for _, i in found}
        if found and owner is not None and owners != {owner}:
            raise ProviderError(
                f"AWS cluster {name!r} belongs to owner {', '.join(sorted(map(str, owners)))}, "
                f"not {owner!r}; refusing to touch it."
            )
        return found

    def observe(self, names: Sequence[str] | None = None) -> list[ClusterObservation]:
        """Every cluster tagged on the configured regions' instances (ours or not)."""
        grouped: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for region, instance in self._instances(names):
            grouped.setdefault(tags_of(instance)[CLUSTER_TAG], []).append((region, instance))
        return [_observation(name, grouped[name]) for name in sorted(grouped)]

    def _observe_one(self, name: str, folders: Mapping[str, Mapping[str, str]] | None = None
                     ) -> ClusterObservation:  # fmt: skip
        seen = self.observe([name])
        if not seen:
            raise ClusterDoesNotExist(f"AWS cluster {name!r} does not exist")
        if not folders:
            return seen[0]
        obs = seen[0]
        nodes = tuple(NodeInfo(**{**n.to_dict(), "state": n.state,
                                  "extra": {**n.extra, **folders.get(n.node_id, {})}})
                      for n in obs.nodes)  # fmt: skip
        return ClusterObservation(obs.name, obs.owner, obs.provider, nodes, obs.offer, obs.tags,
                                  obs.stopped_by_autostop)  # fmt: skip

    # --- lifecycle ---------------------------------------------------------------------

    def provision(self, request: ProvisionRequest) -> ClusterObservation:
        """Launch the missing ranks (or return the tagged cluster), then start the runtime."""
        self.nodes.check_dialable()  # before anything is launched that could not be reached
        existing = self._cluster(request.cluster_name, request.owner)
        region = existing[0][0] if existing else request.offer.region
        if region is None:
            raise ProviderError("an AWS offer needs a region")
        ranks = _assign_ranks(self.ec2, region, [i for _, i in existing], request.num_nodes)
        stopped = [i["InstanceId"] for _, i in existing if i["State"]["Name"] != "running"]
        if stopped:
            self._start_instances(region, stopped)
        missing = [r for r in range(request.num_nodes) if r not in ranks.values()]
        if missing:
            self._launch(request, region, missing, fresh=not existing)
        return self._bring_up(request.cluster_name, request.owner)

    def _launch(self, request: ProvisionRequest, region: str, ranks: list[int],
                fresh: bool) -> None:  # fmt: skip
        offer = request.offer
        tags = {"Name": request.cluster_name, CLUSTER_TAG: request.cluster_name,
                OWNER_TAG: request.owner, **{str(k): str(v) for k, v in request.labels.items()}}
        offer_json = json.dumps(offer.to_dict(), separators=(",", ":"))
        if len(offer_json) <= 256:
            tags[OFFER_TAG] = offer_json
        image_id = self._image(region, request.image_id, bool(offer.accelerators))
        image = aws_api.describe_image(self.ec2, region, image_id)
        group = self.config.security_group or f"skystate-{request.cluster_name}"
        group_id = aws_api.ensure_security_group(
            self.ec2, region, group, {CLUSTER_TAG: request.cluster_name,
                                      OWNER_TAG: request.owner}, request.ports)  # fmt: skip
        spot = {"InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": {
            "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}}
        kwargs: dict[str, Any] = {
            "ImageId": image_id, "InstanceType": offer.instance_type,
            "MinCount": len(ranks), "MaxCount": len(ranks),
            "KeyName": self._key_pair(region), "SecurityGroupIds": [group_id],
            "InstanceInitiatedShutdownBehavior": "terminate" if offer.use_spot else "stop",
            "BlockDeviceMappings": [{"DeviceName": image.get("RootDeviceName") or "/dev/sda1",
                "Ebs": {"VolumeSize": int(request.disk_size or DEFAULT_DISK_GB),
                        "VolumeType": "gp3", "DeleteOnTermination": True}}],
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tag_list(tags)},
                                  {"ResourceType": "volume", "Tags": tag_list(tags)}],
            **(spot if offer.use_spot else {}),
            **({"Placement": {"AvailabilityZone": offer.zone}} if offer.zone else {}),
        }  # fmt: skip
        try:
            launched = self.ec2.call(region, "run_instances", **kwargs)["Instances"]
        except (ProviderError, ResourcesUnavailableError):  # failing over leaves no group
            if fresh and not self.config.security_group:
                self._delete_group(region, request.cluster_name, request.owner)
            raise
        for rank, instance in zip(ranks, launched, strict=False):
            self.ec2.call(region, "create_tags", Resources=[instance["InstanceId"]],
                          Tags=[{"Key": RANK_TAG, "Value": str(rank)}])  # fmt: skip

    def _bring_up(self, name: str, owner: str) -> ClusterObservation:
        """Wait until every node runs, then start the runtime on them."""
        found = self._cluster(name, owner)
        if not found:
            raise ClusterDoesNotExist(f"AWS cluster {name!r} does not exist")
        region = found[0][0]
        with phase(f"Cluster {name}: provisioning {len(found)} AWS instance(s) in {region}",
                   done=lambda: f"Cluster {name}: {len(found)} instance(s) running"):
            self.ec2.wait(region, "instance_running", [i["InstanceId"] for _, i in found])
        observation = self._observe_one(name)
        offer = observation.offer.to_dict() if observation.offer else {}
        folders = self.nodes.up(name, owner, offer, _cloud_nodes(observation))
        return self._observe_one(name, folders)

    def _start_instances(self, region: str, ids: list[str]) -> None:
        self.ec2.call(region, "start_instances", InstanceIds=ids)
        self.ec2.wait(region, "instance_running", ids)

    def start(self, name: str, owner: str) -> ClusterObservation:
        found = self._cluster(name, owner)
        if not found:
            raise ClusterDoesNotExist(f"AWS cluster {name!r} does not exist")
        stopped = [i["InstanceId"] for _, i in found if i["State"]["Name"] != "running"]
        if stopped:
            self._start_instances(found[0][0], stopped)
        return self._bring_up(name, owner)

    def stop(self, name: str, owner: str) -> ClusterObservation:
        """Cancel jobs and end the runtime (best effort), then stop every instance."""
        found = self._cluster(name, owner)
        if not found:
            raise ClusterDoesNotExist(f"AWS cluster {name!r} does not exist")
        if any(i.get("InstanceLifecycle") == "spot" for _, i in found):
            raise NotSupportedError(
                f"AWS cluster {name!r} runs on spot instances, which EC2 cannot stop; "
                "use down instead"
            )
        region = found[0][0]
        running = [i for _, i in found if i["State"]["Name"] == "running"]
        if running:
            self.nodes.stop_runtime(name, _cloud_nodes(_observation(name, found)))
        ids = [i["InstanceId"] for _, i in found]
        self.ec2.call(region, "stop_instances", InstanceIds=ids)
        self.ec2.wait(region, "instance_stopped", ids)
        return self._observe_one(name)

    def terminate(self, name: str, owner: str) -> None:
        """Terminate every instance (volumes go with them) and the cluster's own group."""
        found = self._cluster(name, owner)
        by_region: dict[str, list[str]] = {}
        for region, instance in found:
            by_region.setdefault(region, []).append(instance["InstanceId"])
        for region, ids in by_region.items():
            self.ec2.call(region, "terminate_instances", InstanceIds=ids)
            self.ec2.wait(region, "instance_terminated", ids)
        if not self.config.security_group:
            for region in by_region or {}:
                self._delete_group(region, name, owner)

    def _delete_group(self, region: str, name: str, owner: str) -> None:
        groups = self.ec2.call(region, "describe_security_groups", Filters=[
            {"Name": "group-name", "Values": [f"skystate-{name}"]},
            {"Name": f"tag:{OWNER_TAG}", "Values": [owner]}])["SecurityGroups"]  # fmt: skip
        for group in groups:
            try:
                self.ec2.call(region, "delete_security_group", GroupId=group["GroupId"])
            except ProviderError:
                pass  # still referenced by a terminating interface: the next down removes it

    # --- agent -------------------------------------------------------------------------

    def agent(self, observation: ClusterObservation) -> ClusterAgent:
        """The runtime on the head over SSH; enabling autostop sets the shutdown behaviour."""
        obs = observation
        if not obs.nodes or any(not n.ip for n in obs.nodes):
            obs = self._observe_one(observation.name)
        nodes = _cloud_nodes(obs)
        region = str(obs.nodes[0].extra.get("region") or "")
        spot = bool(obs.offer and obs.offer.use_spot)

        def shutdown_behaviour(down: bool) -> None:
            value = "terminate" if down or spot else "stop"
            for node in nodes:
                # the Attribute/Value form: moto 5.2 ignores InstanceInitiatedShutdownBehavior=
                self.ec2.call(region, "modify_instance_attribute", InstanceId=node.node_id,
                              Attribute="instanceInitiatedShutdownBehavior",
                              Value=value)  # fmt: skip

        return self.nodes.agent(obs.name, nodes, obs.nodes, on_autostop=shutdown_behaviour)

    # --- launch inputs -----------------------------------------------------------------

    def _image(self, region: str, requested: str | None, gpu: bool) -> str:
        configured = self.config.image_id
        if isinstance(configured, Mapping):
            configured = configured.get(region)
        image = requested or configured
        if image:
            return str(image)
        return str(aws_api.find_image(self.ec2, region, gpu)["ImageId"])

    def _key_pair(self, region: str) -> str:
        """The configured key pair, or the identity's public key imported (idempotent)."""
        if self.config.key_name:
            return self.config.key_name
        with self._key_lock:
            public = _public_key(self.nodes.access.identity_file)
            name = "skystate-" + hashlib.md5(public.split()[1].encode()).hexdigest()[:12]
            aws_api.import_key_pair(self.ec2, region, name, public)
        return name


def default_key_path() -> str:
    return str(home() / "ssh" / "aws-key")


def _public_key(identity_file: str | None) -> str:
    """The ``.pub`` next to the identity file; the default key is made on first use."""
    path = Path(identity_file or default_key_path())
    pub = Path(f"{path}.pub")
    if not pub.exists() and str(path) == default_key_path():
        _make_default_key(path)
    if not pub.exists():
        raise ProviderError(f"aws: {pub} is missing (the public half of identity_file); "
                            "or set providers.aws.key_name")  # fmt: skip
    return pub.read_text().strip()


def _make_default_key(path: Path) -> None:
    """An RSA key (EC2 accepts RSA in every region), mode 0600."""
    import paramiko

    path.parent.mkdir(parents=True, exist_ok=True)
    key = paramiko.RSAKey.generate(3072)
    key.write_private_key_file(str(path))
    path.chmod(0o600)
    Path(f"{path}.pub").write_text(f"ssh-rsa {key.get_base64()} skystate\n")


def _assign_ranks(ec2: EC2, region: str, instances: Sequence[dict[str, Any]],
                  num_nodes: int) -> dict[str, int]:  # fmt: skip
    """Ranks of the cluster's instances; unranked ones (a crash) get the free ranks."""
    ranks: dict[str, int] = {}
    for instance in instances:
        rank = tags_of(instance).get(RANK_TAG)
        if rank is not None and rank.isdigit():
            ranks[instance["InstanceId"]] = int(rank)
    free = [r for r in range(max(num_nodes, len(instances))) if r not in ranks.values()]
    unranked = sorted((i for i in instances if i["InstanceId"] not in ranks),
                      key=lambda i: (str(i.get("LaunchTime")), i["InstanceId"]))  # fmt: skip
    for instance, rank in zip(unranked, free, strict=False):
        ec2.call(region, "create_tags", Resources=[instance["InstanceId"]],
                 Tags=[{"Key": RANK_TAG, "Value": str(rank)}])  # fmt: skip
        ranks[instance["InstanceId"]] = rank
    return ranks


def _observation(name: str, found: Sequence[tuple[str, dict[str, Any]]]) -> ClusterObservation:
    infos = []
    for fallback, (region, instance) in enumerate(sorted(found, key=lambda f: f[1]["InstanceId"])):
        tags = tags_of(instance)
        rank = tags.get(RANK_TAG, "")
        infos.append(NodeInfo(
            rank=int(rank) if rank.isdigit() else 1000 + fallback,
            node_id=instance["InstanceId"],
            ip=instance.get("PublicIpAddress") or instance.get("PrivateIpAddress") or "",
            state=_STATES.get(instance["State"]["Name"], NodeState.TERMINATED),
            ssh_port=22,
            extra={"region": region,
                   "zone": (instance.get("Placement") or {}).get("AvailabilityZone"),
                   "instance_type": instance.get("InstanceType"),
                   "private_ip": instance.get("PrivateIpAddress"),
                   "lifecycle": instance.get("InstanceLifecycle") or "on-demand"},
        ))  # fmt: skip
    infos.sort(key=lambda n: n.rank)
    head = next(i for _, i in found if i["InstanceId"] == infos[0].node_id)
    tags = tags_of(head)
    keep = {k: v for k, v in tags.items() if k not in (RANK_TAG, OFFER_TAG, "Name")}
    cluster_tags = {"cluster": name, "owner": tags.get(OWNER_TAG, ""), **keep}
    all_stopped = all(n.state is NodeState.STOPPED for n in infos)
    reason = (head.get("StateReason") or {}).get("Code")
    return ClusterObservation(
        name=name, owner=tags.get(OWNER_TAG), provider="aws", nodes=tuple(infos),
        offer=_offer(tags, head, infos[0]), tags=cluster_tags,
        stopped_by_autostop=all_stopped and reason == AUTOSTOP_REASON,
    )  # fmt: skip


def _offer(tags: Mapping[str, str], head: Mapping[str, Any], node: NodeInfo) -> Offer:
    """The offer recorded in the tags, else what the instance itself tells."""
    try:
        return Offer.from_dict(json.loads(tags[OFFER_TAG]))
    except (KeyError, ValueError, TypeError):
        zone = node.extra.get("zone")
        return Offer("aws", str(node.extra.get("region")), zone, str(head.get("InstanceType")),
                     {}, 0.0, 0.0, head.get("InstanceLifecycle") == "spot", 0.0)  # fmt: skip


def _cloud_nodes(observation: ClusterObservation) -> list[CloudNode]:
    return [
        CloudNode(rank=n.rank, node_id=n.node_id, public_ip=n.ip or None,
                  private_ip=n.extra.get("private_ip"),
                  places={"region": str(n.extra.get("region") or ""),
                          "zone": str(n.extra.get("zone") or "")})
        for n in observation.nodes
    ]  # fmt: skip


def _emulator_refusal(config: AWSConfig) -> str | None:
    """Why nodes must not be dialled: an emulator's endpoint without a test SSH target."""
    from urllib.parse import urlsplit

    if not config.endpoint_url or config.test_ssh_address:
        return None
    host = (urlsplit(config.endpoint_url).hostname or "").lower()
    if host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws")):
        return None  # AWS's own endpoints (FIPS, VPC endpoints): real instances
    return (f"providers.aws.endpoint_url {config.endpoint_url} is not AWS's own endpoint "
            "(an emulator such as moto): its instances' addresses are made up and are never "
            "dialled; set providers.aws.test_ssh_address to a reachable sshd (\"host:port\") "
            "for tests, or remove endpoint_url to use EC2")
