"""Resource accounting of the runtime scheduler (pure, no processes)."""

from __future__ import annotations

import pytest

from skystate.exceptions import ResourcesMismatchError
from skystate.runtime.layout import NodePaths, NodeRef
from skystate.runtime.resources import Capacity, Demand, Usage
from skystate.runtime.runners import LocalRunner


def test_a_job_asking_nothing_takes_half_a_cpu() -> None:
    assert Demand.of(None, None) == Demand(0.5, {})
    assert Demand.of(0, {"A100": 1}) == Demand(0.0, {"A100": 1})
    assert Demand.of(2, {}).label(1) == "1x[CPU:2]"
    assert Demand.of(None, {"A100": 1}).label(2) == "2x[A100:1]"


def test_devices_are_assigned_lowest_free_first_and_never_shared() -> None:
    capacity = Capacity(num_nodes=1, cpus=4, accelerators={"A100": 4})
    usage = Usage()
    first = usage.assign(Demand(0, {"A100": 2}), 1, capacity)
    assert first == {0: [0, 1]}
    usage.take(Demand(0, {"A100": 2}), 1, first)
    assert usage.assign(Demand(0, {"A100": 3}), 1, capacity) is None
    assert usage.assign(Demand(0, {"A100": 2}), 1, capacity) == {0: [2, 3]}


def test_cpus_limit_concurrency_per_node() -> None:
    capacity = Capacity(num_nodes=2, cpus=1, accelerators={})
    usage = Usage.of_jobs([{"demand": {"cpus": 0.5}, "num_nodes": 2, "devices": {}}])
    assert usage.assign(Demand(0.5), 2, capacity) == {0: [], 1: []}
    usage.take(Demand(0.5), 2, {})
    assert usage.assign(Demand(0.5), 1, capacity) is None


def test_several_accelerator_types_get_distinct_indices() -> None:
    capacity = Capacity(num_nodes=1, cpus=1, accelerators={"T4": 2, "A100": 2})
    assert capacity.device_ids("A100") == [0, 1]
    assert capacity.device_ids("T4") == [2, 3]


def test_a_job_that_can_never_fit_is_rejected() -> None:
    capacity = Capacity(num_nodes=1, cpus=2, accelerators={"A100": 1})
    with pytest.raises(ResourcesMismatchError, match="A100:2 per node but nodes have A100:1"):
        capacity.check_fits_ever(Demand(0, {"A100": 2}), 1)
    with pytest.raises(ResourcesMismatchError, match="2 nodes but the cluster has 1"):
        capacity.check_fits_ever(Demand(0.5), 2)
    capacity.check_fits_ever(Demand(2, {"A100": 1}), 1)


def test_remote_paths_map_into_the_node_folder(tmp_path) -> None:
    paths = NodePaths(tmp_path)
    assert paths.resolve("~/x") == tmp_path / "home" / "x"
    assert paths.resolve("/data") == tmp_path / "root" / "data"
    assert paths.resolve("rel") == tmp_path / "home" / "rel"
    text = LocalRunner().shell(
        NodeRef(0, "127.0.0.1", str(tmp_path)), "echo hi", {"A": "b c"}, "~/w"
    )
    assert "export A='b c';" in text and f"cd {tmp_path}/home/w" in text


def test_the_runtime_imports_nothing_of_the_controller() -> None:
    import subprocess
    import sys

    code = (
        "import sys, skystate.runtime.agent, skystate.runtime.__main__; "
        "bad = ('skystate.reconcile', 'skystate.spec', 'skystate.providers', 'fabric', "
        "'boto3', 'google', 'pydantic', 'typer'); "
        "print([m for m in sys.modules if m.startswith(bad)])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
