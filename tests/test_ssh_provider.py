"""The SSH provider against a real sshd on loopback: lifecycle, jobs, cancel, autostop.

Two "hosts" on one machine: the pool lists ``127.0.0.1`` and ``localhost`` on the test
sshd's port (distinct hosts to skystate, separate folders via ``{host}`` in
``remote_dir``), so multi-node jobs run through the head's ``ssh`` runner for real.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sshd_fixture
from helpers import cluster_state, job_status, wait_job, wait_until
from sshd_fixture import SSHD

from skystate import runtime
from skystate.enums import JobStatus
from skystate.exceptions import (
    ClusterDoesNotExist,
    ProviderError,
    ResourcesMismatchError,
    ResourcesUnavailableError,
)
from skystate.providers.base import (
    ClusterAgent,
    JobRequest,
    NodeState,
    OfferQuery,
    Provider,
    ProvisionRequest,
)
from skystate.providers.registry import Providers
from skystate.providers.ssh import SSHProvider
from skystate.runtime.procs import group_members

sshd = sshd_fixture.sshd  # the session's test sshd (a fixture)


def pool_config(sshd: SSHD, remote: Path, hosts: list[str] | None = None, **extra: Any) -> dict:
    return {
        "hosts": hosts or [sshd.address],
        "port": sshd.port,
        "user": sshd.user,
        "identity_file": str(sshd.key),
        "remote_dir": str(remote / "{host}"),
        "isolate_home": True,
        "accelerators": {"A100": 4},
        **extra,
    }


def _make(sshd: SSHD, tmp_path: Path, **extra: Any) -> SSHProvider:
    lab = pool_config(sshd, tmp_path / "remote", **extra)
    provider = Providers({"ssh": {"pools": {"lab": lab}}}).get("ssh")
    assert isinstance(provider, SSHProvider)
    return provider


@pytest.fixture
def provider(sshd: SSHD, home: Path, tmp_path: Path) -> Iterator[SSHProvider]:
    prov = _make(sshd, tmp_path, hosts=[sshd.address, "localhost"])
    yield prov
    for obs in prov.observe():
        prov.terminate(obs.name, obs.owner or "")
    prov.close()


def _provision(prov: SSHProvider, name: str = "c1", num_nodes: int = 1, owner: str = "me"):
    offer = prov.offers(OfferQuery(num_nodes=num_nodes))[0]
    return prov.provision(ProvisionRequest(name, owner, offer, num_nodes))


# --- offers and lifecycle --------------------------------------------------------------


def test_offers_follow_the_pool(provider: SSHProvider) -> None:
    assert isinstance(provider, Provider)
    (offer,) = provider.offers(OfferQuery(accelerators={"a100": 2}, num_nodes=2))
    assert (offer.provider, offer.region, offer.instance_type) == ("ssh", "lab", "ssh-host")
    assert offer.accelerators == {"A100": 4} and offer.hourly_price == 0.0 and offer.cpus >= 1
    assert offer.infra == "ssh/lab"
    assert provider.offers(OfferQuery()) != []  # no accelerators asked: any pool fits
    assert provider.offers(OfferQuery(accelerators={"H100": 1})) == []
    assert provider.offers(OfferQuery(accelerators={"A100": 8})) == []
    assert provider.offers(OfferQuery(num_nodes=3)) == []
    assert provider.offers(OfferQuery(use_spot=True)) == []
    assert provider.offers(OfferQuery(region="other")) == []
    assert provider.offers(OfferQuery(cpus="100000+")) == []


@pytest.mark.slow
def test_provision_observe_stop_start_terminate(
    provider: SSHProvider, sshd: SSHD, tmp_path: Path
) -> None:
    started = time.monotonic()
    obs = _provision(provider, "c1")
    provision_seconds = time.monotonic() - started
    assert obs.state is NodeState.RUNNING and obs.owner == "me" and obs.provider == "ssh"
    (node,) = obs.nodes
    assert (node.rank, node.ip, node.ssh_port) == (0, "127.0.0.1", sshd.port)
    head = tmp_path / "remote" / "127.0.0.1" / "c1"
    assert (head / "tags.json").exists() and (head / "pkg" / "skystate" / "runtime").is_dir()
    pid = runtime.agent_pid(head)
    assert pid is not None
    print(f"provision: {provision_seconds:.2f}s")

    # Idempotent: the same cluster again is the same hosts and the same agent.
    assert _provision(provider, "c1").nodes == obs.nodes and runtime.agent_pid(head) == pid
    # The allocation is on the hosts: a controller with no memory of it sees it.
    fresh = _make(sshd, tmp_path, hosts=[sshd.address, "localhost"])
    assert [o.name for o in fresh.observe()] == ["c1"]
    fresh.close()
    # One free host left (localhost): a 2-node cluster cannot be placed.
    assert provider.offers(OfferQuery(num_nodes=2)) == []
    offer = provider.offers(OfferQuery())[0]
    with pytest.raises(ResourcesUnavailableError, match="needs 2 host"):
        provider.provision(ProvisionRequest("c2", "me", offer, 2))
    with pytest.raises(ProviderError, match="belongs to owner me"):
        provider.provision(ProvisionRequest("c1", "bob", offer, 1))

    stopped = provider.stop("c1", "me")
    assert stopped.state is NodeState.STOPPED and not stopped.stopped_by_autostop
    assert head.is_dir() and runtime.agent_pid(head) is None
    assert provider.offers(OfferQuery(num_nodes=2)) == []  # stopped: hosts stay its own

    assert provider.start("c1", "me").state is NodeState.RUNNING
    provider.terminate("c1", "me")
    assert provider.observe() == [] and not head.exists()
    provider.terminate("c1", "me")  # nothing left: still fine
    with pytest.raises(ClusterDoesNotExist):
        provider.start("c1", "me")
    assert provider.offers(OfferQuery(num_nodes=2)) != []  # both hosts released


def test_unreachable_host_is_a_transient_error_not_a_gone_cluster(
    sshd: SSHD, home: Path, tmp_path: Path
) -> None:
    prov = _make(sshd, tmp_path, hosts=[sshd.address, "127.0.0.1:1"])
    with pytest.raises(ProviderError) as info:
        prov.observe()
    assert info.value.transient and "127.0.0.1:1" in str(info.value)
    assert prov.offers(OfferQuery()) != []  # the reachable host still offers
    prov.close()


def test_changed_host_key_is_refused(sshd: SSHD, home: Path, tmp_path: Path) -> None:
    known = home / "ssh" / "known_hosts"
    known.parent.mkdir(parents=True)
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIOiKkSg1MUoZ/ufq4NLB4pGtb79fCkI9TdbWSXUfvRWl"
    known.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {other}\n")
    prov = _make(sshd, tmp_path)
    with pytest.raises(ProviderError, match="host key changed") as info:
        prov.observe()
    assert not info.value.transient
    prov.close()
    insecure = _make(sshd, tmp_path, insecure_host_keys=True)
    assert insecure.observe() == []
    insecure.close()


# --- jobs ------------------------------------------------------------------------------


@pytest.mark.slow
def test_job_with_setup_run_envs_workdir_succeeds(provider: SSHProvider, tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "data.txt").write_text("from-workdir\n")
    (tmp_path / "mounted.txt").write_text("mounted\n")
    agent = provider.agent(_provision(provider, "c1"))
    assert isinstance(agent, ClusterAgent)
    job = JobRequest(
        name="hello",
        setup="echo setting up",
        run='echo "run $GREETING $(cat data.txt) $(cat ~/m.txt) gpus=$CUDA_VISIBLE_DEVICES '
        'rank=$SKYPILOT_NODE_RANK/$SKYSTATE_NUM_NODES"',
        envs={"GREETING": "hi there"},
        workdir=str(workdir),
        file_mounts={"~/m.txt": str(tmp_path / "mounted.txt")},
        accelerators={"A100": 2},
    )
    started = time.monotonic()
    job_id = agent.submit(job)
    print(f"submit with workdir over ssh: {time.monotonic() - started:.3f}s")
    assert wait_job(agent, job_id) is JobStatus.SUCCEEDED
    log = agent.read_log(job_id)
    assert "setting up" in log
    assert "run hi there from-workdir mounted gpus=0,1 rank=0/1" in log
    record = agent.queue([job_id])[0]
    assert record["job_name"] == "hello" and record["resources"] == "1x[A100:2]"
    assert record["log_path"] == agent.log_path(job_id)

    bad_run = agent.submit(JobRequest(name="r", run="echo oops; exit 3"))
    bad_setup = agent.submit(JobRequest(name="s", setup="exit 4", run="echo never"))
    assert wait_job(agent, bad_run) is JobStatus.FAILED
    assert wait_job(agent, bad_setup) is JobStatus.FAILED_SETUP
    assert "oops" in agent.read_log(bad_run) and "never" not in agent.read_log(bad_setup)
    with pytest.raises(ResourcesMismatchError, match="can never fit"):
        agent.submit(JobRequest(name="big", run="true", accelerators={"A100": 5}))
    started = time.monotonic()
    agent.submit(JobRequest(name="quick", run="true"))
    print(f"submit over ssh: {time.monotonic() - started:.3f}s")


@pytest.mark.slow
def test_gpu_jobs_share_four_devices_without_overlap(provider: SSHProvider, tmp_path: Path) -> None:
    agent = provider.agent(_provision(provider, "c1"))
    record = tmp_path / "windows"
    record.mkdir()
    run = (
        f's=$(date +%s.%N); sleep 0.25; echo "$s $(date +%s.%N) $CUDA_VISIBLE_DEVICES" '
        f"> {record}/$SKYPILOT_JOB_ID"
    )
    ids = [agent.submit(JobRequest(name=f"j{i}", run=run, accelerators={"A100": 1}))
           for i in range(20)]  # fmt: skip
    most_running = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        statuses = [j["status"] for j in agent.queue(ids)]
        most_running = max(most_running, statuses.count(JobStatus.RUNNING))
        if all(s.is_terminal() for s in statuses):
            break
    assert all(j["status"] is JobStatus.SUCCEEDED for j in agent.queue(ids))
    assert most_running <= 4  # polled: a loaded machine may see none running at a poll
    windows = [(float(a), float(b), dev) for a, b, dev in
               (p.read_text().split() for p in record.iterdir())]  # fmt: skip
    assert len(windows) == 20 and {w[2] for w in windows} <= {"0", "1", "2", "3"}
    assert max(sum(s <= t < e for s, e, _ in windows) for t, _, _ in windows) <= 4
    for i, (s1, e1, d1) in enumerate(windows):
        for s2, e2, d2 in windows[i + 1 :]:
            if s1 < e2 and s2 < e1:  # overlapping in time
                assert d1 != d2


def _remote_pids(marker: str) -> list[int]:
    pids = []
    for pid in (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ:
            pids.append(pid)
    return pids


@pytest.mark.slow
def test_two_node_job_runs_on_the_worker_and_cancel_ends_it_there(
    provider: SSHProvider, tmp_path: Path
) -> None:
    obs = _provision(provider, "c1", num_nodes=2)
    assert [(n.rank, n.ip) for n in obs.nodes] == [(0, "127.0.0.1"), (1, "localhost")]
    agent = provider.agent(obs)
    job_id = agent.submit(JobRequest(
        name="mn", num_nodes=2, run='echo "hello from $SKYPILOT_NODE_RANK $HOME"; '
        'echo "ips $(echo $SKYPILOT_NODE_IPS)"'))  # fmt: skip
    assert wait_job(agent, job_id) is JobStatus.SUCCEEDED
    log = agent.read_log(job_id)
    assert "(rank 0) hello from 0 " in log and "remote/127.0.0.1/c1/home" in log
    assert "(rank 1) hello from 1 " in log and "remote/localhost/c1/home" in log
    assert "(rank 1) ips 127.0.0.1 localhost" in log
    failing = agent.submit(
        JobRequest(name="mnf", num_nodes=2, run='[ "$SKYPILOT_NODE_RANK" = 1 ] && exit 5; sleep 30')
    )
    assert wait_job(agent, failing) is JobStatus.FAILED
    assert agent.run_setup("echo setup on $SKYPILOT_NODE_RANK", {}, None) == 0
    assert agent.run_setup('[ "$SKYPILOT_NODE_RANK" = 1 ] && exit 7; true', {}, None) == 7
    mount = tmp_path / "m.txt"  # file mounts reach both nodes before the setup runs
    mount.write_text("mounted\n")
    assert agent.run_setup("grep -q mounted ~/m.txt", {}, None, {"~/m.txt": str(mount)}) == 0

    # Cancel: the processes of both ranks end, the worker's (reached over ssh) included.
    marker = f"SKYSTATE_TEST_MARK_{time.time_ns()}"
    job_id = agent.submit(JobRequest(name="long", num_nodes=2, envs={marker: "1"},
                                     run="sleep 60 & sleep 60; wait"))  # fmt: skip
    wait_until(lambda: job_status(agent, job_id) is JobStatus.RUNNING, what="RUNNING")
    wait_until(lambda: len(_remote_pids(marker)) >= 6, what="job processes on both nodes")
    head = tmp_path / "remote" / "127.0.0.1" / "c1"
    pgid = int(runtime.queue(head, [job_id], detailed=True)[0]["pid"])
    assert agent.cancel([job_id]) == [job_id]
    assert group_members(pgid) == []
    wait_until(lambda: _remote_pids(marker) == [], timeout=5, what="worker processes to end")
    assert job_status(agent, job_id) is JobStatus.CANCELLED


# --- autostop --------------------------------------------------------------------------


@pytest.mark.slow
def test_autostop_stops_the_cluster(
    provider: SSHProvider, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "60")  # forwarded to the agents it starts
    agent = provider.agent(_provision(provider, "c1", num_nodes=2))
    # The job first: a cluster idle for the whole (1 s) window before a job arrives may
    # rightly stop, which a loaded machine's slow submit made happen (the job CANCELLED).
    job_id = agent.submit(JobRequest(name="work", run="sleep 1"))
    agent.set_autostop(1, False, "jobs_and_ssh")
    assert wait_job(agent, job_id) is JobStatus.SUCCEEDED
    wait_until(lambda: cluster_state(provider, "c1") is NodeState.STOPPED, timeout=60,
               what="autostop")
    obs = provider.observe(["c1"])[0]
    assert obs.stopped_by_autostop and {n.state for n in obs.nodes} == {NodeState.STOPPED}
    restarted = provider.start("c1", "me")
    assert restarted.state is NodeState.RUNNING and not restarted.stopped_by_autostop

    provider.terminate("c1", "me")
    # Autodown on a fresh cluster: a restarted one keeps its old setting (stop after 1 s
    # idle) until the new one arrives, which a loaded machine may deliver too late.
    provider.agent(_provision(provider, "c2", num_nodes=2)).set_autostop(1, True, "jobs")
    wait_until(lambda: provider.observe(["c2"]) == [], timeout=60, what="autodown")
    assert not (tmp_path / "remote" / "localhost" / "c2").exists()


@pytest.mark.slow
def test_state_dir_ssh_cluster_is_reachable_from_anywhere(sshd: SSHD, home: Path,
                                                          tmp_path: Path) -> None:
    """A cluster applied from a state dir is queried and downed with no config.yaml:
    its record carries the pool settings it was created with."""
    import json

    from helpers import run_cli

    import skystate as sky

    state = tmp_path / "state"
    state.mkdir()
    pool = pool_config(sshd, tmp_path / "remote")
    (state / "skystate.yaml").write_text(
        "kind: Project\nname: lab\nproviders:\n  ssh:\n    pools:\n      lab: "
        + json.dumps(pool) + "\n")
    (state / "c.yaml").write_text(
        "kind: Cluster\nname: sshc\nresources: {infra: ssh/lab}\n---\n"
        "kind: Job\nname: hi\ncluster: sshc\nrun: echo over ssh\n")
    run_cli(home, "apply", str(state), "--yes", "--wait", timeout=120)
    assert not (home / "config.yaml").exists()
    [job] = sky.get(sky.queue("sshc"))
    assert job["status"] is JobStatus.SUCCEEDED
    assert "over ssh" in run_cli(home, "logs", "sshc", "1", timeout=60).stdout
    run_cli(home, "down", "sshc", timeout=60)
    assert sky.get(sky.status(["sshc"])) == []
