"""The state store: batched atomic writes, a version per write, parseable after kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from skystate.reconcile.store import Store, read_snapshot


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SKYSTATE_HOME", str(tmp_path))
    return tmp_path


def test_writes_outside_a_transaction_are_refused():
    with pytest.raises(RuntimeError):
        Store().put_cluster({"name": "a"})


def test_a_transaction_flushes_once_and_bumps_the_version(home):
    store = Store()
    with store.transaction():
        store.put_cluster({"name": "a", "status": "INIT"})
        assert not (home / "state.json").exists()  # nothing reaches disk mid-step
        store.put_cluster({"name": "a", "status": "UP"})
        store.set_nodes("a", [{"rank": 0, "ip": "127.0.0.1"}])
    assert store.version == 1
    again = Store()
    assert again.cluster("a")["status"] == "UP"
    assert again.nodes("a") == [{"rank": 0, "ip": "127.0.0.1", "cluster": "a"}]


def test_a_failed_transaction_leaves_the_file_as_it_was():
    store = Store()
    with store.transaction():
        store.put_cluster({"name": "a"})
    with pytest.raises(ValueError), store.transaction():
        store.put_cluster({"name": "b"})
        raise ValueError("boom")
    assert [c["name"] for c in store.clusters()] == ["a"]
    assert [c["name"] for c in Store().clusters()] == ["a"]
    assert store.version == 1


def test_delete_cluster_removes_its_nodes():
    store = Store()
    with store.transaction():
        store.put_cluster({"name": "a"})
        store.set_nodes("a", [{"rank": 0}, {"rank": 1}])
    with store.transaction():
        store.delete_cluster("a")
    assert read_snapshot()["nodes"] == [] and read_snapshot()["clusters"] == []


def test_jobs_are_keyed_by_cluster_and_name():
    store = Store()
    with store.transaction():
        store.put_job({"cluster": "a", "name": "j", "spec_hash": "1"})
        store.put_job({"cluster": "b", "name": "j", "spec_hash": "2"})
        store.put_job({"cluster": "a", "name": "j", "spec_hash": "3"})
    assert sorted(j["spec_hash"] for j in Store().jobs()) == ["2", "3"]


def test_many_writes_stay_fast():
    store = Store()
    started = time.perf_counter()
    with store.transaction():
        for i in range(2000):
            store.put_cluster({"name": f"c{i}", "status": "UP"})
    assert time.perf_counter() - started < 5
    assert len(Store().clusters()) == 2000


WRITER = textwrap.dedent("""
    import sys
    from skystate.reconcile.store import Store
    store = Store()
    i = 0
    while True:
        with store.transaction():
            for k in range(50):
                store.put_cluster({"name": f"c{k}", "n": i, "pad": "x" * 200})
            store.add_event("Cluster/c", "write", "ok", str(i))
        i += 1
        if i == 3:
            print("ready", flush=True)
""")


@pytest.mark.slow
def test_state_file_always_parses_after_kill_9(home):
    """20 writers killed with SIGKILL at random moments: the file always parses."""
    for trial in range(20):
        with subprocess.Popen([sys.executable, "-c", WRITER], stdout=subprocess.PIPE,
                              env={**os.environ, "SKYSTATE_HOME": str(home)}) as proc:
            assert proc.stdout.readline().strip() == b"ready"
            time.sleep(random.uniform(0.0, 0.15))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        data = json.loads((home / "state.json").read_text())
        assert len(data["clusters"]) == 50, f"trial {trial}: torn state"
        assert Store().version >= 3
    leftovers = [p for p in os.listdir(home) if p.endswith(".tmp")]
    assert len(leftovers) <= 20  # temp files of killed writers only; never read


def _add_clusters(path: str, prefix: str, count: int) -> None:
    store = Store(Path(path))
    for i in range(count):
        with store.transaction():
            store.put_cluster({"name": f"{prefix}-{i}", "status": "UP"})


def test_writers_in_several_processes_lose_no_record(tmp_path: Path) -> None:
    """API-server workers each hold a Store: transactions re-read what others flushed."""
    import multiprocessing

    path = tmp_path / "state.json"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_clusters, args=(str(path), f"p{n}", 40)) for n in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    store = Store(path)
    assert len(store.clusters()) == 120
    assert store.version == 120
