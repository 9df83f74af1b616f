"""sky.Dag as SkyPilot's programs build it: tasks made inside ``with Dag()`` register, ``>>``
chains them, a multi-document YAML loads as a pipeline, and launch takes a one-task Dag."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import skystate as sky
from skystate.exceptions import SpecError


def test_tasks_made_inside_the_block_register_in_order() -> None:
    with sky.Dag() as dag:
        a = sky.Task(name="a", run="echo a")
        b = sky.Task(name="b", run="echo b")
    outside = sky.Task(name="c", run="echo c")
    assert [t.name for t in dag.tasks] == ["a", "b"]
    assert all(t is not outside for t in dag.tasks)
    assert dag.is_chain() and dag.chain() == [a, b]


def test_rshift_builds_a_chain_and_other_edges_are_not_runnable() -> None:
    with sky.Dag() as dag:
        a, b, c = (sky.Task(name=n, run="true") for n in "abc")
        a >> b >> c
    assert dag.is_chain()
    with sky.Dag() as fan:
        a, b, c = (sky.Task(name=n, run="true") for n in "abc")
        a >> c
    assert not fan.is_chain()
    with pytest.raises(ValueError, match="chain"):
        fan.chain()
    with pytest.raises(ValueError, match="enclosing"):
        sky.Task(name="x") >> sky.Task(name="y")


def test_the_current_dag_is_per_thread() -> None:
    seen: list[object] = []
    with sky.Dag() as dag:
        thread = threading.Thread(target=lambda: seen.append(sky.Task(name="t")))
        thread.start()
        thread.join()
    assert dag.tasks == []
    assert len(seen) == 1


def test_multi_document_yaml_is_a_named_chain(tmp_path: Path) -> None:
    path = tmp_path / "pipe.yaml"
    path.write_text("name: pipe\n---\nname: train\nrun: echo t\n---\nname: eval\nrun: echo e\n")
    with sky.Dag() as outer:
        dag = sky.Dag.from_yaml(path)
    assert outer.tasks == []
    assert dag.name == "pipe"
    assert [t.name for t in dag.chain()] == ["train", "eval"]
    single = tmp_path / "one.yaml"
    single.write_text("name: solo\nrun: echo s\n")
    assert sky.Dag.from_yaml(single).single_task().name == "solo"


def test_bad_document_in_a_pipeline_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "pipe.yaml"
    path.write_text("name: pipe\n---\nname: a\nrun: echo\n---\nname: b\nnum_nodes: zero\n")
    with pytest.raises(SpecError) as err:
        sky.Dag.from_yaml(path)
    assert "pipe.yaml:7" in str(err.value)


def test_launch_takes_a_one_task_dag_only() -> None:
    from skystate.sdk import _task_config

    with sky.Dag() as dag:
        sky.Task(name="only", run="echo hi")
    assert _task_config(dag)["name"] == "only"
    with sky.Dag() as two:
        sky.Task(name="a", run="true")
        sky.Task(name="b", run="true")
    with pytest.raises(ValueError, match="exactly one task"):
        _task_config(two)
