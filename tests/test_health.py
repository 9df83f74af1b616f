"""Sync and health status: the rules on records, what applies record, what status shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli, status_json, wait_for_job

from skystate.reconcile.health import annotate, cluster_health, cluster_sync, record_outcomes
from skystate.reconcile.outcomes import ActionOutcome
from skystate.reconcile.plan import Action, ActionType, Plan
from skystate.reconcile.store import Store

UP = {"name": "c", "status": "UP", "power": "up", "managed_by": "state",
      "sync_status": "Synced"}


@pytest.mark.parametrize(("record", "sync", "health"), [
    (UP, "Synced", "Healthy"),
    ({**UP, "sync_status": None}, "Unknown", "Healthy"),
    ({**UP, "status": "INIT"}, "OutOfSync", "Progressing"),
    ({**UP, "status": None, "vanished_at": 1.0}, "OutOfSync", "Missing"),
    ({**UP, "status": "STOPPED"}, "OutOfSync", "Degraded"),  # stopped behind our back
    ({**UP, "status": "STOPPED", "stopped_by_autostop": True}, "Synced", "Healthy"),
    ({**UP, "status": "STOPPED", "power": "stopped"}, "Synced", "Healthy"),
    ({**UP, "power": "stopped"}, "OutOfSync", "Healthy"),
    ({**UP, "sync_status": "OutOfSync", "last_error": "setup exited with 3"},
     "OutOfSync", "Degraded"),
    # an SDK cluster has no files: stopped by `skystate stop` is what was asked
    ({**UP, "managed_by": "sdk", "status": "STOPPED", "sync_status": None}, "Synced",
     "Healthy"),
])
def test_cluster_sync_and_health_rules(record: dict[str, Any], sync: str, health: str) -> None:
    assert (cluster_sync(record).value, cluster_health(record).value) == (sync, health)


def _action(kind: ActionType, name: str = "c") -> Action:
    return Action(type=kind, kind="Cluster", address=f"Cluster/{name}", name=name)


def test_annotate_takes_sync_from_a_plan_when_given() -> None:
    plan = Plan(owner="o", state_version=1, actions=[_action(ActionType.START, "a"),
                                                     _action(ActionType.NOOP, "b")])
    records = [{**UP, "name": "a", "status": "STOPPED"}, {**UP, "name": "b",
                                                            "sync_status": "OutOfSync"}]
    rows = {r["name"]: r for r in annotate(records, plan)}
    assert (rows["a"]["sync_status"], rows["b"]["sync_status"]) == ("OutOfSync", "Synced")
    assert set(rows["a"]) >= {"sync_status", "health_status", "last_reconcile_at",
                              "last_error"}
    assert annotate(records)[1]["sync_status"] == "OutOfSync"  # no plan: what was recorded


def test_record_outcomes_writes_only_what_changed(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.json")
    with store.transaction():
        store.put_cluster({**UP, "sync_status": None})
    noop, start = _action(ActionType.NOOP), _action(ActionType.START)
    with store.transaction():
        record_outcomes(store, [noop], now=10.0)
    version = store.version
    record = store.cluster("c") or {}
    assert (record["sync_status"], record["last_reconcile_at"]) == ("Synced", 10.0)
    with store.transaction():  # still in sync: nothing written, the version stays
        record_outcomes(store, [noop], now=20.0)
    assert store.version == version
    failed = ActionOutcome(start, "failed", "ProviderError: no capacity", 0.1)
    with store.transaction():
        record_outcomes(store, [start], [failed], now=30.0)
    record = store.cluster("c") or {}
    assert (record["sync_status"], record["last_error"], record["last_reconcile_at"]) == (
        "OutOfSync", "ProviderError: no capacity", 30.0)
    with store.transaction():
        record_outcomes(store, [start], [ActionOutcome(start, "succeeded", "started", 0.1)],
                        now=40.0)
    record = store.cluster("c") or {}
    assert (record["sync_status"], record["last_error"]) == ("Synced", None)


# --- end to end: applies record, status shows ---------------------------------------------


def _write(folder: Path, setup: str, run: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "skystate.yaml").write_text("kind: Project\nname: team\n"
                                          "defaults:\n  resources: {infra: local}\n")
    (folder / "c.yaml").write_text(
        f"kind: Cluster\nname: box\nresources: {{cpus: 1+}}\nsetup: {setup}\n---\n"
        f"kind: Job\nname: once\ncluster: box\nrun: {run}\n")


def test_failed_apply_is_out_of_sync_and_degraded_until_fixed(home: Path,
                                                              tmp_path: Path) -> None:
    folder = tmp_path / "state"
    _write(folder, setup="exit 3", run="exit 1")
    run_cli(home, "apply", str(folder), "--yes", check=1)
    status = status_json(home)
    box = status["clusters"][0]
    assert (box["sync_status"], box["health_status"]) == ("OutOfSync", "Degraded")
    assert "setup exited with code 3" in box["last_error"]
    assert box["last_reconcile_at"] is not None
    job = status["jobs"][0] if status["jobs"] else None
    assert job is None or job["sync_status"] == "OutOfSync"  # skipped: its cluster failed
    table = run_cli(home, "status").stdout
    assert "OutOfSync" in table and "Degraded" in table and "Last errors" in table

    _write(folder, setup="echo ok", run="exit 1")
    run_cli(home, "apply", str(folder), "--yes")
    wait_for_job(home, "box", "once")
    status = status_json(home)
    box = status["clusters"][0]
    assert (box["sync_status"], box["health_status"], box["last_error"]) == (
        "Synced", "Healthy", None)
    job = status["jobs"][0]
    assert (job["status"], job["sync_status"], job["health_status"]) == (
        "FAILED", "Synced", "Degraded")  # applied as written; the run itself failed
