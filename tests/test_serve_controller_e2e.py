"""The services controller end to end on real local replicas: spot replicas with an
on-demand fallback across a real preemption, an UNKNOWN look (injected provider timeouts
with ``SKYSTATE_FAULTS``) that never replaces a replica, and ``terminate_replica``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import deadline
from test_serve_e2e import EXAMPLE, _nothing_left, _program_pid, _status, _task, _wait

import skystate as sky
from skystate.serve import ReplicaStatus as R

pytestmark = pytest.mark.slow


@pytest.fixture
def home(serve_home: Path) -> Path:
    return serve_home


def _until(what: str, check: Any, timeout: float = 90) -> Any:
    end = deadline(timeout)
    while True:
        record = _status()
        found = check(record)
        if found:
            return found
        assert time.monotonic() < end, f"{what}: {json.dumps(record, default=str)}"
        time.sleep(0.1)


def _live(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in record["replica_info"] if not r["status"].is_terminal()
            and r["status"] is not R.SHUTTING_DOWN]


def _spot_task(**policy: Any) -> sky.Task:
    return sky.Task.from_yaml_config({
        "name": "hello", "workdir": str(EXAMPLE), "envs": {"VERSION": "1"},
        "resources": {"infra": "local", "ports": 8080, "use_spot": True},
        "service": {"readiness_probe": {"path": "/health", "initial_delay_seconds": 600},
                    "replica_policy": {"min_replicas": 1, **policy}},
        "run": "exec python3 server.py --port 8080"})


def _port(replica: dict[str, Any]) -> int:
    return int(replica["endpoint"].rsplit(":", 1)[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in state


def _clusters(home: Path) -> dict[str, Any]:
    """The recorded clusters by name."""
    tables = json.loads((home / "state.json").read_text()).get("clusters") or {}
    return {c["name"]: c for c in tables.values()}


def test_a_preempted_spot_replica_is_covered_on_demand_until_spot_is_ready_again(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first spot replacement finds no capacity (after a while, as a cloud would say),
    # so the on-demand cover has time to become READY before a spot one is back.
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"op": "provision", "cluster": "svc-4",
                                  "error": "unavailable", "delay": 6}))
    monkeypatch.setenv("SKYSTATE_FAULTS", str(faults))  # the server is started with it
    _, endpoint = sky.get(sky.serve.up(_spot_task(dynamic_ondemand_fallback=True,
                                                  spot_placer="dynamic_fallback"), "svc"))
    # at first the on-demand replica 1 covers spot replica 2; once 2 is READY, 1 goes
    record = _until("one spot replica READY, no on-demand one", lambda r: r if [
        (x["replica_id"], x["is_spot"], x["status"]) for x in _live(r)] == [
        (2, True, R.READY)] else None)
    first = next(x for x in record["replica_info"] if x["replica_id"] == 1)
    assert first["is_spot"] is False
    _until("the first cover torn down", lambda r: 1 not in {
        x["replica_id"] for x in r["replica_info"]} and "svc-1" not in _clusters(home))
    assert _clusters(home)["svc-2"]["offer"]["use_spot"] is True
    subprocess.run([sys.executable, "-m", "skystate.providers.local", "preempt", "svc-2"],
                   check=True, env={**os.environ}, capture_output=True)
    cover = _until("an on-demand replica READY while spot is preempted", lambda r: next(
        (x for x in r["replica_info"] if not x["is_spot"] and x["status"] is R.READY
         and x["replica_id"] > 2), None))
    record = _status()
    preempted = next(x for x in record["replica_info"] if x["replica_id"] == 2)
    assert preempted["status"] is R.PREEMPTED
    from skystate.reconcile.store import Store

    stored = Store(home / "state.json").service("svc")
    assert stored["preempted_locations"] == [["local", None, None]]  # the spot placer's
    spot4 = next(x for x in record["replica_info"] if x["replica_id"] == 4)
    assert spot4["is_spot"] and spot4["status"] in (R.PROVISIONING, R.FAILED_PROVISION)
    assert sky.get(sky.serve.status("svc"))[0]["status"] is sky.ServiceStatus.READY
    made = _clusters(home)[f"svc-{cover['replica_id']}"]  # launched without use_spot
    assert made["resources"]["use_spot"] is False and made["offer"]["use_spot"] is False
    # a spot replica is READY again: the on-demand cover is drained and torn down
    record = _until("back to one spot replica", lambda r: r if len(_live(r)) == 1 and all(
        x["is_spot"] and x["status"] is R.READY for x in _live(r)) else None)
    spot = _live(record)[0]
    assert spot["replica_id"] > 4
    assert Store(home / "state.json").service("svc")["preempted_locations"] == []
    _until("the cover's cluster gone", lambda r: f"svc-{cover['replica_id']}" not in
           _clusters(home))
    assert json.loads((tmp_path / "faults.json.fired.json").read_text()) == {"0": 1}
    assert not _listening(_port(cover))
    sky.get(sky.serve.down("svc"))
    _nothing_left(home)


def test_an_unknown_look_keeps_the_replica_and_it_is_ready_again_once_answered(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    faults = tmp_path / "faults.json"  # every observation of replica 1's cluster times out
    faults.write_text(json.dumps({"op": "observe", "cluster": "svc-1", "error": "timeout"}))
    monkeypatch.setenv("SKYSTATE_FAULTS", str(faults))
    monkeypatch.setenv("SKYSTATE_SERVE_UNKNOWN_SECONDS", "6000")  # 200 s at scale 30
    sky.get(sky.serve.up(sky.Task.from_yaml_config({
        "name": "hello", "workdir": str(EXAMPLE), "envs": {"VERSION": "1"},
        "resources": {"infra": "local", "ports": 8080},
        "service": {"readiness_probe": {"path": "/health", "initial_delay_seconds": 600,
                                        "timeout_seconds": 1}, "replicas": 1},
        "run": "exec python3 server.py --port 8080"}), "svc"))
    record = _wait("svc", 1)
    (replica,) = record["replica_info"]
    pid = _program_pid(_port(replica))
    os.kill(pid, signal.SIGSTOP)  # its probe now times out; the look at its cluster too
    try:
        _until("UNKNOWN", lambda r: r["replica_info"][0]["status"] is R.UNKNOWN)
        end = time.monotonic() + 5.0  # many probe periods (0.33 s each)
        while time.monotonic() < end:
            record = _status()
            assert [(x["replica_id"], x["status"]) for x in record["replica_info"]] == [
                (1, R.UNKNOWN)], json.dumps(record, default=str)
            time.sleep(0.2)
    finally:
        os.kill(pid, signal.SIGCONT)
    record = _until("READY again", lambda r: r if [
        (x["replica_id"], x["status"]) for x in r["replica_info"]] == [(1, R.READY)]
        else None)
    assert _program_pid(_port(record["replica_info"][0])) == pid  # the same program
    fired = json.loads((tmp_path / "faults.json.fired.json").read_text())
    assert fired.get("0", 0) >= 1, fired
    sky.get(sky.serve.down("svc"))
    _nothing_left(home)


def test_terminate_replica_tears_it_down_replaces_it_and_purge_forgets_a_failed_one(
        home: Path) -> None:
    sky.get(sky.serve.up(_task(replicas=2), "svc"))
    record = _wait("svc", 2)
    victim = next(r for r in record["replica_info"] if r["replica_id"] == 1)
    pid, port = _program_pid(_port(victim)), _port(victim)
    assert sky.get(sky.serve.terminate_replica("svc", 1, False)) is None
    record = _until("replica 1 replaced", lambda r: r if sorted(
        x["replica_id"] for x in r["replica_info"] if x["status"] is R.READY) == [2, 3]
        and 1 not in {x["replica_id"] for x in r["replica_info"]} else None)
    _until("svc-1's cluster gone", lambda r: "svc-1" not in _clusters(home))
    end = deadline(30)  # its processes are killed with the cluster (a zombie is dead too)
    while not _dead(pid) or _listening(port):
        assert time.monotonic() < end, f"replica 1's program {pid} still runs"
        time.sleep(0.1)
    assert not (home / "local" / "svc-1").exists()
    # a FAILED replica is terminated only with purge, which forgets its record
    failing = next(x for x in record["replica_info"] if x["replica_id"] == 2)
    os.kill(_program_pid(_port(failing)), signal.SIGKILL)
    _until("replica 2 FAILED and replaced", lambda r: r if any(
        x["replica_id"] == 2 and x["status"] is R.FAILED for x in r["replica_info"])
        and sorted(x["replica_id"] for x in r["replica_info"] if x["status"] is R.READY)
        == [3, 4] else None)
    with pytest.raises(RuntimeError, match="purge"):
        sky.get(sky.serve.terminate_replica("svc", 2, False))
    sky.get(sky.serve.terminate_replica("svc", 2, True))
    _until("replica 2 forgotten", lambda r: {x["replica_id"] for x in r["replica_info"]}
           == {3, 4})
    with pytest.raises(ValueError, match="no replica 9"):
        sky.get(sky.serve.terminate_replica("svc", 9, False))
    assert sorted(_clusters(home)) == ["svc-3", "svc-4"]
    sky.get(sky.serve.down("svc"))
    _nothing_left(home)


SERVICE_DOC = """kind: Service
name: web
resources: {infra: local, ports: 8080}
service:
  readiness_probe: {path: /, initial_delay_seconds: 600}
  replicas: 1
