"""A Cluster document's setup is its own phase in the apply request's log.

``Cluster c: setup on N node(s)...`` when it starts, ``Cluster c: setup done (X.Xs)`` when
it finished; a setup that fails has no "done" line (the error is the request's result).
On a real local cluster through the API server.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers import run_cli


def _state(tmp_path: Path, setup: str) -> Path:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    (state / "skystate.yaml").write_text("kind: Project\nname: phases\n")
    (state / "c.yaml").write_text(
        "kind: Cluster\nname: setupc\nnum_nodes: 2\nresources: {infra: local, cpus: 1}\n"
        f"setup: {setup}\n")
    return state


def test_apply_logs_the_setup_as_its_own_phase(home: Path, tmp_path: Path) -> None:
    out = run_cli(home, "apply", str(_state(tmp_path, "sleep 0.2")), "--yes",
                  timeout=180).stdout.splitlines()
    starts = [i for i, line in enumerate(out) if line == "Cluster setupc: setup on 2 node(s)..."]
    dones = [i for i, line in enumerate(out)
             if re.fullmatch(r"Cluster setupc: setup done \(\d+\.\ds\)", line)]
    runtime = [i for i, line in enumerate(out) if "Cluster setupc: runtime up" in line]
    assert len(starts) == 1 and len(dones) == 1, "\n".join(out)
    assert runtime and runtime[0] < starts[0] < dones[0], "\n".join(out)
    seconds = float(re.findall(r"\((\d+\.\d)s\)", out[dones[0]])[0])
    assert seconds >= 0.2, out[dones[0]]  # it timed the setup itself
    run_cli(home, "down", "setupc", "--yes", timeout=120)


def test_a_failed_setup_has_no_done_line(home: Path, tmp_path: Path) -> None:
    proc = run_cli(home, "apply", str(_state(tmp_path, "exit 3")), "--yes", check=None,
                   timeout=180)
    assert proc.returncode != 0, proc.stdout
    lines = proc.stdout.splitlines()
    assert "Cluster setupc: setup on 2 node(s)..." in lines, proc.stdout
    assert not any("setup done" in line for line in lines), proc.stdout
    assert "setup exited with code 3" in proc.stdout + proc.stderr
    run_cli(home, "down", "setupc", "--yes", "--purge", check=None, timeout=120)
