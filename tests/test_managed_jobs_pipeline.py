"""Managed-job pipelines (a chain Dag as one job), FAILED_NO_RESOURCE, FAILED_CONTROLLER and
the owner check of ``jobs cancel``, against the API server's embedded controller."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli

import skystate as sky
from skystate.exceptions import ClusterOwnerIdentityMismatchError
from skystate.jobs import ManagedJobStatus as S

pytestmark = pytest.mark.slow


@pytest.fixture
def home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """conftest's home (its server stopped, its processes ended after), checking fast."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text("providers:\n  local: {}\n")
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "30")
    return home


def _rows(job_id: int) -> list[dict[str, Any]]:
    return [j for j in sky.get(sky.jobs.queue(refresh=False, all_users=True))
            if j["job_id"] == job_id]


def _wait_done(job_id: int, timeout: float = 120.0) -> list[dict[str, Any]]:
    deadline = time.time() + timeout
    while True:
        rows = _rows(job_id)
        if rows and all(r["status"].is_terminal() for r in rows):
            return rows
        assert time.time() < deadline, rows
        time.sleep(0.1)


def _clusters(home: Path) -> list[str]:
    state = json.loads((home / "state.json").read_text())
    return [c["name"] for c in (state.get("clusters") or {}).values()]


def _task(run: str, name: str) -> sky.Task:
    task = sky.Task(name=name, run=run)
    task.set_resources(sky.Resources(infra="local"))
    return task


def test_a_dag_runs_task_after_task_each_on_its_own_cluster(home: Path,
                                                            tmp_path: Path) -> None:
    order = tmp_path / "order"
    with sky.Dag(name="pipe") as dag:
        first = _task(f"echo prep >> {order}; echo id $SKYPILOT_TASK_ID", "prep")
        second = _task(f"echo train >> {order}; echo id $SKYPILOT_TASK_ID", "train")
        first >> second
    job_id, _ = sky.get(sky.jobs.launch(dag))
    rows = _wait_done(job_id)
    assert [(r["task_id"], r["task_name"], r["status"]) for r in rows] == [
        (0, "prep", S.SUCCEEDED), (1, "train", S.SUCCEEDED)]
    assert {r["job_name"] for r in rows} == {"pipe"}
    assert order.read_text() == "prep\ntrain\n"
    assert [a["cluster"] for r in rows for a in r["attempts"]] == \
        [f"mj-{job_id}-1", f"mj-{job_id}-2"]  # each task on its own cluster
    out = io.StringIO()
    assert sky.jobs.tail_logs(job_id=job_id, follow=True, output_stream=out) == 0
    ids = [line.split()[1] for line in out.getvalue().splitlines() if line.startswith("id ")]
    assert len(ids) == 2 and ids[0] != ids[1] and ids[0].endswith("-0")
    assert _clusters(home) == []


def test_a_failed_task_stops_the_chain_and_later_tasks_are_cancelled(home: Path,
                                                                     tmp_path: Path) -> None:
    marker = tmp_path / "third-ran"
    dag = sky.Dag(name="broken")
    for task in (_task("echo ok", "a"), _task("echo bad; exit 3", "b"),
                 _task(f"touch {marker}", "c")):
        dag.add(task)
    job_id, _ = sky.get(sky.jobs.launch(dag))
    rows = _wait_done(job_id)
    assert [r["status"] for r in rows] == [S.SUCCEEDED, S.FAILED, S.CANCELLED]
    assert "exit code 3" in rows[1]["failure_reason"]
    assert "earlier task" in rows[2]["failure_reason"]
    assert not marker.exists()
    assert sky.jobs.tail_logs(job_id=job_id, follow=False, output_stream=io.StringIO()) == 100
    assert _clusters(home) == []


