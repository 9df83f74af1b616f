"""A Cluster document's file_mounts and storage mounts reach every node before its setup
runs (the same sync and staging a Job's submit uses), on real local clusters; storage
against a real moto S3 server."""

from __future__ import annotations

from pathlib import Path

import moto_fixture
import pytest
from helpers import run_cli, status_json

pytestmark = pytest.mark.slow

moto_url = moto_fixture.moto_url
aws = moto_fixture.aws


def _setup_log(home: Path, cluster: str) -> str:
    logs = sorted((home / "local" / cluster).rglob("setup-*.log"))
    assert logs, f"no setup log under {home / 'local' / cluster}"
    return "\n".join(p.read_text() for p in logs)


def test_a_cluster_file_mount_is_on_every_node_before_setup(home: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "weights.txt").write_text("the mounted weights\n")
    (state / "cluster.yaml").write_text(
        "kind: Cluster\nname: cm1\nnum_nodes: 2\nresources: {cpus: 1+}\n"
        "file_mounts:\n  ~/w.txt: ./weights.txt\n"
        'setup: |\n  echo "node $SKYPILOT_NODE_RANK: $(cat ~/w.txt)"\n')
    run_cli(home, "apply", str(state), "--yes", timeout=180)
    log = _setup_log(home, "cm1")
    assert "node 0: the mounted weights" in log and "node 1: the mounted weights" in log, log
    run_cli(home, "plan", str(state), "--detailed-exitcode", check=0)
    # a changed mount source changes the cluster in place: setup runs again on the new file
    (state / "cluster.yaml").write_text(
        (state / "cluster.yaml").read_text().replace("./weights.txt", "./v2.txt"))
    (state / "v2.txt").write_text("second weights\n")
    run_cli(home, "apply", str(state), "--yes", timeout=180)
    assert "node 1: second weights" in _setup_log(home, "cm1")
    run_cli(home, "down", "cm1")


def test_a_cluster_file_mount_without_setup_still_reaches_the_nodes(home: Path,
                                                                    tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "notes.txt").write_text("just files\n")
    (state / "cluster.yaml").write_text(
        "kind: Cluster\nname: cm2\nresources: {cpus: 1+}\n"
        "file_mounts:\n  ~/notes.txt: ./notes.txt\n")
    run_cli(home, "apply", str(state), "--yes", timeout=180)
    copies = list((home / "local" / "cm2").rglob("notes.txt"))
    assert [p.read_text() for p in copies] == ["just files\n"], copies
    run_cli(home, "down", "cm2")


def test_a_missing_cluster_mount_source_is_a_file_line_error_at_plan(home: Path,
                                                                     tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "cluster.yaml").write_text(
        "kind: Cluster\nname: cm3\nresources: {cpus: 1+}\nsetup: cat ~/w.txt\n"
        "file_mounts:\n  ~/w.txt: ./no-such-file.txt\n")
    out = run_cli(home, "plan", str(state), check=1)
    text = out.stdout + out.stderr
    assert "cluster.yaml:6" in text and "no-such-file.txt" in text, text
    assert "Traceback" not in text
    assert status_json(home)["clusters"] == []


def test_a_cluster_mount_mode_no_node_has_is_refused_at_plan(home: Path,
                                                             tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "cluster.yaml").write_text(
        "kind: Cluster\nname: cm4\nresources: {cpus: 1+}\n"
        "file_mounts:\n  /d:\n    name: never-made\n    mode: MOUNT\n")
    out = run_cli(home, "plan", str(state), check=1)
    assert "Cluster/cm4" in out.stdout + out.stderr
    assert "mode MOUNT needs a FUSE" in out.stdout + out.stderr


def test_a_cluster_storage_mount_is_staged_before_setup_and_released_on_down(
    aws: str, home: Path, tmp_path: Path
) -> None:
    import boto3

    data = tmp_path / "dataset"
    data.mkdir()
    (data / "labels.txt").write_text("bucket labels\n")
    state = tmp_path / "state"
    state.mkdir()
    (state / "skystate.yaml").write_text(
        f"kind: Project\nname: cmp\nproviders:\n  local: {{}}\n  aws: {{endpoint_url: '{aws}'}}\n")
    (state / "cluster.yaml").write_text(
        "kind: Cluster\nname: cm5\nresources: {infra: local, cpus: 1+}\n"
        f"file_mounts:\n  /data:\n    name: cm-tmp\n    source: {data}\n"
        "    persistent: false\n"
        "setup: cat ~/../root/data/labels.txt\n")  # a local node's / is its root/
    plan = run_cli(home, "plan", str(state)).stdout
    assert "storage: /data <- s3://cm-tmp" in plan, plan
    run_cli(home, "apply", str(state), "--yes", timeout=180)
    assert "bucket labels" in _setup_log(home, "cm5")
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=aws)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="cm-tmp")["Contents"]}
    assert keys == {"labels.txt"}
    run_cli(home, "down", "cm5")
    names = {b["Name"] for b in s3.list_buckets().get("Buckets") or []}
    assert "cm-tmp" not in names  # ephemeral, made by skystate, used by no other cluster
