"""The AWS provider against moto in server mode (a real HTTP EC2 API on loopback).

moto has no machines, so the nodes' sshd is the local test sshd: ``test_ssh_address``
points every instance's SSH address at it, and ``remote_dir`` with ``{host}`` (the
instance id) gives each instance its own node folder there, so the runtime, jobs and
the head's ``ssh`` runner to its workers run for real. Faults (capacity, throttling)
are injected into the provider's own boto3 client with botocore ``before-call`` event
handlers raising the ``ClientError`` EC2 would send — the request then never reaches
moto, which cannot produce these errors itself.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import moto_fixture
import pytest
import sshd_fixture
from helpers import cluster_state, run_cli, wait_job, wait_until
from moto_fixture import REGIONS, ec2
from sshd_fixture import SSHD

from skystate.enums import JobStatus
from skystate.exceptions import NotSupportedError, ProviderError, ResourcesUnavailableError
from skystate.providers import aws_api
from skystate.providers.aws import AWSProvider
from skystate.providers.base import (
    ClusterAgent,
    JobRequest,
    NodeState,
    OfferQuery,
    Provider,
    ProvisionRequest,
)
from skystate.providers.registry import Providers

sshd = sshd_fixture.sshd
moto_url = moto_fixture.moto_url
aws = moto_fixture.aws
OWNER_TAG, CLUSTER_TAG = "skystate-owner", "skystate-cluster"


def aws_config(url: str, sshd: SSHD, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "regions": REGIONS, "endpoint_url": url, "ssh_user": sshd.user,
        "identity_file": str(sshd.key), "remote_dir": str(tmp_path / "remote" / "{host}"),
        "isolate_home": True, "test_ssh_address": f"{sshd.address}:{sshd.port}", **extra,
    }  # fmt: skip


def _make(aws: str, sshd: SSHD, tmp_path: Path, **extra: Any) -> AWSProvider:
    provider = Providers({"aws": aws_config(aws, sshd, tmp_path, **extra)}).get("aws")
    assert isinstance(provider, AWSProvider)
    return provider


@pytest.fixture
def provider(aws: str, sshd: SSHD, home: Path, tmp_path: Path) -> Iterator[AWSProvider]:
    prov = _make(aws, sshd, tmp_path)
    yield prov
    for obs in prov.observe():
        prov.terminate(obs.name, obs.owner or "")
    prov.close()


def _offer(prov: AWSProvider, **query: Any) -> Any:
    return min(prov.offers(OfferQuery(**query)), key=lambda o: (o.hourly_price, o.infra))


def _inject(prov: AWSProvider, region: str, operation: str, code: str,
            times: int | None = None) -> list[int]:
    """Make ``operation`` fail with ``code`` in ``region`` (``times`` times); counts calls."""
    from botocore.exceptions import ClientError

    calls: list[int] = []

    def fail(**_: Any) -> None:
        calls.append(1)
        if times is None or len(calls) <= times:
            raise ClientError({"Error": {"Code": code, "Message": f"injected {code}"}},
                              operation)  # fmt: skip

    prov.ec2.client(region).meta.events.register(f"before-call.ec2.{operation}", fail)
    return calls


def _owned(url: str, owner: str) -> dict[str, list[Any]]:
    """Everything tagged with the owner that still exists, in every region."""
    found: dict[str, list[Any]] = {"instances": [], "volumes": [], "groups": []}
    tag = [{"Name": f"tag:{OWNER_TAG}", "Values": [owner]}]
    for region in REGIONS:
        client = ec2(url, region)
        live = [{"Name": "instance-state-name", "Values": aws_api_live()}]
        for r in client.describe_instances(Filters=tag + live)["Reservations"]:
            found["instances"] += r["Instances"]
        found["volumes"] += client.describe_volumes(Filters=tag)["Volumes"]
        found["groups"] += client.describe_security_groups(Filters=tag)["SecurityGroups"]
    return found


def aws_api_live() -> list[str]:
    from skystate.providers.aws import LIVE_STATES

    return list(LIVE_STATES)


# --- offers and errors (no machines) ---------------------------------------------------


def test_offers_come_from_the_catalog_in_the_configured_regions(
    aws: str, sshd: SSHD, home: Path, tmp_path: Path
) -> None:
    prov = _make(aws, sshd, tmp_path)
    assert isinstance(prov, Provider)
    offers = prov.offers(OfferQuery(accelerators={"T4": 1}))
    assert offers and {o.region for o in offers} <= set(REGIONS)
    assert {o.provider for o in offers} == {"aws"} and all(o.hourly_price > 0 for o in offers)
    assert prov.offers(OfferQuery(region="eu-west-1")) == []
    spot = prov.offers(OfferQuery(accelerators={"T4": 1}, use_spot=True))
    assert spot and all(o.use_spot for o in spot)


@pytest.mark.parametrize("code", sorted(aws_api.CAPACITY_CODES))
def test_capacity_and_quota_errors_mean_try_the_next_offer(code: str) -> None:
    from botocore.exceptions import ClientError

    def fail() -> None:
        raise ClientError({"Error": {"Code": code, "Message": "no"}}, "RunInstances")

    with pytest.raises(ResourcesUnavailableError, match=code):
        aws_api.retrying("us-east-1", "run_instances", fail)


def test_throttling_is_retried_with_backoff_then_transient(
    aws: str, sshd: SSHD, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aws_api, "BACKOFF_SECONDS", 0.01)
    prov = _make(aws, sshd, tmp_path, regions=["us-east-1"])
    calls = _inject(prov, "us-east-1", "DescribeInstances", "RequestLimitExceeded", times=2)
    assert prov.observe() == [] and len(calls) == 3  # two throttled, the third answered
    always = _inject(prov, "us-east-1", "DescribeInstances", "Throttling")
    with pytest.raises(ProviderError) as info:
        prov.observe()
    assert info.value.transient and "Throttling" in str(info.value)
    assert len(always) == aws_api.RETRIES
    denied = _inject(prov, "us-east-1", "DescribeVpcs", "UnauthorizedOperation")
    with pytest.raises(ProviderError) as info:
        aws_api.default_vpc(prov.ec2, "us-east-1")
    assert not info.value.transient and len(denied) == 1


# --- lifecycle against moto, nodes on the test sshd -----------------------------------


@pytest.mark.slow
def test_two_node_cluster_is_tagged_stopped_started_and_downed_without_leaks(
    provider: AWSProvider, aws: str, sshd: SSHD, tmp_path: Path
) -> None:
    offer = _offer(provider, cpus="2+", region="us-east-1")
    obs = provider.provision(ProvisionRequest("c1", "me", offer, 2, ports=("8080",),
                                              labels={"team": "ml"}))  # fmt: skip
    assert obs.state is NodeState.RUNNING and obs.owner == "me" and obs.offer == offer
    assert [n.rank for n in obs.nodes] == [0, 1] and obs.tags["team"] == "ml"
    client = ec2(aws, "us-east-1")
    ids = [n.node_id for n in obs.nodes]
    instances = [i for r in client.describe_instances(InstanceIds=ids)["Reservations"]
                 for i in r["Instances"]]  # fmt: skip
    for instance in instances:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags[CLUSTER_TAG] == "c1" and tags[OWNER_TAG] == "me" and tags["team"] == "ml"
        assert instance["InstanceType"] == offer.instance_type and instance["KeyName"]
        behaviour = client.describe_instance_attribute(
            InstanceId=instance["InstanceId"], Attribute="instanceInitiatedShutdownBehavior")
        assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "stop"
    volumes = client.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": ids}])["Volumes"]
    assert len(volumes) >= 2
    for volume in volumes:
        tags = {t["Key"]: t["Value"] for t in volume.get("Tags") or []}
        assert tags[CLUSTER_TAG] == "c1" and tags[OWNER_TAG] == "me"
    (group,) = _owned(aws, "me")["groups"]
    assert {(p["FromPort"], p["ToPort"]) for p in group["IpPermissions"]} == {(22, 22),
                                                                              (8080, 8080)}

    # idempotent by tags: the same cluster again is the same instances; a fresh provider
    # (no memory at all) sees it; another owner may not touch it
    assert provider.provision(ProvisionRequest("c1", "me", offer, 2)).nodes == obs.nodes
    assert len(_owned(aws, "me")["instances"]) == 2
    assert [o.name for o in _make(aws, sshd, tmp_path).observe()] == ["c1"]
    with pytest.raises(ProviderError, match="belongs to owner me"):
        provider.stop("c1", "bob")

    agent = provider.agent(obs)
    assert isinstance(agent, ClusterAgent)
    stopped = provider.stop("c1", "me")
    assert stopped.state is NodeState.STOPPED and not stopped.stopped_by_autostop
    assert len(_owned(aws, "me")["instances"]) == 2
    started = provider.start("c1", "me")
    assert started.state is NodeState.RUNNING and [n.node_id for n in started.nodes] == ids
    job = provider.agent(started).submit(JobRequest(name="after-start", run="echo back"))
    assert wait_job(provider.agent(started), job) is JobStatus.SUCCEEDED

    provider.terminate("c1", "me")
    assert provider.observe() == []
    assert _owned(aws, "me") == {"instances": [], "volumes": [], "groups": []}
    provider.terminate("c1", "me")  # nothing left: still fine


@pytest.mark.slow
def test_instances_left_by_a_crash_are_adopted_not_duplicated(
    provider: AWSProvider, aws: str
) -> None:
    """A provision killed after RunInstances (instances tagged, ranks not yet) is resumed."""
    offer = _offer(provider, cpus="2+", region="us-east-1")
    tags = [{"Key": CLUSTER_TAG, "Value": "c2"}, {"Key": OWNER_TAG, "Value": "me"}]
    image = aws_api.find_image(provider.ec2, "us-east-1", gpu=False)["ImageId"]
    ec2(aws, "us-east-1").run_instances(
        ImageId=image, InstanceType=offer.instance_type, MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])  # fmt: skip
    obs = provider.provision(ProvisionRequest("c2", "me", offer, 2))
    assert [n.rank for n in obs.nodes] == [0, 1] and obs.state is NodeState.RUNNING
    assert len(_owned(aws, "me")["instances"]) == 2


@pytest.mark.slow
def test_spot_cluster_uses_market_options_and_cannot_be_stopped(
    provider: AWSProvider, aws: str
) -> None:
    offer = _offer(provider, cpus="2+", use_spot=True, region="us-west-2")
    obs = provider.provision(ProvisionRequest("spot", "me", offer, 1))
    (instance,) = _owned(aws, "me")["instances"]
    assert instance["InstanceLifecycle"] == "spot" and obs.offer and obs.offer.use_spot
    behaviour = ec2(aws, "us-west-2").describe_instance_attribute(
        InstanceId=instance["InstanceId"], Attribute="instanceInitiatedShutdownBehavior")
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    with pytest.raises(NotSupportedError, match="spot"):
        provider.stop("spot", "me")


@pytest.mark.slow
def test_capacity_error_in_the_first_region_fails_over_to_the_next(
    provider: AWSProvider, aws: str, home: Path
) -> None:
    from skystate.reconcile.imperative import provision_with_failover, sdk_cluster_spec
    from skystate.reconcile.store import Store
    from skystate.spec.resources import Resources

    resources = Resources.model_validate({"infra": "aws", "instance_type": "m5.large"})
    providers = Providers({"aws": dict(provider.config.model_dump())})
    prov = providers.get("aws")
    assert isinstance(prov, AWSProvider)
    east = _inject(prov, "us-east-1", "RunInstances", "InsufficientInstanceCapacity")
    offers = prov.offers(OfferQuery(instance_type="m5.large"))
    east_offers = [o for o in offers if o.region == "us-east-1"]
    assert east_offers and len(offers) > len(east_offers)

    spec = sdk_cluster_spec("fo", resources, 1, None)
    record = provision_with_failover(Store(), spec, resources, providers, retry_until_up=False)
    assert record["status"] == "UP" and record["offer"]["region"] == "us-west-2"
    assert len(east) == len(east_offers)  # every us-east-1 zone was tried first
    owned = _owned(aws, spec["owner"])
    assert [i["Placement"]["AvailabilityZone"][:-1] for i in owned["instances"]] == ["us-west-2"]
    assert [g["GroupName"] for g in owned["groups"]] == ["skystate-fo"]  # none left in east
    prov.terminate("fo", spec["owner"])
    assert _owned(aws, spec["owner"]) == {"instances": [], "volumes": [], "groups": []}

    west = _inject(prov, "us-west-2", "RunInstances", "InsufficientInstanceCapacity")
    with pytest.raises(ResourcesUnavailableError) as info:
        provision_with_failover(Store(), {**spec, "name": "fo2"}, resources, providers,
                                retry_until_up=False)  # fmt: skip
    history = info.value.failover_history
    assert len(history) == len(offers) == len(east) - len(east_offers) + len(west)
    assert all("InsufficientInstanceCapacity" in str(e) for e in history)
    assert [str(e).split(":")[0] for e in history] == [f"aws/{o.region}" for o in
                                                       sorted(offers, key=lambda o: o.infra)]
    assert _owned(aws, spec["owner"]) == {"instances": [], "volumes": [], "groups": []}


# --- autostop from inside the node ------------------------------------------------------

# What EC2 does when a guest powers off: stop or terminate, as the instance's
# InstanceInitiatedShutdownBehavior says (run on the "node" in place of `shutdown`).
_EC2_SHUTDOWN = (
    "import sys, boto3\n"
    "iid, region, url = sys.argv[1:4]\n"
    "c = boto3.client('ec2', region_name=region, endpoint_url=url,\n"
    "                 aws_access_key_id='testing', aws_secret_access_key='testing')\n"
    "b = c.describe_instance_attribute(InstanceId=iid,\n"
    "    Attribute='instanceInitiatedShutdownBehavior')['InstanceInitiatedShutdownBehavior']\n"
    "(c.terminate_instances if b['Value'] == 'terminate' else c.stop_instances)(\n"
    "    InstanceIds=[iid])\n"
)


@pytest.mark.slow
def test_autostop_powers_the_nodes_off_and_autodown_terminates_them(
    aws: str, sshd: SSHD, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "60")  # forwarded to the agents
    shutdown = [sys.executable, "-c", _EC2_SHUTDOWN, "{instance_id}", "{region}", aws]
    prov = _make(aws, sshd, tmp_path, shutdown_command=shutdown)
    offer = _offer(prov, cpus="2+", region="us-east-1")
    obs = prov.provision(ProvisionRequest("auto", "me", offer, 2))
    def state() -> NodeState:
        return cluster_state(prov, "auto")
    prov.agent(obs).set_autostop(1, False, "jobs")
    wait_until(lambda: state() is NodeState.STOPPED, timeout=15, what="autostop")
    assert {n.state for n in prov.observe(["auto"])[0].nodes} == {NodeState.STOPPED}

    restarted = prov.start("auto", "me")
    prov.agent(restarted).set_autostop(1, True, "jobs")
    for node in restarted.nodes:
        attribute = ec2(aws, "us-east-1").describe_instance_attribute(
            InstanceId=node.node_id, Attribute="instanceInitiatedShutdownBehavior")
        assert attribute["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    wait_until(lambda: state() is NodeState.TERMINATED, timeout=15, what="autodown")
    assert _owned(aws, "me")["instances"] == []
    prov.terminate("auto", "me")  # the group
    prov.close()


# --- end to end: a state directory applied to a "moto" cluster -------------------------


@pytest.mark.slow
def test_state_dir_job_runs_on_an_aws_cluster(
    aws: str, sshd: SSHD, home: Path, tmp_path: Path
) -> None:
    import json

    state = tmp_path / "state"
    state.mkdir()
    config = aws_config(aws, sshd, tmp_path)
    (state / "skystate.yaml").write_text(
        "kind: Project\nname: cloudy\nproviders:\n  aws: " + json.dumps(config) + "\n")
    (state / "c.yaml").write_text(
        "kind: Cluster\nname: awsc\nnum_nodes: 2\nresources: {infra: aws/us-west-2, cpus: 2+}\n"
        "---\nkind: Job\nname: hi\ncluster: awsc\nnum_nodes: 2\n"
        "run: echo on aws rank $SKYPILOT_NODE_RANK of $SKYPILOT_NUM_NODES\n")
    plan = run_cli(home, "plan", str(state), timeout=60).stdout
    assert "aws/us-west-2" in plan
    run_cli(home, "apply", str(state), "--yes", "--wait", timeout=180)
    log = run_cli(home, "logs", "awsc", "1", timeout=60).stdout
    assert "on aws rank 0 of 2" in log and "on aws rank 1 of 2" in log
    assert len(_owned(aws, "cloudy")["instances"]) == 2
    run_cli(home, "down", "awsc", timeout=120)
    assert _owned(aws, "cloudy") == {"instances": [], "volumes": [], "groups": []}
