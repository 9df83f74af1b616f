"""Job placement as SkyPilot's: fractional accelerators are shared by fraction, and a job
needing fewer nodes than the cluster has runs on whichever nodes have room.

Pure accounting first, then a real agent of a 2-node local-runtime cluster (two node
folders, one simulated T4 each) running 20 ``{T4: 0.1}`` jobs at once.
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
from skystate.runtime.layout import NodeConfig, NodeRef, write_json_atomic
from skystate.runtime.resources import Capacity, Demand, Usage


def _wait(predicate: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_ten_tenths_share_one_device_and_the_eleventh_goes_to_the_next_node() -> None:
    capacity = Capacity(num_nodes=2, cpus=4, accelerators={"T4": 1})
    usage = Usage()
    tenth = Demand.of(None, {"T4": 0.1})
    assert tenth == Demand(0.0, {"T4": 0.1}) and tenth.label(1) == "1x[T4:0.1]"
    placements = []
    for _ in range(20):
        placed = usage.assign(tenth, 1, capacity)
        assert placed is not None
        usage.take(tenth, 1, placed)
        placements.append(placed)
    assert placements[:10] == [{0: [0]}] * 10 and placements[10:] == [{1: [0]}] * 10
    assert usage.assign(tenth, 1, capacity) is None  # both T4s are fully shared
    usage.release(tenth, 1, placements[15])
    assert usage.assign(tenth, 1, capacity) == {1: [0]}  # the freed share, on node 1


def test_a_whole_device_is_never_given_to_a_job_while_a_fraction_of_it_is_taken() -> None:
    capacity = Capacity(num_nodes=1, cpus=4, accelerators={"T4": 2})
    usage = Usage()
    usage.take(Demand.of(None, {"T4": 0.5}), 1, {0: [0]})
    assert usage.assign(Demand.of(None, {"T4": 1}), 1, capacity) == {0: [1]}
    assert usage.assign(Demand.of(None, {"T4": 2}), 1, capacity) is None
    assert usage.assign(Demand.of(None, {"T4": 0.5}), 1, capacity) == {0: [0]}


def test_a_one_node_job_runs_on_the_node_with_room_not_always_rank_0() -> None:
    capacity = Capacity(num_nodes=3, cpus=1, accelerators={})
    usage = Usage()
    usage.take(Demand(1.0), 1, {0: []})  # rank 0 is full
    assert usage.assign(Demand(1.0), 1, capacity) == {1: []}
    assert usage.assign(Demand(1.0), 2, capacity) == {1: [], 2: []}
    usage.take(Demand(1.0), 2, {1: [], 2: []})
    usage.release(Demand(1.0), 1, {0: []})
    assert usage.assign(Demand(1.0), 1, capacity) == {0: []}
    assert usage.assign(Demand(1.0), 2, capacity) is None


def test_records_without_ranks_keep_meaning_ranks_0_to_k_minus_1() -> None:
    usage = Usage.of_jobs([{"demand": {"cpus": 1.0}, "num_nodes": 2, "devices": {}}])
    assert usage.cpus == {0: 1.0, 1: 1.0}


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[Path]:
    """A 2-node cluster of node folders with a simulated T4 each; agents on both."""
    folders = [tmp_path / f"node-{rank}" for rank in range(2)]
    refs = tuple(NodeRef(rank, f"127.0.0.{rank + 1}", str(folder))
                 for rank, folder in enumerate(folders))
    agents = []
    for rank, folder in enumerate(folders):
        config = NodeConfig(cluster="t", owner="me", rank=rank, num_nodes=2, nodes=refs,
                            accelerators={"T4": 1}, cpus=4, self_stop={"stop": [], "down": []})
        write_json_atomic(folder / "node.json", config.to_dict())
        with open(tmp_path / f"agent-{rank}.log", "wb") as log:
            agents.append(subprocess.Popen(
                [sys.executable, "-m", "skystate.runtime", "agent", "--node-dir", str(folder)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    try:
        _wait(lambda: all((f / "runtime" / "agent.pid").exists() for f in folders), 60)
        yield folders[0]
    finally:
        runtime.cancel(folders[0], all_jobs=True)
        for agent in agents:
            agent.terminate()
            agent.wait(timeout=30)


def _started(folder: Path, count: int) -> Callable[[], bool]:
    return lambda: len(list(folder.glob("*/home/started-*"))) >= count


def test_twenty_tenth_t4_jobs_run_at_once_packed_on_both_nodes(two_nodes: Path) -> None:
    root = two_nodes.parent
    # Each job marks that it started (in its node's home), then waits for the go file.
    script = (f"touch ~/started-$SKYPILOT_JOB_ID; echo rank=$SKYPILOT_NODE_RANK "
              f"ips=$(echo $SKYPILOT_NODE_IPS) dev=$CUDA_VISIBLE_DEVICES home=$HOME; "
              f"while [ ! -e {root}/go ]; do sleep 0.05; done")
    ids = [runtime.submit(two_nodes, {"run": script, "accelerators": {"T4": 0.1}})
           for _ in range(20)]
    _wait(_started(root, 20))  # all 20 running together: none can end before "go"
    running = runtime.queue(two_nodes, ids, detailed=True)
    assert {j["status"] for j in running} == {JobStatus.RUNNING}
    (root / "go").touch()
    _wait(lambda: all(j["status"].is_terminal() for j in runtime.queue(two_nodes, ids)))
    jobs = runtime.queue(two_nodes, ids, detailed=True)
    assert {j["status"] for j in jobs} == {JobStatus.SUCCEEDED}
    assert all(j["resources"] == "1x[T4:0.1]" for j in jobs)
    assert max(j["start_at"] for j in jobs) < min(j["end_at"] for j in jobs)  # overlapping
    nodes = {}
    for job in jobs:
        (rank,) = job["devices"]
        nodes[int(rank)] = nodes.get(int(rank), 0) + 1
        log = runtime.read_log(two_nodes, job["job_id"])
        # The job's own rank is 0 wherever it runs; its IPs are the node it runs on.
        assert f"rank=0 ips=127.0.0.{int(rank) + 1} dev=0 home={root}/node-{rank}/" in log
        assert (root / f"node-{rank}" / "home" / f"started-{job['job_id']}").exists()
    assert nodes == {0: 10, 1: 10}


def test_a_cancelled_job_on_node_1_frees_its_share_there(two_nodes: Path) -> None:
    root = two_nodes.parent
    hold = [runtime.submit(two_nodes, {"run": "touch ~/started-$SKYPILOT_JOB_ID; sleep 600",
                                       "accelerators": {"T4": 0.5}}) for _ in range(4)]
    _wait(_started(root, 4))
    on_node_1 = [j for j in runtime.queue(two_nodes, hold, detailed=True)
                 if list(j["devices"]) == ["1"]]
    assert len(on_node_1) == 2
    blocked = runtime.submit(two_nodes, {"run": "echo ran on $HOME",
                                         "accelerators": {"T4": 0.5}})
    time.sleep(0.5)
    assert runtime.queue(two_nodes, [blocked])[0]["status"] is JobStatus.PENDING
    assert runtime.cancel(two_nodes, [on_node_1[0]["job_id"]]) == [on_node_1[0]["job_id"]]
    _wait(lambda: runtime.queue(two_nodes, [blocked])[0]["status"] is JobStatus.SUCCEEDED)
    assert f"ran on {root}/node-1/home" in runtime.read_log(two_nodes, blocked)


def test_a_two_node_job_on_a_two_node_cluster_sees_both_ranks(two_nodes: Path) -> None:
    job = runtime.submit(two_nodes, {"run": "echo r=$SKYPILOT_NODE_RANK n=$SKYPILOT_NUM_NODES",
                                     "num_nodes": 2, "accelerators": {"T4": 1}})
    _wait(lambda: runtime.queue(two_nodes, [job])[0]["status"].is_terminal())
    log = runtime.read_log(two_nodes, job)
    assert "(rank 0) r=0 n=2" in log and "(rank 1) r=1 n=2" in log


def test_runtime_imports_go_one_way_api_runners_ssh_command_and_hostctl_on_top() -> None:
    """No circle api -> runners -> hostctl -> api: the ssh command line sits below both."""
    import ast

    folder = Path(runtime.__file__).parent

    def imported(name: str) -> set[str]:
        tree = ast.parse((folder / f"{name}.py").read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("skystate"):
                found.add(node.module or "")
                found.update(f"{node.module}.{a.name}" for a in node.names)
        return found

    assert not any("hostctl" in m for m in imported("runners") | imported("api"))
    assert "skystate.runtime.ssh_command" in imported("runners")
    assert imported("ssh_command") == set()  # stdlib only
    hostctl = ast.parse((folder / "hostctl.py").read_text())
    top_level = [n for n in hostctl.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(not (getattr(n, "module", "") or "").startswith("skystate") for n in top_level)


def test_a_local_offer_for_a_fraction_of_a_gpu_is_a_node_with_the_whole_gpu(
        tmp_path: Path) -> None:
    from skystate.providers.base import OfferQuery
    from skystate.providers.local import LocalProvider

    provider = LocalProvider(accelerators={"T4": 2}, cpus_per_node=2, root=tmp_path)
    (offer,) = provider.offers(OfferQuery(accelerators={"T4": 0.5}, num_nodes=2))
    assert offer.accelerators == {"T4": 1}
    assert provider.offers(OfferQuery(accelerators={"T4": 0.5}, num_nodes=3)) == []
