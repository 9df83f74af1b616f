"""The GCP provider against a local Compute REST stand-in and a real sshd.

The Compute API is ``gcp_fake.FakeCompute`` (a stdlib HTTP server answering the REST calls
the provider makes through the real ``google-cloud-compute`` client; no usable GCE
emulator exists). The "instances" have no machines, so ``test_ssh_address`` sends every
node's SSH to the session's test sshd on loopback: the runtime really runs there, one
folder and home per instance, and jobs run through the head's SSH runner.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sshd_fixture
from gcp_fake import FakeCompute
from helpers import run_cli, status_json, wait_job, wait_until
from sshd_fixture import SSHD

from skystate import runtime
from skystate.enums import JobStatus
from skystate.exceptions import ProviderError, ResourcesUnavailableError
from skystate.providers.base import JobRequest, NodeState, OfferQuery, Provider, ProvisionRequest
from skystate.providers.gcp import GCPProvider, instance_name, label_value
from skystate.providers.gcp_api import ComputeAPI
from skystate.providers.registry import Providers

sshd = sshd_fixture.sshd  # the session's test sshd (a fixture)
PROJECT = "test-proj"
OWNER_LABELS = {"skystate": "true", "skystate-owner": "me"}


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    compute = FakeCompute()
    compute.start()
    yield compute
    compute.stop()


def gcp_config(fake: FakeCompute, sshd: SSHD, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "project": PROJECT, "regions": ["us-central1", "us-east1"], "api_endpoint": fake.url,
        "ssh_user": sshd.user, "identity_file": str(sshd.key),
        "remote_dir": str(tmp_path / "nodes"),
        "test_ssh_address": f"{sshd.address}:{sshd.port}", **extra,
    }  # fmt: skip


@pytest.fixture
def provider(fake: FakeCompute, sshd: SSHD, home: Path, tmp_path: Path) -> Iterator[GCPProvider]:
    prov = Providers({"gcp": gcp_config(fake, sshd, tmp_path)}).get("gcp")
    assert isinstance(prov, GCPProvider) and isinstance(prov, Provider)
    yield prov
    for obs in [] if fake.stopped else prov.observe():
        prov.terminate(obs.name, obs.owner or "")
    prov.close()


def _request(prov: GCPProvider, name: str, num_nodes: int = 1, use_spot: bool = False,
             zone: str = "us-central1-a", **extra: Any) -> ProvisionRequest:
    query = OfferQuery(instance_type="e2-standard-2", use_spot=use_spot, zone=zone)
    (offer,) = prov.offers(query)
    return ProvisionRequest(name, "me", offer, num_nodes, **extra)


def _instances(fake: FakeCompute) -> dict[str, dict[str, Any]]:
    return {name: inst for (_, _, name), inst in fake.instances.items()}


def _owner_listing(fake: FakeCompute) -> list[str]:
    """Instances labelled with our owner, through the real client (list with label filter)."""
    return [i.name for _, i in ComputeAPI(PROJECT, fake.url).list_instances(OWNER_LABELS)]


# --- offers -----------------------------------------------------------------------------


def test_offers_come_from_the_catalog_in_the_configured_regions(provider: GCPProvider) -> None:
    offers = provider.offers(OfferQuery(accelerators={"T4": 1}))
    assert offers and {o.region for o in offers} <= {"us-central1", "us-east1"}
    assert all(o.zone and o.provider == "gcp" and o.accelerators == {"T4": 1} for o in offers)
    spot = provider.offers(OfferQuery(accelerators={"T4": 1}, use_spot=True))
    assert spot and all(o.use_spot for o in spot)
    assert min(o.hourly_price for o in spot) < min(o.hourly_price for o in offers)
    assert provider.offers(OfferQuery(accelerators={"T4": 1}, region="europe-west4")) == []


def test_names_and_labels_are_valid_for_gce() -> None:
    assert label_value("ml-team") == "ml-team"
    odd = label_value("John.Doe@Example")
    assert odd != label_value("john-doe-example") and len(odd) <= 63
    name = instance_name("a" * 63, "me", 12)
    assert len(name) <= 63 and name.endswith("-12") and name[0].isalpha()
    assert instance_name("train", "me", 0) != instance_name("train", "you", 0)


# --- lifecycle ----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_node_cluster_provision_stop_start_delete(
    provider: GCPProvider, fake: FakeCompute, sshd: SSHD, tmp_path: Path
) -> None:
    started_at = time.monotonic()
    obs = provider.provision(_request(provider, "train", 2, ports=("8080",),
                                      labels={"team": "ml"}, disk_size=50))
    print(f"provision 2 nodes: {time.monotonic() - started_at:.2f}s")
    assert obs.state is NodeState.RUNNING and obs.owner == "me" and obs.provider == "gcp"
    assert [n.rank for n in obs.nodes] == [0, 1] and obs.offer is not None
    assert obs.offer.instance_type == "e2-standard-2" and obs.tags["team"] == "ml"
    instances = _instances(fake)
    assert sorted(instances) == sorted(n.node_id for n in obs.nodes)
    for rank, node in enumerate(obs.nodes):
        inst = instances[node.node_id]
        assert inst["status"] == "RUNNING" and inst["zone"].endswith("/us-central1-a")
        assert inst["labels"] == {"skystate": "true", "skystate-cluster": "train",
                                  "skystate-owner": "me", "skystate-rank": str(rank),
                                  "team": "ml"}  # fmt: skip
        (disk,) = [d for (_, _, n), d in fake.disks.items() if n == node.node_id]
        assert disk["labels"] == inst["labels"] and disk["sizeGb"] == "50"
        keys = {i["key"]: i["value"] for i in inst["metadata"]["items"]}
        assert keys["ssh-keys"].startswith(f"{sshd.user}:ssh-ed25519 ")
        assert runtime.agent_pid(Path(node.extra["dir"])) is not None
    (rule,) = fake.firewalls.values()
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["8080"]}]
    assert rule["targetTags"] == instances[obs.nodes[0].node_id]["tags"]["items"]

    # Idempotent by labels: provisioning again inserts nothing and keeps the agents.
    inserts = sum(1 for m, p in fake.calls if m == "POST" and p.endswith("/instances"))
    head_dir = Path(obs.nodes[0].extra["dir"])
    pid = runtime.agent_pid(head_dir)
    again = provider.provision(_request(provider, "train", 2, zone="us-east1-b"))
    assert [n.node_id for n in again.nodes] == [n.node_id for n in obs.nodes]
    assert sum(1 for m, p in fake.calls if m == "POST" and p.endswith("/instances")) == inserts
    assert runtime.agent_pid(head_dir) == pid

    # A job on both nodes through the SSH runner.
    agent = provider.agent(obs)
    job = agent.submit(JobRequest("ranks", "echo rank=$SKYPILOT_NODE_RANK of $SKYPILOT_NUM_NODES",
                                  num_nodes=2))  # fmt: skip
    assert wait_job(agent, job, timeout=30) is JobStatus.SUCCEEDED
    log = agent.read_log(job)
    assert "rank=0 of 2" in log and "rank=1 of 2" in log

    # A controller that lost its database sees the cluster from labels alone.
    fresh = Providers({"gcp": gcp_config(fake, sshd, tmp_path)}).get("gcp")
    (seen,) = fresh.observe()
    assert (seen.name, seen.owner, seen.offer, len(seen.nodes)) == ("train", "me", obs.offer, 2)

    started_at = time.monotonic()
    stopped = provider.stop("train", "me")
    print(f"stop: {time.monotonic() - started_at:.2f}s")
    assert stopped.state is NodeState.STOPPED and not stopped.stopped_by_autostop
    assert {i["status"] for i in _instances(fake).values()} == {"TERMINATED"}
    assert runtime.agent_pid(head_dir) is None

    started_at = time.monotonic()
    started = provider.start("train", "me")
    print(f"start: {time.monotonic() - started_at:.2f}s")
    assert started.state is NodeState.RUNNING
    assert {i["status"] for i in _instances(fake).values()} == {"RUNNING"}
    assert runtime.agent_pid(head_dir) is not None

    started_at = time.monotonic()
    provider.terminate("train", "me")
    print(f"terminate: {time.monotonic() - started_at:.2f}s")
    assert fake.instances == {} and fake.disks == {} and fake.firewalls == {}
    assert _owner_listing(fake) == [] and provider.observe() == []
    provider.terminate("train", "me")  # nothing left: still fine


def test_spot_offer_sets_the_spot_provisioning_model(provider: GCPProvider,
                                                     fake: FakeCompute) -> None:
    from skystate.providers.gcp_instances import instance_body

    request = _request(provider, "cheap", use_spot=True)
    body = instance_body(provider.settings, request, "us-central1-a", 0)
    assert body["scheduling"]["provisioning_model"] == "SPOT"
    assert body["scheduling"]["instance_termination_action"] == "STOP"
    (t4,) = provider.offers(OfferQuery(accelerators={"T4": 1}, instance_type="n1-standard-4",
                                       zone="us-central1-a"))  # fmt: skip
    gpu = instance_body(provider.settings, ProvisionRequest("g", "me", t4, 1), "us-central1-a", 0)
    assert gpu["guest_accelerators"] == [{
        "accelerator_type": "zones/us-central1-a/acceleratorTypes/nvidia-tesla-t4",
        "accelerator_count": 1}]  # fmt: skip
    assert gpu["scheduling"]["on_host_maintenance"] == "TERMINATE"


@pytest.mark.slow
def test_spot_cluster_runs_as_spot(provider: GCPProvider, fake: FakeCompute) -> None:
    obs = provider.provision(_request(provider, "cheap", use_spot=True))
    inst = _instances(fake)[obs.nodes[0].node_id]
    assert inst["scheduling"]["provisioningModel"] == "SPOT"
    assert obs.offer is not None and obs.offer.use_spot
    # Another owner's cluster of the same name is never touched.
    other = ProvisionRequest("cheap", "you", obs.offer, 1)
    with pytest.raises(ProviderError, match="belongs to owner me"):
        provider.provision(other)
    with pytest.raises(ProviderError, match="belongs to owner me"):
        provider.terminate("cheap", "you")
    # Preempted (GCE stops a spot VM): observed stopped, and not by autostop.
    fake.set_status("us-central1-a", obs.nodes[0].node_id, "TERMINATED")
    (seen,) = provider.observe(["cheap"])
    assert seen.state is NodeState.STOPPED and not seen.stopped_by_autostop


# --- errors and failover --------------------------------------------------------------------


def test_capacity_error_is_a_typed_failover_error_and_leaves_nothing(
    provider: GCPProvider, fake: FakeCompute
) -> None:
    fake.fail("insert", zone="us-central1-a")  # the second node's insert succeeds
    with pytest.raises(ResourcesUnavailableError, match="ZONE_RESOURCE_POOL_EXHAUSTED"):
        provider.provision(_request(provider, "big", 2))
    assert fake.instances == {} and _owner_listing(fake) == []
    fake.fail("insert", code="QUOTA_EXCEEDED", http_status=403, on_request=True)
    with pytest.raises(ResourcesUnavailableError, match="us-central1-a.*QUOTA"):
        provider.provision(_request(provider, "big", 1))
    assert fake.instances == {}


def test_timeouts_and_5xx_are_transient_never_gone(provider: GCPProvider,
                                                   fake: FakeCompute) -> None:
    fake.fail("list", code="backendError", http_status=503, on_request=True)
    assert provider.observe() == []  # one 503 on a read: retried
    assert sum(1 for _, path in fake.calls if path.endswith("/aggregated/instances")) == 2
    fake.fail("list", code="backendError", http_status=500, on_request=True)
    with pytest.raises(ProviderError) as info:
        provider.observe()
    assert info.value.transient and not isinstance(info.value, ResourcesUnavailableError)
    fake.fail("insert", code="backendError", http_status=500, on_request=True)
    with pytest.raises(ProviderError) as info:
        provider.provision(_request(provider, "flaky"))
    assert info.value.transient and not isinstance(info.value, ResourcesUnavailableError)
    fake.stop()  # the API is unreachable
    with pytest.raises(ProviderError) as info:
        provider.observe()
    assert info.value.transient


@pytest.mark.slow
def test_exhausted_zone_fails_over_to_the_next(provider: GCPProvider, fake: FakeCompute,
                                               home: Path) -> None:
    from skystate.reconcile.imperative import ensure_cluster
    from skystate.reconcile.store import Store
    from skystate.spec.resources import Resources

    providers = Providers({"gcp": dataclasses.asdict(provider.settings)})
    resources = Resources.model_validate({"infra": "gcp/us-central1",
                                          "instance_type": "e2-standard-2"})
    fake.fail("insert", zone="us-central1-a")
    ensure_cluster("fo", resources, 2, retry_until_up=False, autostop=None, providers=providers)
    record = Store().cluster("fo")
    assert record is not None and record["status"] == "UP"
    assert record["offer"]["zone"] == "us-central1-b"
    assert {i["zone"].rsplit("/", 1)[1] for i in fake.instances.values()} == {"us-central1-b"}

    fake.fail("insert", times=100)  # every zone of the region is exhausted
    with pytest.raises(ResourcesUnavailableError) as info:
        ensure_cluster("fo2", resources, 1, retry_until_up=False, autostop=None,
                       providers=providers)
    history = info.value.failover_history
    zones = ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]
    assert [type(e) for e in history] == [ResourcesUnavailableError] * len(zones)
    assert [next(z for z in zones if z in str(e)) for e in history] == zones
    assert all("ZONE_RESOURCE_POOL_EXHAUSTED" in str(e) for e in history)
    assert Store().cluster("fo2") is None
    assert [o.name for o in provider.observe()] == ["fo"]
    for name in [o.name for o in providers.get("gcp").observe()]:
        providers.get("gcp").terminate(name, Store().cluster(name)["owner"])


# --- autostop from inside the cluster -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("down", [False, True])
def test_autostop_stops_or_deletes_the_instances_from_the_head(
    provider: GCPProvider, fake: FakeCompute, monkeypatch: pytest.MonkeyPatch, down: bool
) -> None:
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "60")  # forwarded to the agents
    obs = provider.provision(_request(provider, "idle", 2))
    provider.agent(obs).set_autostop(1, down=down, wait_for="jobs")
    if down:
        wait_until(lambda: fake.instances == {}, 40, "autodown")
        assert provider.observe() == [] and fake.disks == {}
        return
    wait_until(lambda: {i["status"] for i in _instances(fake).values()} == {"TERMINATED"},
               40, "autostop")  # fmt: skip
    (seen,) = provider.observe()
    assert seen.state is NodeState.STOPPED and seen.stopped_by_autostop
    started = provider.start("idle", "me")
    assert started.state is NodeState.RUNNING and not started.stopped_by_autostop
    assert "skystate-autostopped" not in _instances(fake)[obs.nodes[0].node_id]["labels"]


# --- end to end through the CLI -------------------------------------------------------------


@pytest.mark.slow
def test_apply_runs_a_job_on_a_fake_gce_cluster(
    fake: FakeCompute, sshd: SSHD, home: Path, tmp_path: Path
) -> None:
    state = tmp_path / "infra"
    state.mkdir()
    config = json.dumps(gcp_config(fake, sshd, tmp_path))
    (state / "skystate.yaml").write_text(f"kind: Project\nname: gcpteam\nproviders:\n"
                                         f"  gcp: {config}\n")  # fmt: skip
    (state / "train.yaml").write_text(textwrap.dedent("""\
        kind: Cluster
        name: gtrain
        num_nodes: 2
        resources: {infra: gcp/us-central1, cpus: 2, memory: 8+}
        ---
        kind: Job
        name: hello
        cluster: gtrain
        num_nodes: 2
        run: echo "hello from $SKYPILOT_NODE_RANK on gce"
        """))
    run_cli(home, "apply", str(state), "--yes", "--wait", timeout=180)
    status = status_json(home)
    (cluster,) = status["clusters"]
    assert (cluster["name"], cluster["status"]) == ("gtrain", "UP")
    (job,) = status["jobs"]
    assert job["status"] == "SUCCEEDED"
    log = run_cli(home, "logs", "gtrain", str(job["job_id"]), "--no-follow").stdout
    assert "hello from 0 on gce" in log and "hello from 1 on gce" in log
    owned = ComputeAPI(PROJECT, fake.url).list_instances({"skystate-owner": "gcpteam"})
    assert len(owned) == 2
    run_cli(home, "down", "gtrain", timeout=120)
    assert fake.instances == {} and status_json(home)["clusters"] == []
