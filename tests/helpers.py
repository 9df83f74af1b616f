"""Shared test helpers: the real ``skystate`` command, waiting on jobs, process cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skystate.enums import JobStatus

REPO = Path(__file__).resolve().parent.parent
#: Every wait's deadline is multiplied by this: a wait ends as soon as its event happens, so a
#: generous deadline costs nothing on an idle machine and keeps a loaded one green.
DEADLINE_SCALE = float(os.environ.get("SKYSTATE_TEST_DEADLINE_SCALE", "4"))


def in_parallel_run() -> bool:
    """True in a pytest-xdist worker of a run with more than one worker."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1


def deadline(seconds: float) -> float:
    """A ``time.monotonic()`` deadline ``seconds`` away, scaled for a loaded machine."""
    return time.monotonic() + seconds * DEADLINE_SCALE


def _command_and_cwd(pid: str) -> tuple[str, str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        command = ""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = ""
    return command, cwd


def processes_under(folder: Path) -> list[tuple[int, str]]:
    """(pid, command) of every other process whose command line or cwd mentions the folder."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        command, cwd = _command_and_cwd(entry.name)
        if command and (str(folder) in command or cwd.startswith(str(folder))):
            found.append((int(entry.name), command))
    return found


def kill_everything_under(folder: Path) -> None:
    """Teardown: SIGKILL every process whose command line or cwd mentions the folder."""
    for pid, _ in processes_under(folder):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0,
               what: str = "condition") -> None:
    until = deadline(timeout)
    while not predicate():
        if time.monotonic() > until:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def job_status(agent: Any, job_id: int) -> JobStatus:
    return JobStatus(str(agent.queue([job_id])[0]["status"]))


def wait_job(agent: Any, job_id: int, timeout: float = 15.0) -> JobStatus:
    """Wait until a job on a cluster agent is finished; its final status."""
    wait_until(lambda: job_status(agent, job_id).is_terminal(), timeout, f"job {job_id}")
    return job_status(agent, job_id)


def sdk_job_status(cluster: str, job_id: int) -> JobStatus | None:
    import skystate as sky

    return sky.get(sky.job_status(cluster, [job_id]))[job_id]


def wait_sdk_job(cluster: str, job_id: int, timeout: float = 20.0) -> JobStatus:
    """Wait until a job is finished, asking through the SDK (``sky.job_status``); its final
    status."""
    wait_until(lambda: (sdk_job_status(cluster, job_id) or JobStatus.PENDING).is_terminal(),
               timeout, f"job {job_id} on {cluster}")
    return sdk_job_status(cluster, job_id)  # type: ignore[return-value]


def run_cli(home: Path, *args: str, check: int | None = 0, timeout: float = 60,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SKYSTATE_HOME": str(home), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "skystate.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout * DEADLINE_SCALE,
                          cwd=cwd)
    if check is not None:
        assert proc.returncode == check, (
            f"skystate {' '.join(args)} exited {proc.returncode}, wanted {check}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def status_json(home: Path) -> dict[str, Any]:
    return json.loads(run_cli(home, "status", "--json").stdout)


def wait_for_job(home: Path, cluster: str, name: str, timeout: float = 20) -> dict[str, Any]:
    until = deadline(timeout)
    while True:
        jobs = [j for j in status_json(home)["jobs"]
                if j["cluster"] == cluster and j["name"] == name]
        if jobs and jobs[0]["status"] in ("SUCCEEDED", "FAILED", "FAILED_SETUP", "CANCELLED",
                                          "FAILED_DRIVER"):
            return jobs[0]
        assert time.monotonic() < until, f"job {cluster}/{name} did not finish: {jobs}"
        time.sleep(0.2)


def cluster_state(provider: Any, name: str) -> Any:
    """A cluster's state as its provider observes it (TERMINATED when it sees none)."""
    from skystate.providers.base import NodeState

    seen = provider.observe([name])  # one call: the cluster may vanish between two
    return seen[0].state if seen else NodeState.TERMINATED
