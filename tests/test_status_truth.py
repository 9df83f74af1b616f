"""Status tells the truth: autostopped clusters read STOPPED (autostop) without --refresh,
finished jobs keep their outcome after their cluster stops, what cannot be observed is
shown as unknown, and the settings that reach clusters follow the request.

Real local clusters (agent processes), the real API server and the real CLI; the
autostop is the agents' own, at ``SKYSTATE_TIME_SCALE=60`` (a minute lasts a second).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import moto_fixture
import pytest
import sshd_fixture
from helpers import REPO, cluster_state, run_cli, status_json, wait_until

import skystate as sky
from skystate.providers.base import NodeState
from skystate.providers.local import LocalProvider

pytestmark = pytest.mark.slow

DEADLINE = 60.0  # generous: the machine is loaded; nothing here asserts a wall-clock bound


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "60")


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """The quickstart, stopping itself after 1 idle minute (a second at scale 60)."""
    target = tmp_path / "state"
    shutil.copytree(REPO / "examples" / "quickstart", target)
    cluster = target / "cluster.yaml"
    cluster.write_text(cluster.read_text().replace("idle_minutes: 10", "idle_minutes: 1"))
    return target


def _local(home: Path) -> LocalProvider:
    return LocalProvider(root=home / "local")


def _wait_stopped_by_itself(home: Path, name: str) -> None:
    """Wait, without asking skystate, until the cluster's own agent has stopped it."""
    wait_until(lambda: cluster_state(_local(home), name) is NodeState.STOPPED, DEADLINE,
               f"{name} to stop itself")
    assert _local(home).observe([name])[0].stopped_by_autostop