def test_cli_launches_a_multi_document_pipeline_yaml(home: Path, tmp_path: Path) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text("name: two-step\n---\nname: one\nresources: {infra: local}\n"
                        "run: echo step one\n---\nname: two\nresources: {infra: local}\n"
                        "run: echo step two\n")
    launched = run_cli(home, "jobs", "launch", str(pipeline), timeout=180)
    assert "step one" in launched.stdout and "step two" in launched.stdout
    rows = json.loads(run_cli(home, "jobs", "queue", "--json").stdout)
    assert [(r["task_id"], r["task_name"], r["status"]) for r in rows] == [
        (0, "one", "SUCCEEDED"), (1, "two", "SUCCEEDED")]
    table = run_cli(home, "jobs", "queue").stdout
    assert "two-step/one" in table and "two-step/two" in table


def test_cancel_of_a_pipeline_cancels_its_later_tasks(home: Path, tmp_path: Path) -> None:
    dag = sky.Dag(name="long")
    dag.add(_task(f"while [ ! -f {tmp_path}/never ]; do sleep 0.1; done", "wait"))
    dag.add(_task("echo never", "after"))
    job_id, _ = sky.get(sky.jobs.launch(dag))
    deadline = time.time() + 90
    while _rows(job_id)[0]["status"] is not S.RUNNING:
        assert time.time() < deadline, _rows(job_id)
        time.sleep(0.1)
    assert sky.get(sky.jobs.cancel(job_ids=[job_id])) == [job_id]
    assert [r["status"] for r in _wait_done(job_id)] == [S.CANCELLED, S.CANCELLED]
    assert _clusters(home) == []


def test_capacity_retries_exhausted_end_in_failed_no_resource(
        home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"op": "provision", "error": "unavailable"}))
    monkeypatch.setenv("SKYSTATE_FAULTS", str(faults))
    monkeypatch.setenv("SKYSTATE_JOBS_LAUNCH_RETRIES", "2")
    job_id, _ = sky.get(sky.jobs.launch(_task("echo never", "full")))
    [row] = _wait_done(job_id)
    assert row["status"] is S.FAILED_NO_RESOURCE
    assert "no capacity after 2 launch tries" in row["failure_reason"]
    assert _clusters(home) == []


def test_a_step_that_keeps_raising_ends_in_failed_controller_saying_why(
        home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"  # every submit to the job's cluster raises
    faults.write_text(json.dumps({"op": "submit", "error": "transient"}))
    monkeypatch.setenv("SKYSTATE_FAULTS", str(faults))
    monkeypatch.setenv("SKYSTATE_JOBS_MAX_STEP_ERRORS", "3")
    job_id, _ = sky.get(sky.jobs.launch(_task("echo never", "crashy")))
    [row] = _wait_done(job_id)
    assert row["status"] is S.FAILED_CONTROLLER
    assert row["failure_reason"].startswith("controller error: ProviderError")
    out = io.StringIO()
    sky.jobs.tail_logs(job_id=job_id, controller=True, follow=False, output_stream=out)
    assert "giving up after 3 failed steps" in out.getvalue()
    assert _clusters(home) == []  # its cluster was torn down


def test_cancel_of_another_users_job_is_refused_unless_all_users(
        home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SKYSTATE_USER", "alice")
    job_id, _ = sky.get(sky.jobs.launch(
        _task(f"while [ ! -f {tmp_path}/never ]; do sleep 0.1; done", "hers")))
    monkeypatch.setenv("SKYSTATE_USER", "bob")
    with pytest.raises(ClusterOwnerIdentityMismatchError, match="owned by user 'alice'"):
        sky.get(sky.jobs.cancel(job_ids=[job_id]))
    with pytest.raises(ClusterOwnerIdentityMismatchError):
        sky.get(sky.jobs.cancel(name="hers"))
    assert sky.get(sky.jobs.cancel(all=True)) == []  # all: only bob's own jobs
    assert _rows(job_id)[0]["status"] not in (S.CANCELLING, S.CANCELLED)
    assert sky.get(sky.jobs.cancel(job_ids=[job_id], all_users=True)) == [job_id]
    assert _wait_done(job_id)[0]["status"] is S.CANCELLED
    assert _clusters(home) == []
