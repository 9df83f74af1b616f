"""Refresh, drift, adoption, ``refresh --rebuild`` and protection, on real local clusters.

Clusters are real agent processes under a temporary ``SKYSTATE_HOME``; drift is made the
way it happens: node processes killed, a node folder removed, a cluster stopped by its
own autostop or by someone else. Unknown providers are real too: an SSH pool whose host
refuses connections, and one whose host accepts and never answers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli, status_json, wait_until

from skystate import runtime
from skystate.providers.base import OfferQuery, ProvisionRequest
from skystate.providers.local import LocalProvider
from skystate.providers.registry import Providers
from skystate.reconcile.refresh import RefreshClass, refresh_clusters
from skystate.reconcile.store import Store

PROJECT = "kind: Project\nname: team\ndefaults:\n  resources: {infra: local}\n"


def _state_dir(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "state"
    folder.mkdir(exist_ok=True)
    (folder / "skystate.yaml").write_text(PROJECT)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


def _cluster(name: str, extra: str = "") -> str:
    return f"kind: Cluster\nname: {name}\nresources: {{cpus: 1+}}\n{extra}"


def _plan(home: Path, folder: Path, *args: str, check: int | None = 0) -> dict[str, Any]:
    proc = run_cli(home, "plan", str(folder), "--json", *args, check=check)
    return json.loads(proc.stdout)


def _changes(plan: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {a["address"]: (a["type"], a["reason"]) for a in plan["actions"]
            if a["type"] != "noop"}


def _node_dir(home: Path, cluster: str, rank: int = 0) -> Path:
    return home / "local" / cluster / f"node-{rank}"


def _kill_agent(home: Path, cluster: str) -> None:
    pid = runtime.agent_pid(_node_dir(home, cluster))
    assert pid is not None, f"{cluster} has no running agent"
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: runtime.agent_pid(_node_dir(home, cluster)) is None, 5, "agent gone")


def _clusters(home: Path) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in status_json(home)["clusters"]}


# --- rebuild --------------------------------------------------------------------------


def test_rebuild_recovers_a_deleted_database(home: Path, tmp_path: Path) -> None:
    """2 state clusters (one stopped) and one SDK cluster survive losing state.json."""
    from skystate.reconcile.imperative import ensure_cluster
    from skystate.spec.resources import Resources

    folder = _state_dir(tmp_path, a=_cluster("alpha", "setup: echo ready\n"),
                        b=_cluster("beta", "power: stopped\nautostop: {idle_minutes: 30}\n"))
    run_cli(home, "apply", str(folder), "--yes")
    ensure_cluster("solo", Resources(cpus="1+"), 1, retry_until_up=False, autostop=None,
                   providers=Providers())
    before = _clusters(home)
    nodes_before = Store().nodes_by_cluster()
    assert {n: c["status"] for n, c in before.items()} == {
        "alpha": "UP", "beta": "STOPPED", "solo": "UP"}

    (home / "state.json").unlink()
    assert status_json(home)["clusters"] == []
    report = json.loads(run_cli(home, "refresh", str(folder), "--rebuild", "--json").stdout)
    assert {c["name"]: (c["category"], c["action"]) for c in report["clusters"]} == {
        name: ("leaked", "adopted") for name in before}

    after = _clusters(home)
    kept = ("status", "owner", "managed_by", "num_nodes", "infra", "autostop",
            "stopped_by_autostop")
    assert {n: {k: c[k] for k in kept} for n, c in after.items()} == {
        n: {k: c[k] for k in kept} for n, c in before.items()}
    assert Store().nodes_by_cluster() == nodes_before
    assert {n: int(c["launched_at"]) for n, c in after.items()} == {
        n: int(c["launched_at"]) for n, c in before.items()}
    record = Store().cluster("alpha")
    assert record is not None and record["provider_config"] == {
        "accelerators": {}, "cpus": None, "memory": None}
    assert _changes(_plan(home, folder)) == {}
    run_cli(home, "stop", "solo")  # the SDK cluster is reachable again through its record
    assert _clusters(home)["solo"]["status"] == "STOPPED"


def test_after_a_rebuild_jobs_that_ran_are_not_run_again(home: Path, tmp_path: Path) -> None:
    """Job records are not rebuilt, so the next apply submits again: the agent dedups the
    submission (same owner, name and spec hash), so the job does not run a second time."""
    import skystate as sky

    folder = _state_dir(tmp_path, a=_cluster("alpha") + "---\nkind: Job\nname: once\n"
                        "cluster: alpha\nrun: echo ran-once\n")
    run_cli(home, "apply", str(folder), "--yes", "--wait")
    (home / "state.json").unlink()
    run_cli(home, "refresh", str(folder), "--rebuild")
    out = run_cli(home, "apply", str(folder), "--yes", "--wait").stdout
    assert "submitted as job 1" in out  # the first run's id: nothing new was queued
    assert [j["job_id"] for j in sky.get(sky.queue("alpha"))] == [1]
    assert _changes(_plan(home, folder)) == {}


def test_rebuild_without_the_directory_keeps_what_tags_say(home: Path, tmp_path: Path) -> None:
    """No DIR: owner, managed_by, protect and the spec hash come from the tags alone."""
    folder = _state_dir(tmp_path, a=_cluster("alpha", "protect: true\n"))
    run_cli(home, "apply", str(folder), "--yes")
    (home / "state.json").unlink()
    run_cli(home, "refresh", "--rebuild")
    record = Store().cluster("alpha")
    assert record is not None
    assert (record["owner"], record["managed_by"], record["protect"], record["status"]) == (
        "team", "state", True, "UP")
    plan = _plan(home, folder)  # same resources: no replace; unknown setup etc. updated
    assert _changes(plan).get("Cluster/alpha", ("noop",))[0] in ("noop", "update")


# --- leaked and foreign -----------------------------------------------------------------


def _provision(name: str, owner: str) -> None:
    provider = LocalProvider()
    offer = provider.offers(OfferQuery(cpus="1+"))[0]
    provider.provision(ProvisionRequest(name, owner, offer, 1))


def test_leaked_cluster_is_adopted_and_foreign_left_alone(home: Path, tmp_path: Path) -> None:
    folder = _state_dir(tmp_path, a=_cluster("alpha"))
    _provision("alpha", "team")  # ours, never recorded (e.g. a crash before the record)
    _provision("other", "someone-else")
    report = json.loads(run_cli(home, "refresh", str(folder), "--json").stdout)
    found = {c["name"]: (c["category"], c["action"]) for c in report["clusters"]}
    assert found == {"alpha": ("leaked", "adopted"), "other": ("foreign", "left alone")}
    assert set(_clusters(home)) == {"alpha"}
    assert runtime.agent_pid(_node_dir(home, "other")) is not None  # never touched
    plan = _plan(home, folder)
    assert "Cluster/other" not in {a["address"] for a in plan["actions"]}
    # no labels (made outside skystate's create): same resources unknown -> replace shown
    assert _changes(plan)["Cluster/alpha"][0] == "replace"


# --- drift ------------------------------------------------------------------------------


def test_killed_node_processes_are_restarted_by_apply(home: Path, tmp_path: Path) -> None:
    folder = _state_dir(tmp_path, a=_cluster("alpha"), b=_cluster("beta"))
    run_cli(home, "apply", str(folder), "--yes")
    _kill_agent(home, "alpha")
    assert _changes(_plan(home, folder)) == {}  # without a refresh nothing is known
    plan = _plan(home, folder, "--refresh")
    assert _changes(plan) == {"Cluster/alpha": ("start", "power: up but stopped")}
    row = _clusters(home)["alpha"]
    assert (row["status"], row["sync_status"], row["health_status"]) == (
        "STOPPED", "OutOfSync", "Degraded")
    run_cli(home, "apply", str(folder), "--yes", "--refresh")
    assert runtime.agent_pid(_node_dir(home, "alpha")) is not None
    row = _clusters(home)["alpha"]
    assert (row["status"], row["sync_status"], row["health_status"]) == (
        "UP", "Synced", "Healthy")
    assert _changes(_plan(home, folder, "--refresh")) == {}


def test_vanished_cluster_is_marked_and_recreated(home: Path, tmp_path: Path) -> None:
    folder = _state_dir(tmp_path, a=_cluster("alpha"))
    run_cli(home, "apply", str(folder), "--yes")
    _kill_agent(home, "alpha")
    shutil.rmtree(home / "local" / "alpha")  # terminated behind our back
    report = json.loads(run_cli(home, "refresh", str(folder), "--json").stdout)
    assert [(c["name"], c["category"], c["action"]) for c in report["clusters"]] == [
        ("alpha", "vanished", "marked")]
    row = _clusters(home)["alpha"]
    assert (row["status"], row["sync_status"], row["health_status"]) == (
        None, "OutOfSync", "Missing")
    assert "VANISHED" in run_cli(home, "status").stdout
    kind, reason = _changes(_plan(home, folder))["Cluster/alpha"]
    assert kind == "create" and "vanished" in reason
    run_cli(home, "apply", str(folder), "--yes")
    assert _clusters(home)["alpha"]["status"] == "UP"


def test_autostop_is_not_undone_but_an_external_stop_is(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "60")  # a minute of idleness lasts a second
    folder = _state_dir(tmp_path, a=_cluster("napper", "autostop: {idle_minutes: 1}\n"),
                        b=_cluster("worker"))
    run_cli(home, "apply", str(folder), "--yes")
    wait_until(lambda: runtime.agent_pid(_node_dir(home, "napper")) is None, 15,
               "napper stopped by its autostop")
    LocalProvider().stop("worker", "team")  # someone else stops it; not its autostop
    plan = _plan(home, folder, "--refresh")
    assert _changes(plan) == {"Cluster/worker": ("start", "power: up but stopped")}
    napper = _clusters(home)["napper"]
    assert (napper["status"], napper["stopped_by_autostop"], napper["sync_status"],
            napper["health_status"]) == ("STOPPED", True, "Synced", "Healthy")
    run_cli(home, "apply", str(folder), "--yes", "--refresh")
    assert {n: c["status"] for n, c in _clusters(home).items()} == {
        "napper": "STOPPED", "worker": "UP"}


# --- unknown is not gone ------------------------------------------------------------------


@pytest.fixture
def silent_host() -> Iterator[int]:
    """A TCP port that accepts connections and never says anything (an SSH host hanging)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()
    for conn in accepted:
        conn.close()