def _rows(home: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    shown = status_json(home)
    return ({c["name"]: c for c in shown["clusters"]},
            {f"{j['cluster']}/{j['name']}": j for j in shown["jobs"]})


def _first_observed(home: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``skystate status`` until a cluster is observed (a loaded machine may miss the
    budget once: then it says UNKNOWN, never a stale UP)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        clusters, jobs = _rows(home)
        statuses = {c["status"] for c in clusters.values()}
        assert "UP" not in statuses, clusters  # the cluster stopped before we asked
        if "UNKNOWN" not in statuses:
            return clusters, jobs
        assert time.monotonic() < deadline, {n: c.get("status_error") for n, c in clusters.items()}
        time.sleep(0.5)


def _record(home: Path, table: str, **key: str) -> dict[str, Any] | None:
    from skystate.reconcile.store import read_snapshot

    rows = read_snapshot(home / "state.json").get(table, [])
    return next((r for r in rows if all(r.get(k) == v for k, v in key.items())), None)


# --- the demo ------------------------------------------------------------------------


def test_autostopped_cluster_reads_stopped_its_job_succeeded_and_the_plan_is_clean(
        home: Path, state_dir: Path, fast: None) -> None:
    """The issue's demo: apply, the agent stops the cluster after its job, and the very
    next ``skystate status`` (no --refresh) shows STOPPED (autostop) and SUCCEEDED."""
    run_cli(home, "apply", str(state_dir), "--yes")
    _wait_stopped_by_itself(home, "quickstart")  # nobody asked skystate meanwhile
    clusters, jobs = _first_observed(home)
    assert clusters["quickstart"]["status"] == "STOPPED"
    assert clusters["quickstart"]["stopped_by_autostop"] is True
    assert jobs["quickstart/hello"]["status"] == "SUCCEEDED"  # read from the stopped node
    assert "STOPPED (autostop)" in run_cli(home, "status").stdout
    # recorded by the API server, so the SDK, the planner and the next status agree
    assert _record(home, "clusters", name="quickstart")["status"] == "STOPPED"
    assert _record(home, "jobs", cluster="quickstart", name="hello")["status"] == "SUCCEEDED"
    [record] = sky.get(sky.status(["quickstart"]))
    assert record["status"] is sky.ClusterStatus.STOPPED and not record["status_unknown"]
    run_cli(home, "plan", str(state_dir), "--detailed-exitcode", check=0)
    # and forever after: the outcome does not fall back to the submit-time PENDING
    assert _rows(home)[1]["quickstart/hello"]["status"] == "SUCCEEDED"


def test_editing_a_finished_job_on_an_autostopped_cluster_plans_a_plain_submit(
        home: Path, state_dir: Path, fast: None) -> None:
    run_cli(home, "apply", str(state_dir), "--yes")
    _wait_stopped_by_itself(home, "quickstart")
    _first_observed(home)
    job_yaml = state_dir / "job.yaml"
    job_yaml.write_text(job_yaml.read_text().replace("on node", "again on node"))
    plan = json.loads(run_cli(home, "plan", str(state_dir), "--json").stdout)
    changes = [(a["type"], a["address"]) for a in plan["actions"] if a["type"] != "noop"]
    assert changes == [("start", "Cluster/quickstart"), ("submit-job", "Job/quickstart/hello")]


def test_refresh_records_the_outcome_read_from_a_stopped_node(
        home: Path, state_dir: Path, fast: None) -> None:
    run_cli(home, "apply", str(state_dir), "--yes")
    _wait_stopped_by_itself(home, "quickstart")
    assert _record(home, "jobs", cluster="quickstart", name="hello")["status"] == "PENDING"
    run_cli(home, "refresh", str(state_dir))
    assert _record(home, "clusters", name="quickstart")["stopped_by_autostop"] is True
    assert _record(home, "jobs", cluster="quickstart", name="hello")["status"] == "SUCCEEDED"


def test_a_stop_records_the_outcomes_of_the_jobs_it_ends_or_that_ended(
        home: Path, state_dir: Path) -> None:
    cluster = state_dir / "cluster.yaml"
    cluster.write_text(cluster.read_text().replace("autostop: {idle_minutes: 1}\n", ""))
    (state_dir / "long.yaml").write_text(
        "kind: Job\nname: long\ncluster: quickstart\nrun: sleep 300\n")
    run_cli(home, "apply", str(state_dir), "--yes")
    from skystate.runtime import queue

    head = home / "local" / "quickstart" / "node-0"
    wait_until(lambda: {j["job_name"]: str(j["status"]) for j in queue(head)}
               == {"hello": "SUCCEEDED", "long": "RUNNING"}, DEADLINE, "jobs to run")
    run_cli(home, "stop", "quickstart")
    clusters, jobs = _rows(home)
    assert clusters["quickstart"]["status"] == "STOPPED"
    assert jobs["quickstart/hello"]["status"] == "SUCCEEDED"
    assert jobs["quickstart/long"]["status"] == "CANCELLED"  # the stop ended it


# --- the SDK, autodown, unknown --------------------------------------------------------


def test_sdk_status_without_refresh_sees_autostop_and_autodown(home: Path, fast: None) -> None:
    task = sky.Task(run="echo done").set_resources(sky.Resources(infra="local"))
    sky.get(sky.launch(task, cluster_name="stops", idle_minutes_to_autostop=1))
    sky.get(sky.launch(task, cluster_name="downs", idle_minutes_to_autostop=1, down=True))
    wait_until(lambda: cluster_state(_local(home), "stops") is NodeState.STOPPED
               and cluster_state(_local(home), "downs") is NodeState.TERMINATED,
               DEADLINE, "autostop and autodown")
    deadline = time.monotonic() + DEADLINE
    while True:
        records = {r["name"]: r for r in sky.get(sky.status())}
        if not any(r["status_unknown"] for r in records.values()):
            break
        assert time.monotonic() < deadline, records
    assert set(records) == {"stops"}  # the downed one is gone, as `sky status` shows it
    assert records["stops"]["status"] is sky.ClusterStatus.STOPPED
    assert records["stops"]["health_status"] == "Healthy"


def _faults(path: Path, faults: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps(faults))


def test_a_cluster_that_cannot_be_observed_reads_unknown_not_up(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    faults = tmp_path / "faults.json"
    _faults(faults, [{"op": "observe", "cluster": "not-this-one", "error": "timeout"}])
    monkeypatch.setenv("SKYSTATE_FAULTS", str(faults))  # the server is started with it
    task = sky.Task(run="true").set_resources(sky.Resources(infra="local"))
    sky.get(sky.launch(task, cluster_name="slow", idle_minutes_to_autostop=10))
    sky.get(sky.launch(task, cluster_name="broken", idle_minutes_to_autostop=10))
    _faults(faults, [{"op": "observe", "cluster": "slow", "error": "timeout", "delay": 90},
                     {"op": "observe", "cluster": "broken", "error": "timeout"}])
    started = time.monotonic()
    records = {r["name"]: r for r in sky.get(sky.status())}
    assert time.monotonic() - started < 90  # the budget, not the slowest provider, bounds it
    assert records["slow"]["status_unknown"] and "no answer within 2s" in (
        records["slow"]["status_error"])
    assert records["broken"]["status_unknown"] and "injected timeout" in (
        records["broken"]["status_error"])
    clusters, _ = _rows(home)
    assert {c["status"] for c in clusters.values()} == {"UNKNOWN"}
    assert clusters["slow"]["recorded_status"] == "UP"
    # unknown is not gone: the records are kept as they were
    assert _record(home, "clusters", name="slow")["status"] == "UP"
    _faults(faults, [{"op": "observe", "cluster": "not-this-one", "error": "timeout"}])
    clusters, _ = _rows(home)
    assert {c["status"] for c in clusters.values()} == {"UP"}


def test_a_stopped_cluster_whose_job_table_is_out_of_reach_still_reads_stopped(
        home: Path, state_dir: Path, tmp_path: Path, fast: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """As a stopped cloud instance: seen stopped, its job table unreadable. The cluster's
    status is recorded; the job keeps its last observed status (nothing is made up)."""
    faults = tmp_path / "faults.json"
    _faults(faults, [{"op": "agent", "cluster": "not-this-one", "error": "timeout"}])
    monkeypatch.setenv("SKYSTATE_FAULTS", str(faults))
    run_cli(home, "apply", str(state_dir), "--yes")
    _faults(faults, [{"op": "agent", "cluster": "quickstart", "error": "timeout"}])
    _wait_stopped_by_itself(home, "quickstart")
    clusters, jobs = _first_observed(home)
    assert (clusters["quickstart"]["status"], clusters["quickstart"]["stopped_by_autostop"]) == (
        "STOPPED", True)
    assert jobs["quickstart/hello"]["status"] == "PENDING"  # as last observed, not invented
    _faults(faults, [{"op": "agent", "cluster": "not-this-one", "error": "timeout"}])
    run_cli(home, "refresh", str(state_dir))  # once it can be read, the outcome is recorded
    assert _rows(home)[1]["quickstart/hello"]["status"] == "SUCCEEDED"


# --- settings that reach clusters --------------------------------------------------------


def test_the_time_scale_follows_the_request_and_a_differing_client_is_told(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKYSTATE_TIME_SCALE", raising=False)
    info = sky.api_info()  # starts the server without a time scale
    assert info["settings"] == {"SKYSTATE_TIME_SCALE": None} and not info["settings_differ"]
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "60")
    info = sky.api_info()
    assert info["settings_differ"] == ["SKYSTATE_TIME_SCALE: server unset, this shell '60'"]
    shown = run_cli(home, "api", "info")
    assert "SKYSTATE_TIME_SCALE=unset" in shown.stdout and "differs" in shown.stdout
    assert "SKYSTATE_TIME_SCALE" in run_cli(home, "api", "status").stderr  # on any call
    task = sky.Task(run="true").set_resources(sky.Resources(infra="local"))
    sky.get(sky.launch(task, cluster_name="scaled", idle_minutes_to_autostop=1))
    # at the server's scale this would take a minute; at the request's, about a second
    wait_until(lambda: cluster_state(_local(home), "scaled") is NodeState.STOPPED, 40,
               "the request's time scale to stop the cluster")


# --- ssh ---------------------------------------------------------------------------------

sshd = sshd_fixture.sshd  # the session's test sshd (a fixture)


def test_ssh_cluster_that_stopped_itself_reads_stopped_with_its_job_outcome(
        sshd: sshd_fixture.SSHD, home: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo on the SSH provider: the outcome is read from the stopped host's table."""
    from skystate.providers.registry import Providers

    # 10 s of idle, not 1: an SSH submit on a loaded machine can take longer than a
    # second, and a cluster that stops itself before its job arrives is another story
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "6")

    pool = {"hosts": [sshd.address], "port": sshd.port, "user": sshd.user,
            "identity_file": str(sshd.key), "remote_dir": str(tmp_path / "remote" / "{host}"),
            "isolate_home": True}
    state = tmp_path / "sshstate"
    state.mkdir()
    (state / "skystate.yaml").write_text(
        "kind: Project\nname: lab\nproviders:\n  ssh:\n    pools:\n      lab: "
        + json.dumps(pool) + "\n")
    (state / "c.yaml").write_text(
        "kind: Cluster\nname: sshc\nresources: {infra: ssh/lab}\n"
        "autostop: {idle_minutes: 1}\n---\n"
        "kind: Job\nname: hi\ncluster: sshc\nrun: echo over ssh\n")
    run_cli(home, "apply", str(state), "--yes", timeout=120)
    provider = Providers({"ssh": {"pools": {"lab": pool}}}).get("ssh")
    try:
        wait_until(lambda: cluster_state(provider, "sshc") is NodeState.STOPPED, DEADLINE,
                   "the ssh cluster to stop itself")
        clusters, jobs = _first_observed(home)
        assert (clusters["sshc"]["status"], clusters["sshc"]["stopped_by_autostop"]) == (
            "STOPPED", True)
        assert jobs["sshc/hi"]["status"] == "SUCCEEDED"
        run_cli(home, "plan", str(state), "--detailed-exitcode", check=0)
    finally:
        run_cli(home, "down", "sshc", timeout=120, check=None)
        provider.close()


# --- a cloud (AWS, moto in server mode; the nodes' sshd is the test sshd) ----------------

moto_url = moto_fixture.moto_url
aws = moto_fixture.aws

# What EC2 does when a guest powers off (run on the "node" in place of `shutdown`).
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


def test_aws_cluster_that_stopped_itself_reads_stopped(
        aws: str, sshd: sshd_fixture.SSHD, home: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from skystate.providers.registry import Providers

    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "6")  # 10 s idle (see the ssh test)
    config = {"regions": ["us-east-1"], "endpoint_url": aws, "ssh_user": sshd.user,
              "identity_file": str(sshd.key), "remote_dir": str(tmp_path / "remote" / "{host}"),
              "isolate_home": True, "test_ssh_address": f"{sshd.address}:{sshd.port}",
              "shutdown_command": [sys.executable, "-c", _EC2_SHUTDOWN, "{instance_id}",
                                   "{region}", aws]}
    state = tmp_path / "awsstate"
    state.mkdir()
    (state / "skystate.yaml").write_text(
        "kind: Project\nname: cloud\nproviders:\n  aws: " + json.dumps(config) + "\n")
    (state / "c.yaml").write_text(
        "kind: Cluster\nname: awsc\nresources: {infra: aws/us-east-1, cpus: 2+}\n"
        "autostop: {idle_minutes: 1}\n---\n"
        "kind: Job\nname: hi\ncluster: awsc\nrun: echo on the cloud\n")
    run_cli(home, "apply", str(state), "--yes", timeout=180)
    provider = Providers({"aws": config}).get("aws")
    try:
        wait_until(lambda: cluster_state(provider, "awsc") is NodeState.STOPPED, DEADLINE,
                   "the aws cluster to stop itself")
        clusters, jobs = _first_observed(home)
        # (whether it was the autostop is EC2's StateReason, which moto's stop does not
        # set to InstanceInitiatedShutdown: the flag is not asserted here)
        assert clusters["awsc"]["status"] == "STOPPED"
        assert jobs["awsc/hi"]["status"] != "RUNNING"  # last observed, or read
    finally:
        run_cli(home, "down", "awsc", timeout=180, check=None)
        provider.close()
