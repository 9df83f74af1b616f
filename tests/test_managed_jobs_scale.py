"""Managed jobs at scale and after a long controller downtime: 100 jobs (queued and
running) cancelled leave none CANCELLING and no cluster; a job whose cluster still runs
it after the API server was down is adopted, never relaunched."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import skystate as sky
from skystate.jobs import ManagedJobStatus as S

pytestmark = pytest.mark.slow


@pytest.fixture
def home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text("providers:\n  local: {}\n")
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "30")
    return home


def _queue() -> list[dict[str, Any]]:
    return sky.get(sky.jobs.queue(refresh=False, all_users=True))


def _gated(gate: Path, extra: str = "") -> sky.Task:
    task = sky.Task(run=f"{extra}while [ ! -f {gate} ]; do sleep 0.2; done")
    task.set_resources(sky.Resources(infra="local"))
    return task


def _state(home: Path) -> dict[str, Any]:
    return json.loads((home / "state.json").read_text())


def _local_dirs(home: Path) -> list[str]:
    root = home / "local"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def test_a_hundred_queued_and_running_jobs_cancelled_leave_nothing(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # capacity for 20: 20 jobs run, the other 80 wait for capacity (PENDING, retrying)
    (home / "config.yaml").write_text("providers:\n  local: {accelerators: {A100: 20}}\n")
    monkeypatch.setenv("SKYSTATE_JOBS_LAUNCH_RETRIES", "100000")
    task = _gated(tmp_path / "never")
    task.set_resources(sky.Resources(infra="local", accelerators="A100:1"))
    ids = [sky.get(sky.jobs.launch(task, name=f"many-{n}"))[0] for n in range(100)]
    deadline = time.time() + 600
    while sum(j["status"] is S.RUNNING for j in _queue()) < 20:
        assert time.time() < deadline, "jobs never started"
        time.sleep(0.5)
    statuses = [j["status"] for j in _queue()]
    assert statuses.count(S.PENDING) >= 50, statuses  # queued (no capacity yet)
    started = time.time()
    assert sorted(sky.get(sky.jobs.cancel(all=True))) == ids
    deadline = time.time() + 600  # generous: the machine is shared and loaded
    while True:
        statuses = [j["status"] for j in _queue()]
        if all(s.is_terminal() for s in statuses):
            break
        assert time.time() < deadline, f"not all cancelled: {sorted(map(str, statuses))}"
        time.sleep(0.5)
    took = time.time() - started
    assert set(statuses) == {S.CANCELLED}
    assert not _state(home).get("clusters") and _local_dirs(home) == []
    print(f"100 managed jobs cancelled in {took:.1f}s")


def test_after_a_long_downtime_a_job_still_running_is_adopted_not_relaunched(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from skystate.reconcile.store import Store

    monkeypatch.setenv("SKYSTATE_JOBS_UNKNOWN_WINDOW_SECONDS", "300")  # 10 s at scale 30
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    job_id, _ = sky.get(sky.jobs.launch(_gated(gate, f"echo start >> {runs}; ")))
    deadline = time.time() + 120
    while not runs.exists():
        assert time.time() < deadline, _queue()
        time.sleep(0.1)
    sky.api_stop()
    # While the server was down for two hours: the job's cluster record was lost (a state
    # restored from a backup) and its last look was "unreachable" long ago.
    store = Store()
    with store.transaction():
        store.delete_cluster(f"mj-{job_id}-1")
        store.set_nodes(f"mj-{job_id}-1", [])
        job = store.managed_job(job_id)
        assert job is not None and job["status"] == "RUNNING"
        store.put_managed_job({**job, "unknown_since": time.time() - 7200})
    faults = tmp_path / "faults.json"  # and its provider answers late at first
    faults.write_text(json.dumps({"op": "observe", "error": "timeout", "times": 5}))
    monkeypatch.setenv("SKYSTATE_FAULTS", str(faults))
    deadline = time.time() + 120
    while not any(c["name"] == f"mj-{job_id}-1" for c in
                  (_state(home).get("clusters") or {}).values()):
        assert time.time() < deadline, "the running cluster was never re-recorded"
        [row] = _queue()  # the first call starts the server again
        assert row["attempt"] == 1 and row["recovery_count"] == 0, row
        time.sleep(0.2)
    gate.touch()
    deadline = time.time() + 120
    while not (row := _queue()[0])["status"].is_terminal():
        assert time.time() < deadline, row
        time.sleep(0.2)
    assert row["status"] is S.SUCCEEDED and row["attempt"] == 1
    assert row["recovery_count"] == 0
    assert runs.read_text() == "start\n"  # ran once
    controller = (home / "managed_jobs" / str(job_id) / "controller.log").read_text()
    assert "the unknown window restarts" in controller and "re-recorded" in controller
    assert not _state(home).get("clusters") and _local_dirs(home) == []


def test_a_cluster_gone_after_a_downtime_past_its_safety_autodown_is_not_relaunched(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import subprocess
    import sys

    monkeypatch.setenv("SKYSTATE_JOBS_SAFETY_AUTODOWN_MINUTES", "1")  # 2 s at scale 30
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    job_id, _ = sky.get(sky.jobs.launch(_gated(gate, f"echo start >> {runs}; ")))
    deadline = time.time() + 120
    while not runs.exists():
        assert time.time() < deadline, _queue()
        time.sleep(0.1)
    sky.api_stop()
    # The server stays down past the safety autodown: the cluster is gone when it is back
    # (here preempted; a finished job's cluster downing itself looks the same).
    subprocess.run([sys.executable, "-m", "skystate.providers.local", "preempt",
                    f"mj-{job_id}-1"], check=True, capture_output=True, env=os.environ.copy())
    beat = home / "managed_jobs" / "controller.heartbeat"
    assert beat.exists()
    old = time.time() - 7200
    os.utime(beat, (old, old))
    deadline = time.time() + 120
    while not (row := _queue()[0])["status"].is_terminal():
        assert time.time() < deadline, row
        assert row["attempt"] == 1, row
        time.sleep(0.2)
    assert row["status"] is S.FAILED_CONTROLLER and row["attempt"] == 1
    assert "not relaunched" in row["failure_reason"]
    assert runs.read_text() == "start\n"
    assert not _state(home).get("clusters") and _local_dirs(home) == []