def _refused_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def _record_ssh_cluster(name: str, port: int, status: str = "UP") -> None:
    store = Store()
    with store.transaction():
        store.put_cluster({
            "name": name, "owner": "team", "managed_by": "state", "status": status,
            "provider": "ssh", "power": "up", "protect": False, "immutable_hash": "h",
            "provider_config": {"pools": {name: {"hosts": [f"127.0.0.1:{port}"],
                                                 "user": "nobody"}}}})
        store.set_nodes(name, [{"rank": 0, "node_id": f"127.0.0.1:{port}", "ip": "127.0.0.1",
                                "state": "running", "ssh_port": port, "ssh_user": "nobody",
                                "extra": {}}])


def test_provider_error_or_timeout_is_unknown_never_gone(home: Path, silent_host: int) -> None:
    _record_ssh_cluster("hung", silent_host)
    _record_ssh_cluster("refused", _refused_port())
    store = Store()
    before = {r["name"]: r for r in store.clusters()}
    version = store.version
    report = refresh_clusters(store, Providers(), observe_timeout=1.0)
    found = {c.name: c for c in report.clusters}
    assert {n: (c.category, c.action) for n, c in found.items()} == {
        "hung": (RefreshClass.UNKNOWN, "kept"), "refused": (RefreshClass.UNKNOWN, "kept")}
    assert "TimeoutError" in (found["hung"].error or "")
    assert "127.0.0.1" in (found["refused"].error or "")
    assert report.unknown.keys() == {"hung", "refused"} and report.vanished == []
    after = Store()
    assert {r["name"]: r for r in after.clusters()} == before
    assert after.version == version  # nothing written
    assert len(after.nodes("hung")) == 1


