"""Every example runs against the local provider: state directories are applied (jobs
must succeed, then everything is torn down) and SDK scripts run to exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, run_cli, status_json

pytestmark = pytest.mark.slow

EXAMPLES = REPO / "examples"
# State directories (a skystate.yaml project); serve-http is a SkyPilot service task,
# run by tests/test_serve_cli.py.
STATE_DIRS = sorted(p for p in EXAMPLES.iterdir() if (p / "skystate.yaml").is_file())
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


@pytest.mark.parametrize("example", STATE_DIRS, ids=lambda p: p.name)
def test_state_directory_example_applies_and_its_jobs_succeed(home: Path,
                                                              example: Path) -> None:
    run_cli(home, "apply", str(example), "--yes", "--wait", timeout=120)
    status = status_json(home)
    assert status["clusters"] and all(c["status"] == "UP" for c in status["clusters"])
    assert status["jobs"] and {j["status"] for j in status["jobs"]} == {"SUCCEEDED"}
    run_cli(home, "plan", str(example), "--detailed-exitcode", check=0)
    for cluster in status["clusters"]:
        run_cli(home, "down", cluster["name"])
    assert status_json(home)["clusters"] == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_sdk_example_runs(home: Path, script: Path) -> None:
    env = {**os.environ, "SKYSTATE_HOME": str(home)}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip()