run: python3 -m http.server 8080
"""


def test_apply_does_not_hold_the_state_lock_while_it_waits_for_a_service(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers import run_cli

    from skystate.reconcile.lock import state_lock

    faults = tmp_path / "faults.json"  # tearing the replica down takes a while, once
    faults.write_text(json.dumps({"op": "terminate", "cluster": "web-1", "error": "transient",
                                  "delay": 10, "times": 1}))
    monkeypatch.setenv("SKYSTATE_FAULTS", str(faults))
    state = tmp_path / "state"
    state.mkdir()
    (state / "skystate.yaml").write_text("kind: Project\nname: webteam\n")
    (state / "web.yaml").write_text(SERVICE_DOC)
    out = run_cli(home, "apply", str(state), "--yes", timeout=240).stdout
    assert "serving at http://127.0.0.1:" in out, out
    end = deadline(120)
    while not any(r["status"] is R.READY for r in _status("web")["replica_info"]):
        assert time.monotonic() < end, _status("web")
        time.sleep(0.2)
    (state / "web.yaml").unlink()
    env = {**os.environ, "SKYSTATE_HOME": str(home), "COLUMNS": "200"}
    apply = subprocess.Popen([sys.executable, "-m", "skystate.cli", "apply", str(state),
                              "--yes"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        fired = tmp_path / "faults.json.fired.json"
        end = deadline(120)
        while not fired.exists():  # the down is requested and its teardown under way
            assert apply.poll() is None and time.monotonic() < end, apply.communicate()[0]
            time.sleep(0.05)
        with state_lock(timeout=5.0, purpose="test: another writer during the wait"):
            waiting = apply.poll() is None  # the apply is still waiting for the down
        assert waiting, "the apply finished before the lock was tried"
        output, _ = apply.communicate(timeout=300)
    finally:
        if apply.poll() is None:
            apply.kill()
    assert apply.returncode == 0, output
    assert "down requested; taken down" in output, output
    assert not sky.get(sky.serve.status(None))
