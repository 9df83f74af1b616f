"""``kind: ManagedJob`` documents: once per spec hash, a new hash cancels and relaunches,
removal cancels, ``protect`` refuses both, other owners' jobs are never touched; the plan
shows the offer, $/hour, spot or on-demand and the estimated cost of ``max_duration``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli

import skystate as sky
from skystate.jobs import ManagedJobStatus as S

pytestmark = pytest.mark.slow

PROJECT = "kind: Project\nname: mjd\nproviders:\n  local: {}\n"


@pytest.fixture
def home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text("providers:\n  local: {}\n")
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "30")
    return home


def _doc(run: str, extra: str = "") -> str:
    return (f"kind: ManagedJob\nname: train\nresources: {{infra: local}}\n{extra}"
            f"run: {json.dumps(run)}\n")


def _jobs() -> list[dict[str, Any]]:
    return sorted(sky.get(sky.jobs.queue(refresh=False, all_users=True)),
                  key=lambda j: j["job_id"])


def _wait(job_id: int, wanted: set[S], timeout: float = 90) -> dict[str, Any]:
    deadline = time.time() + timeout
    while True:
        job = next(j for j in _jobs() if j["job_id"] == job_id)
        if job["status"] in wanted:
            return job
        assert time.time() < deadline, job
        time.sleep(0.1)


def _plan(home: Path, state: Path) -> dict[str, Any]:
    return json.loads(run_cli(home, "plan", str(state), "--json").stdout)


def _managed_actions(plan: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["type"], a["address"]) for a in plan["actions"] if a["kind"] == "ManagedJob"]


def _clusters(home: Path) -> list[str]:
    state = json.loads((home / "state.json").read_text())
    return [c["name"] for c in (state.get("clusters") or {}).values()]


def test_a_managed_job_document_runs_once_per_spec(home: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "skystate.yaml").write_text(PROJECT)
    gate = tmp_path / "gate"
    (state / "job.yaml").write_text(_doc(f"while [ ! -f {gate} ]; do sleep 0.1; done; "
                                         "echo one", "max_duration: 2h\n"))
    plan = _plan(home, state)
    [submit] = [a for a in plan["actions"] if a["kind"] == "ManagedJob"]
    assert submit["type"] == "submit-job" and submit["reason"] == "not yet launched"
    assert submit["offer"]["provider"] == "local" and submit["offer"]["use_spot"] is False
    assert submit["hourly_after"] == pytest.approx(submit["offer"]["hourly_price"])
    assert submit["after"]["estimated_cost"] == pytest.approx(submit["hourly_after"] * 2)
    shown = run_cli(home, "plan", str(state)).stdout
    assert "ManagedJob/train" in shown and "on-demand" in shown and "est. $" in shown
    run_cli(home, "apply", str(state), "--yes", timeout=120)
    [first] = _jobs()
    assert first["job_name"] == "train"
    _wait(first["job_id"], {S.RUNNING})
    assert _managed_actions(_plan(home, state)) == [("noop", "ManagedJob/train")]
    run_cli(home, "apply", str(state), "--yes", timeout=120)  # same spec: nothing
    assert len(_jobs()) == 1
    (state / "job.yaml").write_text(_doc(f"while [ ! -f {gate} ]; do sleep 0.1; done; "
                                         "echo two", "max_duration: 2h\n"))
    assert _managed_actions(_plan(home, state)) == [("cancel-job", "ManagedJob/train"),
                                                    ("submit-job", "ManagedJob/train")]
    run_cli(home, "apply", str(state), "--yes", timeout=120)
    old, new = _jobs()
    assert _wait(old["job_id"], {S.CANCELLED, S.SUCCEEDED})["status"] is S.CANCELLED
    _wait(new["job_id"], {S.RUNNING})
    # protect: a removal is refused (as for a protected cluster)
    (state / "job.yaml").write_text(_doc(f"while [ ! -f {gate} ]; do sleep 0.1; done; "
                                         "echo two", "max_duration: 2h\nprotect: true\n"))
    run_cli(home, "apply", str(state), "--yes", timeout=120)
    (state / "job.yaml").unlink()
    refused = run_cli(home, "plan", str(state), check=None)
    assert refused.returncode != 0 and "protected" in refused.stdout + refused.stderr
    assert _jobs()[-1]["status"] is S.RUNNING
    (state / "job.yaml").write_text(_doc(f"while [ ! -f {gate} ]; do sleep 0.1; done; "
                                         "echo two", "max_duration: 2h\n"))
    run_cli(home, "apply", str(state), "--yes", timeout=120)  # protect: false, in place
    assert len(_jobs()) == 2
    # an SDK job of the same name belongs to its user, not to the state directory
    other = sky.Task(name="train", run=f"while [ ! -f {gate} ]; do sleep 0.1; done")
    other.set_resources(sky.Resources(infra="local"))
    sdk_id, _ = sky.get(sky.jobs.launch(other, name="train"))
    (state / "job.yaml").unlink()
    assert _managed_actions(_plan(home, state)) == [("cancel-job", "ManagedJob/train")]
    run_cli(home, "apply", str(state), "--yes", timeout=120)
    assert _wait(new["job_id"], {S.CANCELLED, S.SUCCEEDED})["status"] is S.CANCELLED
    assert _wait(sdk_id, {S.RUNNING})["status"] is S.RUNNING
    gate.touch()
    assert _wait(sdk_id, {S.SUCCEEDED, S.FAILED})["status"] is S.SUCCEEDED
    assert _managed_actions(_plan(home, state)) == []
    deadline = time.time() + 60
    while _clusters(home):
        assert time.time() < deadline, _clusters(home)
        time.sleep(0.2)


def test_max_duration_cancels_a_job_that_runs_past_it(home: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "skystate.yaml").write_text(PROJECT)
    (state / "job.yaml").write_text(_doc("sleep 600", "max_duration: 2s\n"))
    run_cli(home, "apply", str(state), "--yes", timeout=120)
    [job] = _jobs()
    job = _wait(job["job_id"], {S.CANCELLED, S.SUCCEEDED, S.FAILED}, timeout=120)
    assert job["status"] is S.CANCELLED and "max_duration" in job["failure_reason"]
    assert _clusters(home) == []


def test_a_bad_max_duration_is_a_file_line_error(home: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "skystate.yaml").write_text(PROJECT)
    (state / "job.yaml").write_text(_doc("true", "max_duration: soon\n"))
    proc = run_cli(home, "plan", str(state), check=None)
    assert proc.returncode != 0
    assert "job.yaml:" in proc.stdout + proc.stderr and "invalid duration" in \
        proc.stdout + proc.stderr


def test_secrets_in_a_managed_job_document_are_refused_not_planned(home: Path,
                                                                  tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "skystate.yaml").write_text(PROJECT)
    (state / "job.yaml").write_text(_doc("true", "secrets: {TOKEN: hunter2}\n"))
    proc = run_cli(home, "plan", str(state), "--json", check=None)
    assert proc.returncode != 0 or "secrets are not supported" in proc.stdout
    assert "hunter2" not in proc.stdout + proc.stderr
    assert "secrets are not supported" in proc.stdout + proc.stderr
