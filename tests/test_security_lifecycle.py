"""Lifecycle hardening: no job is ever lost, a failure says why at once, a forked SDK
process never shares its parent's connection.

Crash windows are hit deterministically with the fault file (``providers/faults.py``):
``{"op": "submit", "error": "pause"}`` stops the request's worker right after the job's
INIT record is flushed (before the agent is called, or with ``after`` once the agent
answered); the test then SIGKILLs the API server, as a crash would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import moto_fixture
import pytest
from helpers import run_cli, wait_until
from moto_fixture import REGIONS, ec2

from skystate.reconcile.actual import ActualState
from skystate.reconcile.desired_views import job_view
from skystate.reconcile.plan import ActionType
from skystate.reconcile.planner import make_plan
from skystate.spec.desired import DesiredState
from skystate.spec.documents import Cluster, Job, Project

pytestmark = pytest.mark.slow
moto_url = moto_fixture.moto_url
aws = moto_fixture.aws

PROJECT = "kind: Project\nname: lifecycle\n"


def _server_pid(home: Path) -> int:
    return int(json.loads((home / "api_server.json").read_text())["pid"])


def _fired(faults: Path) -> dict[str, int]:
    try:
        return json.loads(faults.with_name(faults.name + ".fired.json").read_text())
    except (OSError, ValueError):
        return {}


def _jobs(home: Path) -> dict[str, dict]:
    data = json.loads((home / "state.json").read_text())
    return {j["name"]: j for j in data.get("jobs", {}).values()}


# --- part 8: no job is ever lost ------------------------------------------------------


def _planner_inputs(job_record: dict | None):
    cluster = Cluster(name="c", resources={"cpus": 1})
    job = Job(name="j", cluster="c", run="echo hi")
    desired = DesiredState(project=Project(name="o"), owner="o", clusters={"c": cluster},
                           jobs={("c", "j"): job})
    from skystate.providers.base import Offer
    from skystate.reconcile.desired_views import cluster_view

    offer = Offer("local", None, None, "local", {}, 2, 8, False, 0.0)
    record = {**cluster_view(cluster, "o"), "status": "UP", "offer": offer.to_dict(),
              "provider": "local"}
    jobs = {("c", "j"): {**job_view(job, "o"), **job_record}} if job_record else {}
    actual = ActualState(version=3, clusters={"c": record}, jobs=jobs)
    return make_plan(desired, actual, rank_offers=lambda r, n: [offer], now=0.0)


def test_a_job_recorded_init_without_a_job_id_is_planned_as_a_submit() -> None:
    plan = _planner_inputs({"status": "INIT", "job_id": None})
    assert [(a.type, a.address) for a in plan.changes] == [
        (ActionType.SUBMIT_JOB, "Job/c/j")]
    assert "did not finish" in plan.changes[0].reason
    # the same job once the agent's answer was recorded is unchanged
    assert not _planner_inputs({"status": "PENDING", "job_id": 4}).has_changes
    assert not _planner_inputs({"status": "SUCCEEDED", "job_id": 4}).has_changes


def _state_dir(tmp_path: Path, marker: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    (state / "skystate.yaml").write_text(PROJECT)
    (state / "all.yaml").write_text(
        "kind: Cluster\nname: a\nresources: {cpus: 1}\n---\n"
        f"kind: Job\nname: once\ncluster: a\nrun: echo ran >> {marker}\n")
    return state


def _kill_inside_the_submit_window(home: Path, state: Path, faults: Path) -> None:
    """Start an apply, wait until its worker paused in the window, SIGKILL the server."""
    env = {**os.environ, "SKYSTATE_HOME": str(home)}
    with subprocess.Popen([sys.executable, "-m", "skystate.cli", "apply", str(state), "--yes"],
                          env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as proc:
        wait_until(lambda: _fired(faults).get("0") == 1, timeout=120,
                   what="the apply to reach the submit window")
        os.kill(_server_pid(home), signal.SIGKILL)  # its workers die with it (PDEATHSIG)
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("after", [False, True], ids=["before-agent", "after-agent"])
def test_a_server_killed_mid_submit_loses_no_job_and_runs_it_once(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: bool) -> None:
    marker = tmp_path / "ran.txt"
    state = _state_dir(tmp_path, marker)
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"op": "submit", "cluster": "a", "error": "pause",
                                  "after": after, "times": 1}))
    monkeypatch.setenv("SKYSTATE_FAULTS", str(faults))
    _kill_inside_the_submit_window(home, state, faults)

    record = _jobs(home)["once"]
    assert record["status"] == "INIT" and record["job_id"] is None, record
    plan = run_cli(home, "plan", str(state), "--detailed-exitcode", check=2)
    assert "Job/a/once" in plan.stdout and "did not finish" in plan.stdout, plan.stdout

    run_cli(home, "apply", str(state), "--yes", "--wait", timeout=120)  # a new server
    record = _jobs(home)["once"]
    assert record["job_id"] is not None and record["status"] != "INIT", record
    import skystate as sky

    queue = sky.get(sky.queue("a"))
    assert [j["job_name"] for j in queue] == ["once"], queue  # the agent has it once
    wait_until(lambda: marker.exists(), timeout=60, what="the job to run")
    assert marker.read_text().splitlines() == ["ran"]
    run_cli(home, "plan", str(state), "--detailed-exitcode", check=0)


# --- part 9: fail fast, say why ----------------------------------------------------------


def test_a_server_that_cannot_start_says_why_at_once(home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the 30 s startup timeout: the client sees the server exit and shows its reason."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        refused = run_cli(home, "api", "start", "--port", str(port), check=1)
        took = time.monotonic() - started
    assert "cannot listen on 127.0.0.1" in refused.stderr, refused.stderr
    assert "Address already in use" in refused.stderr, refused.stderr
    assert took < 25, f"took {took:.1f}s: the client waited for its startup timeout"
    monkeypatch.delenv("SKYSTATE_API_TOKEN", raising=False)
    started = time.monotonic()
    refused = run_cli(home, "api", "start", "--host", "0.0.0.0", check=1)
    took = time.monotonic() - started
    assert "needs SKYSTATE_API_TOKEN" in refused.stderr, refused.stderr
    assert took < 25, f"took {took:.1f}s: the client waited for its startup timeout"
    assert not (home / "api_server.json").exists()


# --- part 10: fork-safe client --------------------------------------------------------


def _connections_to(pid: int, server_port: int) -> set[int]:
    """Local ports of the established TCP connections process ``pid`` holds to the port."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if inode in inodes and state == "01" and int(remote.split(":")[1], 16) == server_port:
                ports.add(int(local.split(":")[1], 16))
    return ports


