"""A managed job's storage mounts are staged at each attempt's launch as a Job's are
(``storage_mounts.stage``), on a real local cluster against a real moto S3 server."""

from __future__ import annotations

import io
import time
from pathlib import Path

import moto_fixture
import pytest
from helpers import kill_everything_under

import skystate as sky
from skystate.exceptions import NotSupportedError
from skystate.jobs import ManagedJobStatus as S

pytestmark = pytest.mark.slow

moto_url = moto_fixture.moto_url
aws = moto_fixture.aws


@pytest.fixture
def home(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text(
        f"providers:\n  local: {{}}\n  aws: {{endpoint_url: '{aws}'}}\n")
    monkeypatch.setenv("SKYSTATE_HOME", str(home))
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "30")
    yield home
    from skystate.server.client import stop_server

    stop_server(home)
    kill_everything_under(tmp_path)


def _buckets(url: str) -> set[str]:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=url)
    return {b["Name"] for b in s3.list_buckets().get("Buckets") or []}


def test_a_managed_job_reads_its_copy_mounted_file(aws: str, home: Path,
                                                   tmp_path: Path) -> None:
    data = tmp_path / "dataset"
    data.mkdir()
    (data / "labels.txt").write_text("labels from the bucket\n")
    # a local node's / is its folder's root/
    task = sky.Task(run="cat ~/../root/data/labels.txt",
                    setup="test -f ~/../root/data/labels.txt")
    task.set_resources(sky.Resources(infra="local"))
    task.set_storage_mounts({"/data": sky.Storage(name="mj-tmp", source=str(data),
                                                  mode=sky.StorageMode.COPY,
                                                  persistent=False)})
    job_id, _ = sky.get(sky.jobs.launch(task, name="reads"))
    deadline = time.time() + 180  # generous: the machine is loaded
    while True:
        [record] = [j for j in sky.get(sky.jobs.queue(refresh=False, all_users=True))
                    if j["job_id"] == job_id]
        if record["status"].is_terminal():
            break
        assert time.time() < deadline, f"job still {record['status']}: {record}"
        time.sleep(0.5)
    out = io.StringIO()
    sky.jobs.tail_logs(job_id=job_id, follow=False, output_stream=out)
    assert record["status"] is S.SUCCEEDED, (record, out.getvalue())
    assert "labels from the bucket" in out.getvalue()
    # the job's cluster was downed: the ephemeral bucket skystate made went with it
    assert "mj-tmp" not in _buckets(aws)


def test_a_managed_job_mount_no_node_can_have_is_refused_at_launch(aws: str, home: Path,
                                                                    tmp_path: Path) -> None:
    task = sky.Task(run="true").set_resources(sky.Resources(infra="local"))
    task.set_storage_mounts({"/d": sky.Storage(name="mj-never", source=str(tmp_path),
                                               mode=sky.StorageMode.MOUNT)})
    with pytest.raises(NotSupportedError, match="mode MOUNT needs a FUSE"):
        sky.get(sky.jobs.launch(task, name="refused"))
    assert sky.get(sky.jobs.queue(refresh=False, all_users=True)) == []
    assert "mj-never" not in _buckets(aws)
