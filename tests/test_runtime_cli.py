"""The runtime's CLI front end and scheduling rules, against a real agent process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import deadline

from skystate.runtime.layout import NodeConfig, NodeRef, write_json_atomic


def _write_node(
    folder: Path, accelerators: dict[str, int], cpus: float, self_stop: dict[str, list[str]]
) -> Path:
    config = NodeConfig(
        cluster="t",
        owner="me",
        rank=0,
        num_nodes=1,
        nodes=(NodeRef(0, "127.0.0.1", str(folder)),),
        accelerators=accelerators,
        cpus=cpus,
        self_stop=self_stop,
    )
    write_json_atomic(folder / "node.json", config.to_dict())
    return folder


def _cli(node: Path, *args: str, stdin: str | None = None) -> tuple[int, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "skystate.runtime", args[0], "--node-dir", str(node), *args[1:]],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout)


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    until = deadline(timeout)
    while not predicate():
        assert time.monotonic() < until, "timed out"
        time.sleep(0.02)


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "60")
    stop_marker = tmp_path / "self-stopped"
    folder = _write_node(
        tmp_path / "node-0", {"A100": 2}, 2, {"stop": ["touch", str(stop_marker)], "down": []}
    )
    with open(tmp_path / "agent.log", "wb") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "skystate.runtime", "agent", "--node-dir", str(folder)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait(lambda: (folder / "runtime" / "agent.pid").exists())
        yield folder
    finally:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "skystate.runtime",
                "cancel",
                "--all",
                "--node-dir",
                str(folder),
            ],
            capture_output=True,
            check=False,
        )
        agent.terminate()
        agent.wait(timeout=10)


@pytest.mark.slow
def test_submit_queue_status_through_the_cli(node: Path) -> None:
    code, out = _cli(node, "submit", stdin=json.dumps({"name": "a", "run": "echo hello"}))
    assert code == 0 and out == {"job_id": 1}
    _wait(lambda: _cli(node, "queue", "1")[1][0]["status"] == "SUCCEEDED")
    code, rows = _cli(node, "queue")
    assert list(rows[0]) == [
        "job_id", "job_name", "username", "user_hash", "submitted_at", "start_at", "end_at",
        "resources", "status", "log_path",
    ]  # fmt: skip
    assert rows[0]["resources"] == "1x[CPU:0.5]"
    assert _cli(node, "log", "1")[1] == {"log": "hello\n"}
    code, status = _cli(node, "status")
    assert status["agent_pid"] and status["jobs"] == {"SUCCEEDED": 1}


def test_impossible_job_is_rejected_with_a_json_error(node: Path) -> None:
    job = {"run": "true", "accelerators": {"A100": 3}}
    code, out = _cli(node, "submit", stdin=json.dumps(job))
    assert code == 1 and out["type"] == "ResourcesMismatchError"
    assert "A100:3 per node but nodes have A100:2" in out["error"]


def test_same_submission_id_submits_once(node: Path) -> None:
    job = json.dumps({"run": "sleep 5", "submission_id": "owner:job:hash1"})
    assert _cli(node, "submit", stdin=job)[1] == _cli(node, "submit", stdin=job)[1]
    assert len(_cli(node, "queue")[1]) == 1


@pytest.mark.slow
def test_strict_fifo_a_blocked_job_is_not_overtaken(node: Path) -> None:
    from skystate import runtime

    first = runtime.submit(node, {"run": "sleep 0.6", "accelerators": {"A100": 2}})
    blocked = runtime.submit(node, {"run": "true", "accelerators": {"A100": 1}})
    small = runtime.submit(node, {"run": "true", "cpus": 0.5})
    _wait(lambda: all(j["status"].is_terminal() for j in runtime.queue(node)))
    jobs = {j["job_id"]: j for j in runtime.queue(node)}
    assert jobs[blocked]["start_at"] >= jobs[first]["end_at"] - 0.05
    assert jobs[small]["start_at"] >= jobs[blocked]["start_at"]


@pytest.mark.slow
def test_cancel_all_through_the_cli(node: Path) -> None:
    ids = [_cli(node, "submit", stdin=json.dumps({"run": "sleep 30", "accelerators": {"A100": 1}}))
           [1]["job_id"] for _ in range(3)]  # fmt: skip
    _wait(lambda: [r["status"] for r in _cli(node, "queue")[1]].count("RUNNING") == 2)
    code, out = _cli(node, "cancel", "--all")
    assert sorted(out["cancelled"]) == ids
    assert {r["status"] for r in _cli(node, "queue")[1]} == {"CANCELLED"}
    assert _cli(node, "cancel", str(ids[0]))[1] == {"cancelled": []}


@pytest.mark.slow
def test_autostop_wait_for_none_stops_despite_running_jobs(node: Path) -> None:
    marker = node.parent / "self-stopped"
    _cli(node, "submit", stdin=json.dumps({"run": "sleep 30"}))
    code, out = _cli(node, "autostop", "-i", "1", "--wait-for", "jobs")
    assert out == {"idle_minutes": 1.0, "down": False, "wait_for": "jobs"}
    time.sleep(1.5)
    assert not marker.exists()  # busy: the jobs mode waits
    _cli(node, "autostop", "-i", "1", "--wait-for", "none")
    _wait(marker.exists, timeout=5)
    assert json.loads((node / "runtime" / "autostopped").read_text())["action"] == "stop"
    assert _cli(node, "status")[1]["autostop"]["wait_for"] == "none"


def test_a_hundred_submits_all_run(node: Path) -> None:
    """100 trivial jobs all run to SUCCEEDED (throughput is measured by
    benchmarks/job_throughput.py, not asserted here: a loaded machine would break it)."""
    from skystate import runtime

    ids = [runtime.submit(node, {"run": "true"}) for _ in range(100)]
    # every job, not only the last submitted: jobs run side by side and end in any order
    _wait(lambda: all(j["status"].is_terminal() for j in runtime.queue(node, ids)),
          timeout=60)
    assert [j["status"].value for j in runtime.queue(node, ids)] == ["SUCCEEDED"] * 100
    assert os.cpu_count()
