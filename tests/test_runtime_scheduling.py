"""The agent's scheduling step is O(changes) and still honours GPUs, CPUs, FIFO and cancels.

The view (``runtime.active``) is tested on a real job table with a second connection as
the "other process"; the rules against a real agent process with a simulated A100:2 node.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from skystate import runtime
from skystate.enums import JobStatus
from skystate.runtime.active import ActiveJobs
from skystate.runtime.jobdb import JobDB, close_all
from skystate.runtime.layout import NodeConfig, NodeRef, write_json_atomic


def _wait(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _insert(db: JobDB, **fields: object) -> int:
    return db.insert({"status": JobStatus.PENDING.value, "num_nodes": 1,
                      "demand": {"cpus": 0.5, "accelerators": {}}, **fields})


def test_a_step_reads_only_what_other_processes_changed(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "jobs.db"
    other = JobDB(path)  # the "submitting process": its own connection
    for _ in range(1000):
        _insert(other)
    mine = sqlite3.connect(str(path), isolation_level=None)
    mine.row_factory = sqlite3.Row
    db = JobDB.__new__(JobDB)
    db.conn = mine
    view = ActiveJobs(db)
    view.sync()  # the first sync loads everything once
    assert len(view.pending) == 1000
    statements: list[str] = []
    mine.set_trace_callback(statements.append)

    view.sync()  # nothing changed: one PRAGMA, no row read
    assert statements == ["PRAGMA data_version"]

    statements.clear()
    new = _insert(other)
    other.transition(5, [JobStatus.PENDING], JobStatus.CANCELLED)
    view.sync()
    assert len(statements) == 3, statements  # data_version, the new rows, the cancels
    assert list(view.pending)[-1] == new and 5 not in view.pending
    assert len(view.pending) == 1000
    mine.set_trace_callback(None)
    mine.close()
    close_all()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "node-0"
    config = NodeConfig(cluster="t", owner="me", rank=0, num_nodes=1,
                        nodes=(NodeRef(0, "127.0.0.1", str(folder)),),
                        accelerators={"A100": 2}, cpus=2, self_stop={"stop": [], "down": []})
    write_json_atomic(folder / "node.json", config.to_dict())
    with open(tmp_path / "agent.log", "wb") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "skystate.runtime", "agent", "--node-dir", str(folder)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait(lambda: (folder / "runtime" / "agent.pid").exists())
        yield folder
    finally:
        runtime.cancel(folder, all_jobs=True)
        agent.terminate()
        agent.wait(timeout=30)


def _running_at(jobs: list[dict], instant: float) -> list[dict]:
    return [j for j in jobs if j["start_at"] <= instant < j["end_at"]]


def test_a_long_gpu_queue_never_oversubscribes_or_shares_a_device(node: Path) -> None:
    ids = [runtime.submit(node, {"run": "echo dev=$CUDA_VISIBLE_DEVICES; sleep 0.2",
                                 "accelerators": {"A100": 1}}) for _ in range(12)]
    _wait(lambda: all(j["status"].is_terminal() for j in runtime.queue(node)), timeout=120)
    jobs = runtime.queue(node, ids, detailed=True)
    assert {j["status"] for j in jobs} == {JobStatus.SUCCEEDED}
    for job in jobs:
        (device,) = job["devices"]["0"]
        assert f"dev={device}" in runtime.read_log(node, job["job_id"])
        assert device in (0, 1)
    for job in jobs:  # two at a time at most (the node has A100:2), never sharing a device
        together = _running_at(jobs, job["start_at"])
        assert len(together) <= 2, [j["job_id"] for j in together]
        assert len({tuple(j["devices"]["0"]) for j in together}) == len(together)


def test_cancelling_a_blocked_head_lets_the_queue_move(node: Path) -> None:
    running = runtime.submit(node, {"run": "sleep 60", "accelerators": {"A100": 2}})
    _wait(lambda: runtime.queue(node, [running])[0]["status"] == JobStatus.RUNNING)
    blocked = runtime.submit(node, {"run": "true", "accelerators": {"A100": 1}})
    behind = runtime.submit(node, {"run": "true", "cpus": 0.5})
    time.sleep(0.5)  # FIFO: the CPU job waits behind the blocked GPU job
    assert runtime.queue(node, [behind])[0]["status"] == JobStatus.PENDING
    assert runtime.cancel(node, [blocked]) == [blocked]
    # well before the view's periodic reload (30 s): the cancel itself is seen
    _wait(lambda: runtime.queue(node, [behind])[0]["status"] == JobStatus.SUCCEEDED, timeout=20)
    assert runtime.queue(node, [running])[0]["status"] == JobStatus.RUNNING


def test_cancelling_a_running_job_frees_its_gpus_for_the_next(node: Path) -> None:
    first = runtime.submit(node, {"run": "sleep 60", "accelerators": {"A100": 2}})
    _wait(lambda: runtime.queue(node, [first])[0]["status"] == JobStatus.RUNNING)
    second = runtime.submit(node, {"run": "echo dev=$CUDA_VISIBLE_DEVICES",
                                   "accelerators": {"A100": 2}})
    time.sleep(0.5)
    assert runtime.queue(node, [second])[0]["status"] == JobStatus.PENDING
    runtime.cancel(node, [first])
    _wait(lambda: runtime.queue(node, [second])[0]["status"] == JobStatus.SUCCEEDED)
    assert "dev=0,1" in runtime.read_log(node, second)
