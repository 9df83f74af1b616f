"""A task that asks for a choice of accelerators (``{A100: 1, T4: 1}``) runs on a cluster
that has one of them, taking that one's devices, through every path a job takes: SDK
launch and exec, a declarative Job, a managed job. (Before: the job asked for whichever
option a set iterated first, or for none, and could never start or got no device.)
Real local clusters whose simulated inventory has only T4s."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import run_cli, wait_sdk_job

import skystate as sky
from skystate.reconcile.fitting import option_on
from skystate.spec.resources import Resources

pytestmark = pytest.mark.slow

RUN = 'echo "devices=$CUDA_VISIBLE_DEVICES"'


@pytest.fixture
def t4_home(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text("providers:\n  local: {accelerators: {T4: 2}}\n")
    return home


def _choice_task() -> sky.Task:
    task = sky.Task(run=RUN)
    task.set_resources({sky.Resources(infra="local", accelerators="A100:1"),
                        sky.Resources(infra="local", accelerators="T4:1")})
    return task




def test_the_option_the_cluster_serves_is_chosen() -> None:
    offer = {"accelerators": {"T4": 2}, "cpus": 8}
    choice = [Resources(accelerators="A100:1"), Resources(accelerators="T4:1")]
    assert option_on(choice, offer).accelerators == {"T4": 1}
    assert option_on(reversed(choice), offer).accelerators == {"T4": 1}
    any_of = Resources.model_validate({"accelerators": {"A100": 1, "T4": 1}})
    assert option_on([any_of], offer).accelerators == {"T4": 1}
    assert option_on([any_of], {"accelerators": {"A100": 1}}).accelerators == {"A100": 1}
    assert option_on([any_of], None).accelerators == {"A100": 1}  # no offer: the first
    assert option_on([Resources(accelerators="T4:1")], offer, 1, 2).accelerators == {"T4": 1}


def test_sdk_launch_and_exec_of_a_choice_take_the_clusters_t4(t4_home: Path) -> None:
    job_id, _ = sky.get(sky.launch(_choice_task(), cluster_name="choice"))
    assert wait_sdk_job("choice", job_id) == sky.JobStatus.SUCCEEDED
    exec_id, _ = sky.get(sky.exec(_choice_task(), cluster_name="choice"))
    assert wait_sdk_job("choice", exec_id) == sky.JobStatus.SUCCEEDED
    for job in (job_id, exec_id):
        log = next(t4_home.glob(f"local/choice/node-0/logs/jobs/{job}.log")).read_text()
        assert "devices=0" in log or "devices=1" in log, log
    sky.get(sky.down("choice"))


def test_a_declarative_job_with_a_choice_runs_on_the_t4_cluster(t4_home: Path,
                                                                 tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "project.yaml").write_text(
        "kind: Project\nname: choice\ndefaults:\n  resources: {infra: local}\n"
        "providers:\n  local: {accelerators: {T4: 2}}\n")
    (state / "cluster.yaml").write_text(
        "kind: Cluster\nname: gpus\nresources: {accelerators: {A100: 1, T4: 1}}\n")
    (state / "job.yaml").write_text(
        f"kind: Job\nname: pick\ncluster: gpus\nresources: {{accelerators: {{A100: 1, T4: 1}}}}\n"
        f"run: '{RUN}'\n")
    out = run_cli(t4_home, "apply", str(state), "--yes", "--wait", timeout=180).stdout
    assert "SUCCEEDED" in out and "devices=0" in out, out
    run_cli(t4_home, "destroy", str(state), "--yes", timeout=120, check=None)


def test_a_managed_job_with_a_choice_succeeds_on_t4(t4_home: Path) -> None:
    job_id, _ = sky.get(sky.jobs.launch(_choice_task(), name="choice"))
    deadline = time.time() + 120
    while True:
        [job] = [j for j in sky.get(sky.jobs.queue(refresh=False)) if j["job_id"] == job_id]
        if str(job["status"]) in ("SUCCEEDED", "FAILED", "FAILED_SETUP", "FAILED_NO_RESOURCE",
                                  "FAILED_CONTROLLER", "FAILED_PRECHECKS"):
            break
        assert time.time() < deadline, job
        time.sleep(0.2)
    assert str(job["status"]) == "SUCCEEDED", job
