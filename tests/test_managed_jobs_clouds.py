"""Managed jobs preempted on the clouds as a cloud would: the instance terminated out of
band on moto (AWS), the fake Compute Engine reporting it TERMINATED (GCP). The job
recovers on a new cluster and succeeds; nothing is left running.

Needs the shared moto server and test sshd (``SKYSTATE_TEST_MOTO_URL``,
``SKYSTATE_TEST_SSHD_DIR``), as the AWS and GCP provider tests do."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import moto_fixture
import pytest
import sshd_fixture
from gcp_fake import FakeCompute
from moto_fixture import ec2
from sshd_fixture import SSHD

import skystate as sky
from skystate.jobs import ManagedJobStatus as S

pytestmark = pytest.mark.slow

sshd = sshd_fixture.sshd
moto_url = moto_fixture.moto_url
aws = moto_fixture.aws


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "30")


def _job(job_id: int) -> dict[str, Any]:
    return next(j for j in sky.get(sky.jobs.queue(refresh=False, all_users=True))
                if j["job_id"] == job_id)


def _wait(job_id: int, ok: Callable[[dict[str, Any]], bool], timeout: float = 240) -> Any:
    deadline = time.time() + timeout
    while True:
        job = _job(job_id)
        if ok(job):
            return job
        assert time.time() < deadline, job
        time.sleep(0.2)


def _preempted_once(home: Path, tmp_path: Path, infra: str,
                    preempt: Callable[[str], None]) -> dict[str, Any]:
    """Launch a job whose first attempt waits; preempt its cluster; it recovers."""
    counter, gate = tmp_path / "attempts", tmp_path / "gate"
    task = sky.Task.from_yaml_config({
        "resources": {"infra": infra, "cpus": "2+"},
        "run": f"echo x >> {counter}; n=$(wc -l < {counter}); echo attempt $n; "
               f"if [ $n -lt 2 ]; then while [ ! -f {gate} ]; do sleep 0.2; done; fi; "
               "echo finished"})
    job_id, _ = sky.get(sky.jobs.launch(task, name="cloudy"))
    _wait(job_id, lambda j: j["status"] is S.RUNNING)
    deadline = time.time() + 120
    while not counter.exists():  # the program runs on the node
        assert time.time() < deadline, _job(job_id)
        time.sleep(0.2)
    preempt(f"mj-{job_id}-1")
    job = _wait(job_id, lambda j: j["status"].is_terminal())
    gate.touch()  # the first attempt's orphan (moto has no machines to stop) ends
    assert job["status"] is S.SUCCEEDED, job
    assert job["recovery_count"] == 1 and job["attempt"] == 2
    assert "preempted" in job["attempts"][0]["outcome"]
    log = home / "managed_jobs" / str(job_id) / "attempt-2.log"
    assert "attempt 2" in log.read_text() and "finished" in log.read_text()
    state = json.loads((home / "state.json").read_text())
    assert not state.get("clusters")
    return job


def test_an_instance_terminated_on_moto_is_a_preemption_the_job_recovers_from(
        aws: str, sshd: SSHD, home: Path, tmp_path: Path, fast: None) -> None:
    config = {"regions": ["us-west-2"], "endpoint_url": aws, "ssh_user": sshd.user,
              "identity_file": str(sshd.key), "remote_dir": str(tmp_path / "remote" / "{host}"),
              "isolate_home": True, "test_ssh_address": f"{sshd.address}:{sshd.port}"}
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(json.dumps({"providers": {"aws": config}}))
    client = ec2(aws, "us-west-2")

    def terminate(cluster: str) -> None:
        found = client.describe_instances(Filters=[
            {"Name": "tag:skystate-cluster", "Values": [cluster]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]}])
        ids = [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]
        assert ids, f"no instance of {cluster} on moto"
        client.terminate_instances(InstanceIds=ids)

    _preempted_once(home, tmp_path, "aws/us-west-2", terminate)
    live = client.describe_instances(Filters=[
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]}])
    assert [i for r in live["Reservations"] for i in r["Instances"]] == []


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    compute = FakeCompute()
    compute.start()
    yield compute
    compute.stop()


def test_an_instance_the_fake_gce_reports_terminated_is_recovered(
        fake: FakeCompute, sshd: SSHD, home: Path, tmp_path: Path, fast: None) -> None:
    from skystate.providers.gcp import label_value

    config = {"project": "test-proj", "regions": ["us-central1"], "api_endpoint": fake.url,
              "ssh_user": sshd.user, "identity_file": str(sshd.key),
              "remote_dir": str(tmp_path / "nodes"),
              "test_ssh_address": f"{sshd.address}:{sshd.port}"}
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(json.dumps({"providers": {"gcp": config}}))

    def preempt(cluster: str) -> None:
        keys = [key for key, inst in fake.instances.items()
                if inst["labels"].get("skystate-cluster") == label_value(cluster)]
        assert keys, f"no instance of {cluster} on the fake"
        for _, zone, name in keys:
            fake.set_status(zone, name, "TERMINATED")  # as a spot preemption shows it

    _preempted_once(home, tmp_path, "gcp/us-central1", preempt)
    assert fake.instances == {}
