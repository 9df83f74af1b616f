"""The executor's order: an action starts once its in-plan dependencies succeeded, is skipped
(transitively) when one did not, and the walk costs what it touches.

``run_action`` is replaced by a recorder: these tests are about the order the executor
chooses, which no provider influences. Every real handler runs in the end-to-end tests.
"""

from __future__ import annotations

import threading

import pytest

from skystate.reconcile import executor
from skystate.reconcile.plan import Action, ActionType, Plan
from skystate.reconcile.store import Store


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("SKYSTATE_HOME", str(tmp_path))
    return Store()


def _job(name: str, *deps: str) -> Action:
    return Action(type=ActionType.SUBMIT_JOB, kind="Job", address=f"Job/c/{name}", name=name,
                  cluster="c", depends_on=[f"submit-job Job/c/{d}" for d in deps])


def _run(store: Store, monkeypatch, actions: list[Action], fail: set[str] = frozenset(),
         parallelism: int = 4) -> tuple[list[str], dict[str, str]]:
    started: list[str] = []
    lock = threading.Lock()

    def run_action(ctx, action):
        with lock:
            started.append(action.name)
        if action.name in fail:
            raise RuntimeError(f"{action.name} broke")
        return "ok"

    monkeypatch.setattr(executor, "run_action", run_action)
    plan = Plan(owner="t", state_version=store.version, actions=actions)
    result = executor.apply_plan(plan, store, parallelism=parallelism)
    return started, {o.action.name: o.status for o in result.outcomes}


def test_dependencies_run_first_and_a_failure_skips_everything_downstream(store, monkeypatch):
    actions = [_job("c", "b"), _job("b", "a"), _job("a"), _job("e", "a"), _job("d", "x"),
               _job("f", "e", "d")]
    started, status = _run(store, monkeypatch, actions, fail={"a"})
    assert status == {"a": "failed", "b": "skipped", "c": "skipped", "e": "skipped",
                      "d": "succeeded", "f": "skipped"}  # x is not in the plan: met
    assert sorted(started) == ["a", "d"]


def test_every_action_starts_after_all_it_depends_on(store, monkeypatch):
    actions = [_job("z", "x", "y"), _job("y", "x"), _job("x"), _job("w")]
    started, status = _run(store, monkeypatch, actions, parallelism=1)
    assert set(status.values()) == {"succeeded"}
    assert started.index("x") < started.index("y") < started.index("z")
    assert started[:2] == ["x", "w"]  # what is ready at first starts in plan order


def test_a_cycle_is_skipped_rather_than_waited_for_forever(store, monkeypatch):
    started, status = _run(store, monkeypatch, [_job("a", "b"), _job("b", "a"), _job("c")])
    assert status == {"c": "succeeded", "a": "skipped", "b": "skipped"}
    assert started == ["c"]


def test_a_wide_and_deep_plan_runs_everything_once(store, monkeypatch):
    fan = [_job("root")] + [_job(f"leaf{i}", "root") for i in range(3000)]
    chain = [_job("n0")] + [_job(f"n{i}", f"n{i - 1}") for i in range(1, 1000)]
    started, status = _run(store, monkeypatch, fan + chain)
    assert len(started) == len(status) == 4001 and set(status.values()) == {"succeeded"}
    assert [n for n in started if n.startswith("n")] == [f"n{i}" for i in range(1000)]
