"""Long waits show as a line per phase in the request's log (what `launch` streams).

A launch prints, in order: launching, the runtime starting on the nodes, the cluster UP,
the submit and the job id; ``stream_and_get(sky.launch(...))`` prints the same and
returns the job id. On a real local cluster through the API server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import DEADLINE_SCALE, run_cli


def _in_order(lines: list[str], wanted: list[tuple[str, str]]) -> list[int]:
    """Index of the first line matching each (prefix, suffix), in the order given."""
    found, start = [], 0
    for prefix, suffix in wanted:
        index = next((i for i in range(start, len(lines)) if lines[i].startswith(prefix)
                      and lines[i].endswith(suffix)), None)
        assert index is not None, f"no line {prefix!r}...{suffix!r} after line {start}:\n" + (
            "\n".join(lines))
        found.append(index)
        start = index + 1
    return found


def _phases(cluster: str) -> list[tuple[str, str]]:
    return [
        (f"Cluster {cluster}: launching (1x(CPU) on local)...", ""),
        (f"Cluster {cluster}: starting the runtime on 1 local node(s)...", ""),
        (f"Cluster {cluster}: runtime up on 1 local node(s) (", "s)"),
        (f"Cluster {cluster}: UP on local (", "s)"),
        (f"Job on {cluster}: submitting (setup and run)...", ""),
        (f"Job on {cluster}: submitted as job 1 on {cluster}.", ""),
    ]


def test_cli_launch_streams_a_line_per_phase(home: Path, tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text("resources: {infra: local}\nsetup: echo set-up-ran\nrun: echo run-ran\n")
    out = run_cli(home, "launch", str(task), "-c", "phased", "-d", timeout=120).stdout
    _in_order(out.splitlines(), _phases("phased"))
    # an UP cluster is not provisioned again: no runtime phase the second time
    again = run_cli(home, "launch", str(task), "-c", "phased", "-d", timeout=120).stdout
    assert "starting the runtime" not in again
    assert "Job on phased: submitted as job 2 on phased." in again
    run_cli(home, "down", "phased")


def test_stream_and_get_of_sdk_launch_prints_phases_and_returns_the_job_id(
        home: Path, tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text("resources: {infra: local}\nsetup: echo set-up-ran\nrun: echo run-ran\n")
    script = ("import skystate as sky\n"
              f"task = sky.Task.from_yaml({str(task)!r})\n"
              "job_id, handle = sky.stream_and_get(sky.launch(task, cluster_name='sdkphased'))\n"
              "print('RESULT', job_id, handle.cluster_name)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "SKYSTATE_HOME": str(home)},
                          timeout=180 * DEADLINE_SCALE)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    last = _in_order(lines, _phases("sdkphased"))[-1]
    assert "RESULT 1 sdkphased" in lines[last + 1:]
    run_cli(home, "down", "sdkphased")
