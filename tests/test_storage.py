"""Storage mounts: sky.Storage and file_mounts mappings, against a real moto S3 server and
real local clusters (the AWS-cluster case is in test_storage_aws.py)."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import moto_fixture
import pytest
from helpers import kill_everything_under

import skystate as sky
from skystate.exceptions import NotSupportedError, SpecError

moto_url = moto_fixture.moto_url
aws = moto_fixture.aws


def s3(url: str) -> Any:
    import boto3

    return boto3.client("s3", region_name="us-east-1", endpoint_url=url)


def buckets(url: str) -> set[str]:
    return {b["Name"] for b in s3(url).list_buckets().get("Buckets") or []}


# --- the spec (no servers) -------------------------------------------------------------


def _load(tmp_path: Path, mounts: str) -> sky.Task:
    path = tmp_path / "task.yaml"
    path.write_text("run: ls\nfile_mounts:\n" + mounts)
    return sky.Task.from_yaml(path)


@pytest.mark.parametrize(("mounts", "line", "words"), [
    ("  /d:\n    name: my-bucket\n    mode: FUSE\n", 5, "mode"),
    ("  /d:\n    source: /tmp\n", 3, "needs a name"),
    ("  /d:\n    name: my-bucket\n    source: s3://other\n", 3, "not both"),
    ("  /d:\n    name: My_Bucket\n", 4, "invalid bucket name"),
    ("  /d:\n    name: my-bucket\n    persist: false\n", 5, "persist"),
])
def test_bad_storage_specs_name_their_file_and_line(tmp_path: Path, mounts: str, line: int,
                                                    words: str) -> None:
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, mounts)
    text = str(caught.value)
    assert f"task.yaml:{line}" in text and words in text, text


def test_a_state_dir_job_with_a_bad_storage_mapping_reports_only_its_own_errors(
    tmp_path: Path
) -> None:
    from skystate.spec.loader import load_state_dir

    (tmp_path / "c.yaml").write_text(
        "kind: Cluster\nname: c\n---\nkind: Job\nname: j\ncluster: c\nrun: ls\n"
        "file_mounts:\n  /d:\n    name: my-bucket\n    mode: FUSE\n  /e:\n    source: ./x\n")
    with pytest.raises(SpecError) as caught:
        load_state_dir(tmp_path)
    issues = [str(i) for i in caught.value.issues]
    assert len(issues) == 2, issues
    assert "c.yaml:11: file_mounts./d.mode:" in issues[0]
    assert "c.yaml:12: file_mounts./e: a local source needs a name" in issues[1]


def test_storage_round_trips_through_yaml_and_reads_skypilot_fields(tmp_path: Path) -> None:
    task = _load(tmp_path, "  /ckpt:\n    name: my-ckpts\n    store: s3\n    mode: copy\n"
                           "    persistent: false\n  /raw: s3://data-bucket/raw\n")
    storage = task.storage_mounts["/ckpt"]
    assert storage.mode is sky.StorageMode.COPY and storage.persistent is False
    assert list(storage.stores) == [sky.StoreType.S3]
    assert task.file_mounts == {"/raw": "s3://data-bucket/raw"}
    again = sky.Task.from_yaml_config(task.to_yaml_config())
    assert again.storage_mounts == task.storage_mounts and again == task


def test_storage_constructor_follows_skypilots_name_and_source_rules() -> None:
    with pytest.raises(ValueError, match="needs a name"):
        sky.Storage(source="/tmp")
    with pytest.raises(ValueError, match="name .*or a source"):
        sky.Storage()
    with pytest.raises(ValueError, match="not both"):
        sky.Storage(name="my-bucket", source="s3://other-bucket")
    storage = sky.Storage(source="s3://other-bucket/sub")
    storage.add_store(sky.StoreType.S3)
    assert storage.to_yaml_config()["store"] == "S3"


def test_stores_other_than_s3_are_refused_by_name_before_any_provider_call() -> None:
    from skystate.reconcile import storage_mounts

    for mounts, words in [({"/d": "gs://their-bucket/x"}, "GCS buckets are not supported"),
                          ({"/d": {"name": "my-bucket", "store": "gcs"}}, "GCS buckets"),
                          ({"/d": {"name": "my-bucket", "mode": "mount"}}, "mode MOUNT")]:
        with pytest.raises(NotSupportedError, match=words):
            storage_mounts.check(mounts)
    storage_mounts.check({"/d": "s3://ok-bucket", "/e": {"name": "my-bucket"}, "/f": "/tmp"})


def test_a_storage_mount_that_was_not_staged_is_refused_not_dropped() -> None:
    from skystate.reconcile.handlers import job_request

    with pytest.raises(NotSupportedError, match="storage mounts"):
        job_request({"run": "ls", "file_mounts": {"/d": {"name": "my-bucket"}}},
                    name="j", username="u")


# --- on local clusters, against moto S3 -------------------------------------------------


@pytest.fixture
def home(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text(
        f"providers:\n  local: {{}}\n  aws: {{endpoint_url: '{aws}'}}\n")
    monkeypatch.setenv("SKYSTATE_HOME", str(home))
    yield home
    from skystate.server.client import stop_server

    stop_server(home)
    kill_everything_under(tmp_path)


def _dataset(tmp_path: Path) -> Path:
    source = tmp_path / "imagenet"
    (source / "train").mkdir(parents=True)
    (source / "train" / "a.txt").write_text("cat pictures\n")
    (source / "labels.txt").write_text("cat\n")
    return source


def _log(cluster: str, job_id: int) -> str:
    deadline = time.time() + 120
    while True:
        status = sky.get(sky.job_status(cluster, [job_id]))[job_id]
        if status is not None and status.is_terminal():
            break
        assert time.time() < deadline, f"job {job_id} still {status}"
        time.sleep(0.2)
    out = io.StringIO()
    sky.tail_logs(cluster, job_id, follow=False, output_stream=out)
    assert status is sky.JobStatus.SUCCEEDED, out.getvalue()
    return out.getvalue()


# a local node's ``/`` is its folder's root/ (next to its home/)
READ = "cat ~/../root/remote/imagenet/labels.txt ~/../root/remote/imagenet/train/a.txt"


@pytest.mark.slow
def test_seed_example_copies_a_local_folder_to_the_nodes_and_the_bucket_stays(
    aws: str, home: Path, tmp_path: Path
) -> None:
    task = sky.Task(run=READ, setup="test -f ~/../root/remote/imagenet/labels.txt")
    task.set_resources(sky.Resources(infra="local"))
    task.set_storage_mounts({
        "/remote/imagenet/": sky.Storage(name="my-bucket", source=str(_dataset(tmp_path))),
    })
    job_id, _ = sky.get(sky.launch(task, cluster_name="st1"))
    assert "cat\ncat pictures" in _log("st1", job_id)
    keys = {o["Key"] for o in s3(aws).list_objects_v2(Bucket="my-bucket")["Contents"]}
    assert keys == {"labels.txt", "train/a.txt"}
    sky.get(sky.down("st1"))
    assert "my-bucket" in buckets(aws)  # persistent (the default) stays


@pytest.mark.slow
def test_an_ephemeral_bucket_skystate_made_is_deleted_on_down_a_foreign_one_never(
    aws: str, home: Path, tmp_path: Path
) -> None:
    s3(aws).create_bucket(Bucket="theirs")
    s3(aws).put_object(Bucket="theirs", Key="raw/x.txt", Body=b"from their bucket\n")
    task = sky.Task(run=READ + " ~/../root/raw/x.txt ~/../root/theirs/raw/x.txt")
    task.set_resources(sky.Resources(infra="local"))
    task.set_file_mounts({
        "/remote/imagenet": {"name": "ours-tmp", "source": str(_dataset(tmp_path)),
                             "persistent": False, "mode": "COPY"},
        "/raw": "s3://theirs/raw",
        "/theirs": {"source": "s3://theirs", "persistent": False},
    })
    job_id, _ = sky.get(sky.launch(task, cluster_name="st2"))
    assert _log("st2", job_id).count("from their bucket") == 2
    assert {"ours-tmp", "theirs"} <= buckets(aws)
    sky.get(sky.down("st2"))
    assert "ours-tmp" not in buckets(aws) and "theirs" in buckets(aws)


@pytest.mark.slow
def test_mount_mode_on_local_fails_before_anything_is_provisioned(
    aws: str, home: Path, tmp_path: Path
) -> None:
    for mode in (sky.StorageMode.MOUNT, sky.StorageMode.MOUNT_CACHED):
        task = sky.Task(run="true").set_resources(sky.Resources(infra="local"))
        task.set_storage_mounts({"/d": sky.Storage(name="never-made", source=str(tmp_path),
                                                   mode=mode)})
        with pytest.raises(NotSupportedError, match=f"mode {mode.value} needs a FUSE"):
            sky.get(sky.launch(task, cluster_name="st3"))
    assert sky.get(sky.status()) == [] and "never-made" not in buckets(aws)
    assert not (home / "local" / "st3").exists()