def test_unknown_shows_in_plan_and_never_recreates(home: Path, tmp_path: Path) -> None:
    port = _refused_port()
    folder = _state_dir(tmp_path, a=(
        "kind: Cluster\nname: lab\nresources: {infra: ssh/lab}\n"))
    (folder / "skystate.yaml").write_text(
        PROJECT + "providers:\n  ssh:\n    pools:\n      lab:\n"
        f"        hosts: ['127.0.0.1:{port}']\n        user: nobody\n")
    _record_ssh_cluster("lab", port)
    proc = run_cli(home, "refresh", str(folder), check=1)
    assert "unknown" in proc.stdout and "kept as recorded" in proc.stdout
    plan = _plan(home, folder, "--refresh", check=None)
    assert all(a["type"] != "create" for a in plan["actions"])
    assert any("Cluster/lab: refresh could not observe it" in w for w in plan["warnings"])
    assert Store().cluster("lab")["status"] == "UP"  # type: ignore[index]


# --- protection ----------------------------------------------------------------------------


def test_protection_outlives_the_file_refresh_and_rebuild(home: Path, tmp_path: Path) -> None:
    folder = _state_dir(tmp_path, a=_cluster("vault", "protect: true\n"), b=_cluster("temp"))
    run_cli(home, "apply", str(folder), "--yes")
    (folder / "a.yaml").unlink()

    def blocked() -> None:
        proc = run_cli(home, "plan", str(folder), check=1)
        assert "Cluster/vault is protected" in proc.stdout + proc.stderr
        proc = run_cli(home, "apply", str(folder), "--yes", check=1)
        assert "Cluster/vault is protected" in proc.stdout + proc.stderr
        assert runtime.agent_pid(_node_dir(home, "vault")) is not None

    blocked()
    run_cli(home, "refresh", str(folder))
    blocked()
    (home / "state.json").unlink()
    run_cli(home, "refresh", str(folder), "--rebuild")
    blocked()
    assert _clusters(home)["vault"]["status"] == "UP"
