"""The state lock: real processes holding it, waiting for it, dying with it."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_cli, status_json

from skystate.exceptions import StateLockedError
from skystate.reconcile.lock import current_request_id, holder_path, read_holder, state_lock
from skystate.reconcile.store import Store

HOLD = """
import sys, time
from skystate.reconcile.lock import state_lock
with state_lock(purpose="test holder", request_id=sys.argv[1] or None):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def state(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    folder.mkdir()
    (folder / "skystate.yaml").write_text("kind: Project\nname: locked\n")
    return folder


def _hold(home: Path, seconds: float, request_id: str = "") -> subprocess.Popen[str]:
    """A separate process that takes the lock and keeps it for ``seconds``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, request_id, str(seconds)],
                            env={**os.environ, "SKYSTATE_HOME": str(home)},
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def _finish(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdout:
        proc.stdout.close()


def test_apply_waits_then_fails_naming_the_holder(home: Path, state: Path) -> None:
    (state / "a.yaml").write_text("kind: Cluster\nname: a\nresources: {cpus: 1}\n")
    holder = _hold(home, 60, request_id="req-42")
    try:
        started = time.monotonic()
        failed = run_cli(home, "apply", str(state), "--yes", "--lock-timeout", "1", check=1)
        waited = time.monotonic() - started
    finally:
        _finish(holder)
    message = " ".join(failed.stderr.split())
    assert f"locked by pid {holder.pid} on {socket.gethostname()}" in message, message
    assert "request req-42" in message and "since " in message and "waited 1s" in message
    assert waited >= 1.0
    assert status_json(home)["clusters"] == []  # nothing applied


def test_a_waiting_writer_says_whom_it_waits_for_then_proceeds(
        home: Path, caplog: pytest.LogCaptureFixture) -> None:
    holder = _hold(home, 1.5)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, "skystate.lock"), state_lock(timeout=20):
            waited = time.monotonic() - started
    finally:
        _finish(holder)
    assert 1.0 <= waited < 20
    assert f"waiting up to 20s for the state lock held by pid {holder.pid}" in caplog.text


def test_lock_of_a_killed_holder_is_broken(home: Path, state: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    holder = _hold(home, 60)
    holder.send_signal(signal.SIGKILL)
    _finish(holder)
    assert read_holder() is not None and read_holder().pid == holder.pid  # left behind
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "skystate.lock"), state_lock(timeout=5) as mine:
        assert mine is not None and mine.pid == os.getpid()
    assert time.monotonic() - started < 4.0  # taken over, not waited out (timeout=5)
    assert re.search(rf"took over the state lock from pid {holder.pid} on .*: the process "
                     r"is gone", caplog.text), caplog.text
    assert not holder_path().exists()
    (state / "a.yaml").write_text("kind: Cluster\nname: a\nresources: {cpus: 1}\n")
    run_cli(home, "apply", str(state), "--yes", "--lock-timeout", "2")


def test_holder_record_left_by_another_host_is_replaced(
        home: Path, caplog: pytest.LogCaptureFixture) -> None:
    home.mkdir(parents=True, exist_ok=True)
    holder_path().write_text(json.dumps({"pid": 1, "host": "build-7", "since": 0,
                                         "command": "skystate apply infra"}))
    with caplog.at_level(logging.WARNING, "skystate.lock"), state_lock(timeout=1):
        assert read_holder().host == socket.gethostname()
    assert "from pid 1 on build-7 (skystate apply infra" in caplog.text
    assert "its host released it" in caplog.text


def test_request_id_of_the_context_is_recorded(home: Path) -> None:
    def run() -> None:
        current_request_id.set("r-7")
        with state_lock(timeout=1, purpose="apply request"):
            held = read_holder()
            assert held is not None
            assert (held.request_id, held.command) == ("r-7", "apply request")
            assert "request r-7" in held.describe()

    contextvars.copy_context().run(run)
    assert not holder_path().exists()


def test_not_reentrant_but_a_second_writer_times_out_cleanly(home: Path) -> None:
    with state_lock(timeout=1):
        with pytest.raises(StateLockedError, match=rf"pid {os.getpid()} on "), \
                state_lock(timeout=0.2):
            pass
    with state_lock(timeout=0.2):  # released properly after the failed attempt
        pass


@pytest.mark.slow
def test_two_applies_at_once_keep_the_state_consistent(home: Path, state: Path) -> None:
    for name in ("a", "b", "c"):
        (state / f"{name}.yaml").write_text(
            f"kind: Cluster\nname: {name}\nresources: {{cpus: 1}}\nsetup: sleep 3\n")
    env = {**os.environ, "SKYSTATE_HOME": str(home)}
    command = [sys.executable, "-m", "skystate.cli", "apply", str(state), "--yes"]
    applies = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 120  # generous: a loaded machine starts slowly
        while not holder_path().exists():  # one of them is applying (setup takes 3 s)
            assert time.monotonic() < deadline, "no apply took the lock"
            time.sleep(0.01)
        impatient = run_cli(home, "apply", str(state), "--yes", "--lock-timeout", "0.2",
                            check=None)
        results = [(p.wait(timeout=240), *p.communicate()) for p in applies]
    finally:
        for proc in applies:  # never leave the pipes open for the next test to collect
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    results.append((impatient.returncode, impatient.stdout, impatient.stderr))
    for code, _, stderr in results:  # each one waited, or failed naming the holder
        assert code == 0 or re.search(r"the state is locked by pid \d+ on \S+ \(", stderr), \
            results
    assert results[0][0] == 0 or results[1][0] == 0, results
    clusters = [c["name"] for c in status_json(home)["clusters"]]
    assert sorted(clusters) == ["a", "b", "c"]  # each once
    events = Store(home / "state.json").events()
    creates = [e["address"] for e in events if e["action"] == "create"]
    assert sorted(creates) == ["Cluster/a", "Cluster/b", "Cluster/c"]
    assert sorted(p.name for p in (home / "local").iterdir() if p.is_dir()) == ["a", "b", "c"]
    run_cli(home, "plan", str(state), "--detailed-exitcode", check=0)
