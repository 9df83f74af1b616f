"""The SkyPilot cluster/job SDK through the API server (requests + ``sky.get``), on real
local clusters."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from helpers import kill_everything_under, run_cli, wait_sdk_job

import skystate as sky
from skystate import exceptions

pytestmark = pytest.mark.slow


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("providers:\n  local: {accelerators: {A100: 4}}\n")
    monkeypatch.setenv("SKYSTATE_HOME", str(home))
    yield home
    kill_everything_under(tmp_path)




def test_seed_example_launch_returns_job_id_and_handle(home: Path) -> None:
    task = sky.Task(run="echo hello SkyPilot")
    task.set_resources(sky.Resources(infra="local", accelerators="A100:1"))
    job_id, handle = sky.get(sky.launch(task, cluster_name="my-cluster"))
    assert job_id == 1 and handle.cluster_name == "my-cluster" and handle.head_ip
    assert wait_sdk_job("my-cluster", job_id) is sky.JobStatus.SUCCEEDED
    out = io.StringIO()
    assert sky.tail_logs("my-cluster", job_id, follow=True, output_stream=out) == 0
    assert "hello SkyPilot" in out.getvalue()
    records = sky.get(sky.queue("my-cluster"))
    assert set(records[0]) >= {"job_id", "job_name", "username", "user_hash", "submitted_at",
                               "start_at", "end_at", "resources", "status", "log_path"}
    [record] = sky.get(sky.status(["my-cluster"]))
    assert record["status"] is sky.ClusterStatus.UP and record["autostop"] == -1
    assert set(record) >= {"name", "launched_at", "handle", "last_use", "to_down", "metadata",
                           "user_hash", "user_name", "resources_str"}


def test_failed_job_tails_100_and_exec_reuses_the_cluster(home: Path) -> None:
    sky.get(sky.launch(sky.Task(run="true"), cluster_name="c1"))
    job_id, _ = sky.get(sky.exec(sky.Task(run="echo boom; exit 3"), cluster_name="c1"))
    assert wait_sdk_job("c1", job_id) is sky.JobStatus.FAILED
    assert sky.tail_logs("c1", job_id, follow=False) == exceptions.JobExitCode.FAILED
    paths = sky.get(sky.download_logs("c1", [job_id]))
    assert "boom" in Path(paths[str(job_id)]).read_text()
    assert run_cli(home, "logs", "c1", str(job_id), check=100).stdout.strip() == "boom"


def test_launch_errors_match_the_seed(home: Path) -> None:
    with pytest.raises(exceptions.InvalidClusterNameError):
        sky.get(sky.launch(sky.Task(run="true"), cluster_name="Bad_Name"))
    with pytest.raises(exceptions.ResourcesUnavailableError) as info:
        sky.get(sky.launch(sky.Task(run="true").set_resources(sky.Resources(accelerators="H100:8")),
                   cluster_name="nope"))
    assert info.value.failover_history == []
    sky.get(sky.launch(sky.Task(run="true"), cluster_name="small"))
    with pytest.raises(exceptions.ResourcesMismatchError):
        sky.get(sky.launch(sky.Task(run="true").set_resources(sky.Resources(accelerators="A100:2")),
                   cluster_name="small"))
    with pytest.raises(exceptions.ClusterDoesNotExist):
        sky.get(sky.queue("missing"))
    with pytest.raises(ValueError):
        sky.get(sky.start("small", down=True))


def test_stop_start_down_and_not_up_errors(home: Path) -> None:
    sky.get(sky.launch(sky.Task(), cluster_name="c2"))
    sky.get(sky.stop("c2"))
    assert sky.get(sky.status(["c2"]))[0]["status"] is sky.ClusterStatus.STOPPED
    with pytest.raises(exceptions.ClusterNotUpError):
        sky.get(sky.queue("c2"))
    with pytest.raises(ValueError):
        sky.get(sky.exec(sky.Task(run="true"), cluster_name="c2"))
    sky.get(sky.start("c2", idle_minutes_to_autostop=30))
    [record] = sky.get(sky.status(["c2"]))
    assert record["status"] is sky.ClusterStatus.UP and record["autostop"] == 30
    sky.get(sky.down("c2"))
    assert sky.get(sky.status(["c2"])) == []
    with pytest.raises(exceptions.ClusterDoesNotExist):
        sky.get(sky.down("c2"))


def test_cancel_and_job_status(home: Path) -> None:
    job_id, _ = sky.get(sky.launch(sky.Task(run="sleep 60"), cluster_name="c3"))
    deadline = time.time() + 10
    while sky.get(sky.job_status("c3", [job_id]))[job_id] is not sky.JobStatus.RUNNING:
        assert time.time() < deadline
        time.sleep(0.1)
    with pytest.raises(ValueError):
        sky.get(sky.cancel("c3"))
    sky.get(sky.cancel("c3", job_ids=[job_id]))
    assert sky.get(sky.job_status("c3"))[job_id] is sky.JobStatus.CANCELLED
    assert sky.get(sky.job_status("c3", [99])) == {99: None}


def test_sdk_autostop_stops_the_cluster(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "60")
    sky.get(sky.launch(sky.Task(run="true"), cluster_name="c4"))
    sky.get(sky.autostop("c4", 1))
    deadline = time.time() + 15
    while sky.get(sky.status(["c4"], refresh=sky.StatusRefreshMode.FORCE))[0]["status"] is not (
            sky.ClusterStatus.STOPPED):
        assert time.time() < deadline, "autostop did not stop the cluster"
        time.sleep(0.3)


def test_cli_launch_exec_queue_cancel_autostop(home: Path, tmp_path: Path) -> None:
    ok, bad, slow = (tmp_path / n for n in ("ok.yaml", "bad.yaml", "slow.yaml"))
    ok.write_text("name: hi\nrun: echo from launch\n")
    bad.write_text("run: exit 2\n")
    slow.write_text("run: sleep 60\n")
    assert "from launch" in run_cli(home, "launch", str(ok), "-c", "dev").stdout
    run_cli(home, "exec", "dev", str(bad), check=100)
    run_cli(home, "exec", "dev", str(slow), "-d")
    queue = run_cli(home, "queue", "dev", "--json").stdout
    import json

    jobs = {j["job_id"]: j for j in json.loads(queue)}
    assert jobs[1]["status"] == "SUCCEEDED" and jobs[1]["job_name"] == "hi"
    assert jobs[2]["status"] == "FAILED"
    assert "give job IDs or --all" in run_cli(home, "cancel", "dev", check=2).stderr
    run_cli(home, "cancel", "dev", "3")
    assert sky.get(sky.job_status("dev", [3]))[3] is sky.JobStatus.CANCELLED
    run_cli(home, "autostop", "dev", "-i", "10", "--down")
    record = sky.get(sky.status(["dev"]))[0]
    assert (record["autostop"], record["to_down"]) == (10, True)
    run_cli(home, "autostop", "dev", "--cancel")
    assert sky.get(sky.status(["dev"]))[0]["autostop"] == -1


def test_fast_launch_skips_setup_on_an_up_cluster(home: Path) -> None:
    task = sky.Task(setup="echo SETUP-RAN", run="echo RUN")
    first, _ = sky.get(sky.launch(task, cluster_name="c5", fast=True))
    assert wait_sdk_job("c5", first) is sky.JobStatus.SUCCEEDED
    second, _ = sky.get(sky.launch(task, cluster_name="c5", fast=True))
    assert wait_sdk_job("c5", second) is sky.JobStatus.SUCCEEDED
    logs = sky.get(sky.download_logs("c5", [first, second]))
    assert "SETUP-RAN" in Path(logs[str(first)]).read_text()
    assert "SETUP-RAN" not in Path(logs[str(second)]).read_text()