def _use_the_sdk(server_pid: int, rounds: int) -> None:
    import skystate as sky

    for _ in range(rounds):
        assert sky.api_info()["pid"] == server_pid
        assert sky.get(sky.status(all_users=True)) == []


def test_a_forked_child_never_shares_the_parents_connection(home: Path) -> None:
    import skystate as sky

    sky.api_info()  # the parent's client, with a pooled keep-alive connection
    server_pid, server_port = _server_pid(home), json.loads(
        (home / "api_server.json").read_text())["port"]
    parent_ports = _connections_to(os.getpid(), server_port)
    assert parent_ports, "the parent holds no connection to the server"
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: the same SDK calls, concurrently with the parent's
        report: dict = {}
        try:
            os.close(read_end)
            _use_the_sdk(server_pid, 30)
            report["ports"] = sorted(_connections_to(os.getpid(), server_port))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            report["error"] = repr(exc)
        finally:
            os.write(write_end, json.dumps(report).encode())
            os._exit(0)
    os.close(write_end)
    _use_the_sdk(server_pid, 30)
    with os.fdopen(read_end) as reader:
        report = json.loads(reader.read() or "{}")
    os.waitpid(child, 0)
    assert "error" not in report, report.get("error")
    own = set(report["ports"]) - parent_ports
    assert own, f"the child used only its parent's connections {sorted(parent_ports)}"


