"""Managed jobs (``sky.jobs``) end to end: the API server's embedded controller launching,
watching, recovering and tearing down real local clusters."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import kill_everything_under

import skystate as sky
from skystate.jobs import ManagedJobStatus as S

pytestmark = pytest.mark.slow

SEED_KEYS = {"job_id", "job_name", "resources", "submitted_at", "end_at", "duration",
             "recovery_count", "status", "cluster_resources", "region"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("providers:\n  local: {}\n")
    monkeypatch.setenv("SKYSTATE_HOME", str(home))
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "30")  # checks every 0.1 s
    yield home
    kill_everything_under(tmp_path)


def _job(job_id: int) -> dict[str, Any]:
    return next(j for j in sky.get(sky.jobs.queue(refresh=False, all_users=True))
                if j["job_id"] == job_id)


def _wait_status(job_id: int, wanted: set[S], timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.time() + timeout
    while True:
        job = _job(job_id)
        if job["status"] in wanted:
            return job
        assert time.time() < deadline, f"job {job_id} is {job['status']}, wanted {wanted}"
        time.sleep(0.1)


def _clusters(home: Path) -> list[str]:
    state = json.loads((home / "state.json").read_text())
    return [c["name"] for c in (state.get("clusters") or {}).values()]


def _local_dirs(home: Path) -> list[str]:
    root = home / "local"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def test_seed_calls_launch_queue_tail_logs_and_the_cluster_is_gone(home: Path) -> None:
    task = sky.Task(run="echo hello from $SKYPILOT_TASK_ID")
    task.set_resources(sky.Resources(infra="local"))
    job_id, controller_handle = sky.get(sky.jobs.launch(task, name="mj"))
    assert isinstance(job_id, int) and controller_handle.kind == "embedded"
    records = sky.get(sky.jobs.queue(refresh=False))
    [record] = [r for r in records if r["job_id"] == job_id]
    assert set(record) >= SEED_KEYS and record["job_name"] == "mj"
    assert isinstance(record["status"], sky.jobs.ManagedJobStatus)
    out = io.StringIO()
    assert sky.jobs.tail_logs(job_id=job_id, follow=True, output_stream=out) == 0
    assert "hello from sky-managed-" in out.getvalue()
    record = _job(job_id)
    assert record["status"] is S.SUCCEEDED and record["recovery_count"] == 0
    assert record["end_at"] and record["duration"] >= 0
    assert _clusters(home) == [] and _local_dirs(home) == []
