"""Storage mounts on an AWS cluster (moto EC2 + S3; the nodes are the test sshd), from a
state directory: plan shows them, apply copies the bucket to every node before setup,
``down`` deletes the ephemeral bucket skystate made."""

from __future__ import annotations

import json
from pathlib import Path

import moto_fixture
import pytest
import sshd_fixture
from helpers import run_cli
from sshd_fixture import SSHD
from test_aws_provider import aws_config
from test_storage import buckets, s3

sshd = sshd_fixture.sshd
moto_url = moto_fixture.moto_url
aws = moto_fixture.aws

pytestmark = pytest.mark.slow


def _state(tmp_path: Path, aws: str, sshd: SSHD, mount: str) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "hello.txt").write_text("hello from the bucket\n")
    state = tmp_path / "state"
    state.mkdir()
    config = aws_config(aws, sshd, tmp_path)
    (state / "skystate.yaml").write_text(
        "kind: Project\nname: stor\nproviders:\n  aws: " + json.dumps(config) + "\n")
    (state / "c.yaml").write_text(
        "kind: Cluster\nname: stc\nnum_nodes: 2\nresources: {infra: aws/us-east-1, cpus: 2+}\n"
        "---\nkind: Job\nname: read\ncluster: stc\nnum_nodes: 2\n"
        f"file_mounts:\n  /data:\n{mount}"
        "setup: test -f ~/../root/data/hello.txt\n"
        "run: echo rank $SKYPILOT_NODE_RANK; cat ~/../root/data/hello.txt\n")
    return state


def test_copy_mount_reaches_every_aws_node_and_the_ephemeral_bucket_goes_on_down(
    aws: str, sshd: SSHD, home: Path, tmp_path: Path
) -> None:
    mount = f"    name: stor-data\n    source: {tmp_path / 'data'}\n    persistent: false\n"
    state = _state(tmp_path, aws, sshd, mount)
    plan = run_cli(home, "plan", str(state), timeout=60).stdout
    assert "storage: /data <- s3://stor-data (COPY (mode unset), deleted on down" in plan
    run_cli(home, "apply", str(state), "--yes", "--wait", timeout=240)
    log = run_cli(home, "logs", "stc", "1", timeout=60).stdout
    assert log.count("hello from the bucket") == 2 and "rank 1" in log, log
    assert "stor-data" in buckets(aws)
    assert s3(aws).get_bucket_tagging(Bucket="stor-data")["TagSet"] == [
        {"Key": "skystate-storage-owner", "Value": "stor"}]
    run_cli(home, "down", "stc", timeout=120)
    assert "stor-data" not in buckets(aws)


def test_mount_mode_is_a_plan_error_naming_the_file(
    aws: str, sshd: SSHD, home: Path, tmp_path: Path
) -> None:
    state = _state(tmp_path, aws, sshd, "    name: stor-data\n    mode: MOUNT\n")
    out = run_cli(home, "plan", str(state), check=None, timeout=60)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "c.yaml" in text and "mode MOUNT needs a FUSE mounter" in text, text
    assert "stor-data" not in buckets(aws)
