"""SIGKILL the API server (and so its workers) at random moments during applies: nothing
is torn, duplicated, leaked or forgotten, and the next call starts a new server."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_cli

pytestmark = pytest.mark.slow

PROJECT = "kind: Project\nname: crash\n"


def _variant(state: Path, clusters: list[str], tag: str) -> None:
    for old in state.glob("*.yaml"):
        old.unlink()
    (state / "skystate.yaml").write_text(PROJECT)
    docs = []
    for name in clusters:
        docs.append(f"kind: Cluster\nname: {name}\nresources: {{cpus: 1}}\n"
                    f"setup: echo setting up {name}\n")
        docs.append(f"kind: Job\nname: job-{name}\ncluster: {name}\nrun: echo {tag} {name}\n")
    (state / "all.yaml").write_text("---\n".join(docs))


def _folders(home: Path) -> dict[str, int]:
    root = home / "local"
    if not root.exists():
        return {}
    return {d.name: len(list(d.glob("node-*"))) for d in root.iterdir() if d.is_dir()}


def _records(home: Path) -> dict[str, dict]:
    data = json.loads((home / "state.json").read_text())  # must always parse
    return {c["name"]: c for c in data.get("clusters", {}).values()}


def _wait_for_lock_holder(home: Path, timeout: float = 120.0) -> None:
    holder = home / "state.lock.holder.json"
    deadline = time.time() + timeout
    while not holder.exists() and time.time() < deadline:
        time.sleep(0.005)


@pytest.mark.timeout(1200)  # 20 trials; a loaded machine makes each one slow
def test_sigkill_during_apply_never_duplicates_or_forgets(home: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    variants = [["a", "b", "c"], ["a", "d", "e"]]
    rng = random.Random(1234)
    _variant(state, variants[0], "t0")
    run_cli(home, "apply", str(state), "--yes")
    interrupted = 0
    for trial in range(1, 21):
        _variant(state, variants[trial % 2], f"t{trial}")
        env = {**os.environ, "SKYSTATE_HOME": str(home)}
        with subprocess.Popen([sys.executable, "-m", "skystate.cli", "apply", str(state),
                               "--yes"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) as proc:
            _wait_for_lock_holder(home)  # the apply is under way (lock taken)
            time.sleep(rng.uniform(0.0, 0.5))
            server = json.loads((home / "api_server.json").read_text())["pid"]
            os.kill(server, signal.SIGKILL)  # its workers die with it (PDEATHSIG)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        records = _records(home)
        leaked = set(_folders(home)) - set(records)
        assert not leaked, f"trial {trial}: folders without a record: {leaked}"
        unfinished = run_cli(home, "plan", str(state), "--detailed-exitcode", check=None)
        interrupted += unfinished.returncode == 2
        run_cli(home, "apply", str(state), "--yes")
        records = _records(home)
        wanted = set(variants[trial % 2])
        assert set(records) == wanted, f"trial {trial}: records {set(records)}"
        assert all(r["status"] == "UP" for r in records.values()), records
        assert _folders(home) == {name: 1 for name in wanted}, f"trial {trial}"
        run_cli(home, "plan", str(state), "--detailed-exitcode", check=0)
    assert interrupted >= 8, f"only {interrupted} of 20 kills landed mid-apply"
