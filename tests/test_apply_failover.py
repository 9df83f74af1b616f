"""Declarative creates fail over along the plan's offers, like ``sky.launch`` does.

Capacity errors are injected with the real ``SKYSTATE_FAULTS`` wrapper around the real
local provider (the server that runs the apply inherits it from this test's env)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_cli, status_json

pytestmark = pytest.mark.slow

PROJECT = "kind: Project\nname: fo\nproviders:\n  local: {accelerators: {A100: 2}}\n"
CLUSTER = ("kind: Cluster\nname: fo\nresources:\n  ordered:\n"
           "    - {infra: local, accelerators: A100:1}\n    - {infra: local, cpus: 1}\n")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    (state / "skystate.yaml").write_text(PROJECT)
    (state / "c.yaml").write_text(CLUSTER)
    return state


def _faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, times: int | None) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"cluster": "fo", "op": "provision", "error": "unavailable",
                                  "times": times}))
    monkeypatch.setenv("SKYSTATE_FAULTS", str(faults))


def test_the_plan_records_the_failover_order(home: Path, state: Path) -> None:
    plan = json.loads(run_cli(home, "plan", str(state), "--json").stdout)
    [create] = [a for a in plan["actions"] if a["address"] == "Cluster/fo"]
    assert create["offer"]["accelerators"] == {"A100": 1}
    assert [o["accelerators"] for o in create["failover_offers"]] == [{}]


def test_a_capacity_error_moves_the_create_to_the_next_offer(
        home: Path, state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _faults(tmp_path, monkeypatch, times=1)
    out = run_cli(home, "apply", str(state), "--yes").stdout
    assert "after 1 failed offer(s)" in out and "no capacity" in out
    [cluster] = status_json(home)["clusters"]
    assert cluster["status"] == "UP"
    assert "A100" not in cluster["resources"]  # it landed on the cpus-only offer
    run_cli(home, "plan", str(state), "--detailed-exitcode", check=0)


def test_when_every_offer_fails_nothing_is_left_running(
        home: Path, state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _faults(tmp_path, monkeypatch, times=None)
    proc = run_cli(home, "apply", str(state), "--yes", check=1)
    assert "every offer failed (2)" in proc.stdout + proc.stderr
    clusters = status_json(home)["clusters"]
    assert [c["status"] for c in clusters] in ([], ["INIT"])
    assert not list((home / "local").glob("fo/node-*"))
