"""The local provider end to end: real node folders, real agent and job processes."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import cluster_state, job_status, wait_job, wait_until

from skystate.enums import JobStatus
from skystate.exceptions import ProviderError, ResourcesMismatchError, ResourcesUnavailableError
from skystate.providers.base import (
    ClusterAgent,
    JobRequest,
    NodeState,
    OfferQuery,
    Provider,
    ProvisionRequest,
)
from skystate.providers.local import LocalProvider
from skystate.providers.local_nodes import write_tags
from skystate.runtime.procs import group_members


@pytest.fixture
def provider(home: Path) -> Iterator[LocalProvider]:
    prov = LocalProvider(accelerators={"A100": 8}, cpus_per_node=4)
    yield prov
    for obs in prov.observe():
        prov.terminate(obs.name, obs.owner or "")


def _provision(
    prov: LocalProvider,
    name: str = "c1",
    accelerators: dict[str, int] | None = None,
    num_nodes: int = 1,
    owner: str = "me",
):
    offer = prov.offers(OfferQuery(accelerators=accelerators or {}, num_nodes=num_nodes))[0]
    return prov.provision(ProvisionRequest(name, owner, offer, num_nodes))


# --- offers and inventory ------------------------------------------------------------


def test_offers_match_the_machine_and_inventory(provider: LocalProvider) -> None:
    assert isinstance(provider, Provider)
    (offer,) = provider.offers(OfferQuery(accelerators={"a100": 2}, cpus="2+"))
    assert (offer.provider, offer.instance_type, offer.hourly_price) == ("local", "local", 0.0)
    assert offer.accelerators == {"A100": 2} and offer.cpus == 4
    assert provider.offers(OfferQuery(cpus="2"))[0].cpus == 2
    assert provider.offers(OfferQuery(accelerators={"H100": 1})) == []
    assert provider.offers(OfferQuery(accelerators={"A100": 9})) == []
    assert provider.offers(OfferQuery(accelerators={"A100": 4}, num_nodes=3)) == []
    assert provider.offers(OfferQuery(cpus="5+")) == []
    assert provider.offers(OfferQuery(memory="100000+")) == []
    assert provider.offers(OfferQuery(region="us-east-1")) == []
    assert provider.offers(OfferQuery(use_spot=True))[0].use_spot is True


def test_inventory_limit_raises_resources_unavailable(provider: LocalProvider) -> None:
    _provision(provider, "c1", {"A100": 6})
    offer = provider.offers(OfferQuery(accelerators={"A100": 4}))[0]
    with pytest.raises(ResourcesUnavailableError, match="only A100:2 of 8 are free"):
        provider.provision(ProvisionRequest("c2", "me", offer, 1))
    assert provider.observe(["c2"]) == []


# --- lifecycle -------------------------------------------------------------------------


@pytest.mark.slow
def test_provision_observe_stop_start_terminate(provider: LocalProvider, home: Path) -> None:
    obs = _provision(provider, "c1", {"A100": 2}, num_nodes=2)
    assert obs.state is NodeState.RUNNING and obs.owner == "me"
    assert [(n.rank, n.node_id, n.ip) for n in obs.nodes] == [
        (0, "node-0", "127.0.0.1"),
        (1, "node-1", "127.0.0.1"),
    ]
    assert obs.offer is not None and obs.offer.accelerators == {"A100": 2}
    assert (home / "local" / "c1" / "node-1" / "tags.json").exists()

    stopped = provider.stop("c1", "me")
    assert stopped.state is NodeState.STOPPED and not stopped.stopped_by_autostop
    assert (home / "local" / "c1" / "node-0").is_dir()

    started = provider.start("c1", "me")
    assert started.state is NodeState.RUNNING

    provider.terminate("c1", "me")
    assert provider.observe() == [] and not (home / "local" / "c1").exists()
    provider.terminate("c1", "me")  # nothing left: still fine


@pytest.mark.slow
def test_provision_is_idempotent_and_adopts_crash_leftovers(
    provider: LocalProvider, home: Path
) -> None:
    first = _provision(provider, "c1")
    pid = json.loads((home / "local/c1/node-0/runtime/agent.pid").read_text())
    again = _provision(provider, "c1")
    assert again.nodes == first.nodes
    assert json.loads((home / "local/c1/node-0/runtime/agent.pid").read_text()) == pid

    # A crash after tagging node 0 but before starting anything: adopted, not duplicated.
    offer = provider.offers(OfferQuery())[0]
    tags = {"provider": "local", "cluster": "c2", "owner": "me", "rank": 0, "num_nodes": 1,
            "created_at": 1.0, "offer": offer.to_dict(), "labels": {}}  # fmt: skip
    write_tags(home / "local" / "c2", 0, tags)
    assert provider.observe(["c2"])[0].state is NodeState.STOPPED
    obs = provider.provision(ProvisionRequest("c2", "me", offer, 1))
    assert obs.state is NodeState.RUNNING and [n.node_id for n in obs.nodes] == ["node-0"]
    assert json.loads((home / "local/c2/node-0/tags.json").read_text())["created_at"] == 1.0


def test_another_owners_cluster_is_refused(provider: LocalProvider) -> None:
    _provision(provider, "c1", owner="alice")
    with pytest.raises(ProviderError, match="belongs to owner alice"):
        _provision(provider, "c1", owner="bob")
    with pytest.raises(ProviderError):
        provider.terminate("c1", "bob")


# --- jobs ------------------------------------------------------------------------------


@pytest.mark.slow
def test_job_with_setup_run_envs_workdir_succeeds(provider: LocalProvider, tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "data.txt").write_text("from-workdir\n")
    (tmp_path / "mounted.txt").write_text("mounted\n")
    agent = provider.agent(_provision(provider, "c1", {"A100": 2}))
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
    job_id = agent.submit(job)
    assert wait_job(agent, job_id) is JobStatus.SUCCEEDED
    log = agent.read_log(job_id)
    assert "setting up" in log
    assert "run hi there from-workdir mounted gpus=0,1 rank=0/1" in log
    record = agent.queue([job_id])[0]
    assert record["job_name"] == "hello" and record["resources"] == "1x[A100:2]"
    assert record["start_at"] and record["end_at"] and record["log_path"] == agent.log_path(job_id)


@pytest.mark.slow
def test_failing_run_and_failing_setup(provider: LocalProvider) -> None:
    agent = provider.agent(_provision(provider, "c1"))
    bad_run = agent.submit(JobRequest(name="r", run="echo oops; exit 3"))
    bad_setup = agent.submit(JobRequest(name="s", setup="exit 4", run="echo never"))
    assert wait_job(agent, bad_run) is JobStatus.FAILED
    assert wait_job(agent, bad_setup) is JobStatus.FAILED_SETUP
    assert "never" not in agent.read_log(bad_setup)
    with pytest.raises(ResourcesMismatchError, match="can never fit"):
        agent.submit(JobRequest(name="big", run="true", accelerators={"A100": 1}))


@pytest.mark.slow
def test_gpu_jobs_share_four_devices_without_overlap(
    provider: LocalProvider, tmp_path: Path
) -> None:
    agent = provider.agent(_provision(provider, "c1", {"A100": 4}))
    record = tmp_path / "windows"
    record.mkdir()
    run = (
        f's=$(date +%s.%N); sleep 0.25; echo "$s $(date +%s.%N) $CUDA_VISIBLE_DEVICES" '
        f"> {record}/$SKYPILOT_JOB_ID"
    )
    ids = [agent.submit(JobRequest(name=f"j{i}", run=run, accelerators={"A100": 1}))
           for i in range(20)]  # fmt: skip
    most_running = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        statuses = [j["status"] for j in agent.queue(ids)]
        most_running = max(most_running, statuses.count(JobStatus.RUNNING))
        if all(s.is_terminal() for s in statuses):
            break
        time.sleep(0.02)
    assert all(j["status"] is JobStatus.SUCCEEDED for j in agent.queue(ids))
    assert 2 <= most_running <= 4
    windows = [(float(a), float(b), dev) for a, b, dev in
               (p.read_text().split() for p in record.iterdir())]  # fmt: skip
    assert len(windows) == 20 and {w[2] for w in windows} <= {"0", "1", "2", "3"}
    for i, (s1, e1, d1) in enumerate(windows):
        for s2, e2, d2 in windows[i + 1 :]:
            if s1 < e2 and s2 < e1:  # overlapping in time
                assert d1 != d2


@pytest.mark.slow
def test_two_node_job_logs_both_ranks(provider: LocalProvider) -> None:
    agent = provider.agent(_provision(provider, "c1", num_nodes=2))
    job_id = agent.submit(
        JobRequest(name="mn", num_nodes=2, run='echo "hello from $SKYPILOT_NODE_RANK $HOME"')
    )
    assert wait_job(agent, job_id) is JobStatus.SUCCEEDED
    log = agent.read_log(job_id)
    assert "(rank 0) hello from 0 " in log and "c1/node-0/home" in log
    assert "(rank 1) hello from 1 " in log and "c1/node-1/home" in log
    failing = agent.submit(
        JobRequest(name="mnf", num_nodes=2, run='[ "$SKYPILOT_NODE_RANK" = 1 ] && exit 5; sleep 30')
    )
    assert wait_job(agent, failing, timeout=10) is JobStatus.FAILED
    assert agent.run_setup("echo setup on $SKYPILOT_NODE_RANK", {}, None) == 0
    assert agent.run_setup("exit 7", {}, None) == 7


@pytest.mark.slow
def test_cancel_kills_every_process_of_the_job(provider: LocalProvider) -> None:
    agent = provider.agent(_provision(provider, "c1"))
    job_id = agent.submit(JobRequest(name="long", run="sleep 60 & sleep 60; wait"))
    wait_until(lambda: job_status(agent, job_id) is JobStatus.RUNNING, what="RUNNING")
    pgid = int(_detailed(provider, job_id)["pid"])
    wait_until(lambda: len(group_members(pgid)) >= 3, what="job processes")
    assert agent.cancel([job_id]) == [job_id]
    assert group_members(pgid) == []
    assert job_status(agent, job_id) is JobStatus.CANCELLED
    assert agent.cancel([job_id]) == []  # finished: a no-op


def _detailed(provider: LocalProvider, job_id: int, cluster: str = "c1") -> dict:
    from skystate import runtime

    return runtime.queue(provider.root / cluster / "node-0", [job_id], detailed=True)[0]


@pytest.mark.slow
def test_job_killed_while_agent_down_is_failed_driver(provider: LocalProvider) -> None:
    agent = provider.agent(_provision(provider, "c1"))
    job_id = agent.submit(JobRequest(name="victim", run="sleep 60"))
    wait_until(lambda: job_status(agent, job_id) is JobStatus.RUNNING, what="RUNNING")
    head = provider.root / "c1" / "node-0"
    from skystate import runtime

    os.kill(runtime.agent_pid(head) or 0, signal.SIGKILL)
    wait_until(lambda: runtime.agent_pid(head) is None, what="agent death")
    os.killpg(int(_detailed(provider, job_id)["pid"]), signal.SIGKILL)
    provider.start("c1", "me")
    assert wait_job(agent, job_id) is JobStatus.FAILED_DRIVER


# --- autostop --------------------------------------------------------------------------


@pytest.fixture
def fast_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "60")  # a minute lasts a second


@pytest.mark.slow
def test_autostop_stops_soon_after_the_last_job(provider: LocalProvider, fast_time: None) -> None:
    agent = provider.agent(_provision(provider, "c1"))
    agent.set_autostop(1, False, "jobs_and_ssh")
    job_id = agent.submit(JobRequest(name="work", run="sleep 1.5"))
    assert wait_job(agent, job_id) is JobStatus.SUCCEEDED
    ended = time.monotonic()
    assert cluster_state(provider, "c1") is NodeState.RUNNING  # busy until now: timer restarted
    wait_until(lambda: cluster_state(provider, "c1") is NodeState.STOPPED, timeout=5,
               what="autostop")
    assert time.monotonic() - ended > 0.5  # the idle timer restarted at the job's end
    assert provider.observe(["c1"])[0].stopped_by_autostop
    restarted = provider.start("c1", "me")
    assert restarted.state is NodeState.RUNNING and not restarted.stopped_by_autostop


@pytest.mark.slow
def test_autostop_timer_reset_by_submit_and_cancelled_by_negative(
    provider: LocalProvider, fast_time: None
) -> None:
    agent = provider.agent(_provision(provider, "c1"))
    agent.set_autostop(2, False, "jobs")
    t0 = time.monotonic()
    time.sleep(1.2)
    agent.submit(JobRequest(name="tick", run="true"))  # resets the 2 s timer
    time.sleep(max(0.0, 2.6 - (time.monotonic() - t0)))
    assert cluster_state(provider, "c1") is NodeState.RUNNING
    wait_until(lambda: cluster_state(provider, "c1") is NodeState.STOPPED, timeout=5,
               what="autostop")

    agent = provider.agent(provider.start("c1", "me"))
    agent.set_autostop(1, False, "jobs_and_ssh")
    agent.set_autostop(-1, False, "jobs_and_ssh")
    time.sleep(1.8)
    assert cluster_state(provider, "c1") is NodeState.RUNNING


@pytest.mark.slow
def test_autodown_removes_the_cluster(provider: LocalProvider, fast_time: None, home: Path) -> None:
    agent = provider.agent(_provision(provider, "c1"))
    agent.set_autostop(1, True, "jobs_and_ssh")
    wait_until(lambda: provider.observe(["c1"]) == [], timeout=6, what="autodown")
    wait_until(lambda: not (home / "local" / "c1").exists(), timeout=3, what="folder removal")