def test_an_apply_with_a_failed_action_is_a_failed_request_with_the_rest_recorded(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import skystate as sky
    from skystate.exceptions import ApplyFailedError

    state = tmp_path / "state"
    state.mkdir()
    (state / "skystate.yaml").write_text(PROJECT)
    (state / "all.yaml").write_text("kind: Cluster\nname: good\nresources: {cpus: 1}\n---\n"
                                    "kind: Cluster\nname: bad\nresources: {cpus: 1}\n")
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"op": "provision", "cluster": "bad", "error": "unavailable"}))
    monkeypatch.setenv("SKYSTATE_FAULTS", str(faults))
    applied = run_cli(home, "apply", str(state), "--yes", check=1)
    assert "1 of 2 action(s) failed" in applied.stderr, applied.stderr
    row = next(r for r in sky.api_status(all_status=True) if r["name"] == "apply")
    assert row["status"].value == "FAILED", row
    assert "create Cluster/bad" in row["error"]["message"], row["error"]
    assert "Cluster/good" not in row["error"]["message"]
    with pytest.raises(ApplyFailedError) as caught:
        sky.get(row["request_id"])
    assert {o["address"]: o["status"] for o in caught.value.outcomes} == {
        "Cluster/good": "succeeded", "Cluster/bad": "failed"}
    clusters = {c["name"]: c for c in json.loads(
        (home / "state.json").read_text())["clusters"].values()}
    assert clusters["good"]["status"] == "UP"  # the partial state is recorded
    assert "bad" not in clusters or clusters["bad"]["status"] != "UP"


def test_a_request_waiting_behind_another_says_which_one(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import skystate as sky

    faults = tmp_path / "faults.json"  # the launch pauses in provision until cancelled
    faults.write_text(json.dumps({"op": "provision", "cluster": "foo", "error": "pause",
                                  "times": 1}))
    monkeypatch.setenv("SKYSTATE_FAULTS", str(faults))  # the server the SDK starts has it
    task = sky.Task(run="true").set_resources(sky.Resources(infra="local"))
    first = sky.launch(task, cluster_name="foo")
    second = sky.exec(task, cluster_name="foo")
    wanted = f"waiting for request {first} (launch) on cluster:foo"

    def listed() -> dict:
        return json.loads(run_cli(home, "api", "status", "--json").stdout)

    wait_until(lambda: any(r.get("status_msg") == wanted for r in listed()), timeout=60,
               what="the waiting request to say so")
    row = sky.api_status([second])[0]
    assert row["status"].value == "PENDING" and row["status_msg"] == wanted, row
    assert wanted in Path(row["log_path"]).read_text()
    sky.get(sky.api_cancel([first]))
    wait_until(lambda: sky.api_status([second])[0]["status"].value not in ("PENDING",
                                                                         "RUNNING"),
               timeout=120, what="the second request to run once the first is gone")
    assert sky.api_status([second])[0]["status_msg"] != wanted


def _aws_offer(provider):
    from skystate.providers.base import OfferQuery

    return min(provider.offers(OfferQuery(cpus="2+", region="us-east-1")),
               key=lambda o: (o.hourly_price, o.infra))


def _instances(url: str) -> list[dict]:
    reservations = ec2(url, "us-east-1").describe_instances()["Reservations"]
    return [i for r in reservations for i in r["Instances"]
            if i["State"]["Name"] != "terminated"]


def test_an_emulator_endpoint_without_an_ssh_target_fails_fast(aws: str, home: Path) -> None:
    """moto's instances have made-up public IPs: never dialled, and nothing is launched."""
    from skystate.exceptions import NotSupportedError
    from skystate.providers.base import ProvisionRequest
    from skystate.providers.registry import Providers

    provider = Providers({"aws": {"regions": REGIONS, "endpoint_url": aws}}).get("aws")

    def never_dial(pool, host):  # were the refusal gone, this test still dials nothing
        raise AssertionError(f"dialled {host.address}:{host.port}")

    provider.nodes.conns._open = never_dial
    with pytest.raises(NotSupportedError, match="test_ssh_address"):
        provider.provision(ProvisionRequest("fake-ips", "me", _aws_offer(provider), 1))
    assert _instances(aws) == []


def test_waiting_for_ssh_prints_progress_and_ends_at_ssh_timeout(
        aws: str, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from skystate.exceptions import ProviderError
    from skystate.providers.base import ProvisionRequest
    from skystate.providers.registry import Providers

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    provider = Providers({"aws": {
        "regions": REGIONS, "endpoint_url": aws, "ssh_timeout": 4,
        "test_ssh_address": f"127.0.0.1:{closed}"}}).get("aws")
    with pytest.raises(ProviderError, match=r"no SSH within 4s \(ssh_timeout\)"):
        provider.provision(ProvisionRequest("no-sshd", "me", _aws_offer(provider), 1))
    printed = capsys.readouterr().out
    assert "waiting for SSH (" in printed and "of 4s)" in printed, printed
    provider.terminate("no-sshd", "me")
