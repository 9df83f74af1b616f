"""Shared helpers for tests that drive the real ``skystate`` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def kill_everything_under(folder: Path) -> None:
    """SIGKILL every process whose command line mentions the folder (test teardown)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in command:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def run_cli(home: Path, *args: str, check: int | None = 0, timeout: float = 60,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SKYSTATE_HOME": str(home), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "skystate.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if check is not None:
        assert proc.returncode == check, (
            f"skystate {' '.join(args)} exited {proc.returncode}, wanted {check}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def status_json(home: Path) -> dict[str, Any]:
    return json.loads(run_cli(home, "status", "--json").stdout)


def wait_for_job(home: Path, cluster: str, name: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.time() + timeout
    while True:
        jobs = [j for j in status_json(home)["jobs"]
                if j["cluster"] == cluster and j["name"] == name]
        if jobs and jobs[0]["status"] in ("SUCCEEDED", "FAILED", "FAILED_SETUP", "CANCELLED",
                                          "FAILED_DRIVER"):
            return jobs[0]
        assert time.time() < deadline, f"job {cluster}/{name} did not finish: {jobs}"
        time.sleep(0.2)
