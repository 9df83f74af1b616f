"""The executor: applies a Plan through providers, recording each outcome as it happens.

It is a plain library call (the API server will wrap it unchanged). The caller holds
the state lock. Independent actions run in parallel; an action runs once everything
it depends on succeeded, and is skipped if any of that failed. The result always says
what was reached, even when an apply stops part-way.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from skystate.exceptions import PlanError, StalePlanError
from skystate.providers.registry import Providers
from skystate.reconcile.handlers import HandlerContext, run_action
from skystate.reconcile.health import record_outcomes
from skystate.reconcile.outcomes import ActionOutcome, ApplyResult
from skystate.reconcile.plan import Action, Plan
from skystate.reconcile.store import Store

Progress = Callable[[Action, ActionOutcome | None], None]


def check_applicable(plan: Plan, store: Store) -> None:
    if plan.errors:
        raise PlanError("the plan has errors and cannot be applied", plan.errors)
    if plan.state_version != store.version:
        raise StalePlanError(
            f"the saved plan is stale: it was made at state version {plan.state_version}, "
            f"the state is now at version {store.version}; run `skystate plan` again"
        )


def apply_plan(
    plan: Plan,
    store: Store,
    *,
    providers: Providers | None = None,
    parallelism: int = 4,
    progress: Progress | None = None,
) -> ApplyResult:
    """Apply exactly the plan's actions. The caller holds the state lock."""
    check_applicable(plan, store)
    ctx = HandlerContext(store=store, providers=providers or Providers(plan.providers),
                         lock=threading.Lock())
    result = ApplyResult()
    order = _Order([a for a in plan.actions if a.is_change])
    running: dict[Future[str], tuple[Action, float]] = {}
    workers = max(1, parallelism)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while True:
            while len(running) < workers and (action := order.next_ready()) is not None:
                if progress:  # at most ``workers`` submitted: wait() scans what is running
                    progress(action, None)
                running[pool.submit(run_action, ctx, action)] = (action, time.monotonic())
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                action, started = running.pop(future)
                outcome = _outcome(future, action, started)
                _finish(result, progress, outcome)
                for skipped in order.settle(action, outcome.status == "succeeded"):
                    _finish(result, progress, ActionOutcome(
                        skipped, "skipped", "skipped: a step it depends on failed", 0.0))
    for stuck in order.left():  # only a dependency cycle leaves any (the planner makes none)
        _finish(result, progress, ActionOutcome(
            stuck, "skipped", "skipped: its dependencies form a cycle", 0.0))
    with ctx.lock:
        result.observations = list(ctx.observations)
        result.state_version = store.version
        with store.transaction():
            for outcome in result.outcomes:
                store.add_event(outcome.action.address, outcome.action.type.value,
                                outcome.status, outcome.message)
            record_outcomes(store, plan.actions, result.outcomes)  # sync/health status
    return result


STALE_RETRIES = 5


def retry_if_stale(call: Callable[[], Any]) -> Any:
    """A one-action plan is made at the current state version; another writer (a request,
    a controller's other step) may move it first. Then the plan is made again."""
    for _ in range(STALE_RETRIES - 1):
        try:
            return call()
        except StalePlanError:
            continue
    return call()


def apply_action(action: Action, store: Store, providers: Providers,
                 progress: Progress | None = None) -> ApplyResult:
    """One action as a plan of its own at the current state version (imperative calls)."""
    plan = Plan(owner=str((action.after or action.before or {}).get("owner")),
                state_version=store.version, providers=providers.config, actions=[action])
    return apply_plan(plan, store, providers=providers, progress=progress)


class _Order:
    """Which actions may start: a dependency graph walked as outcomes arrive (Kahn's order).

    Each step costs what it touches, not a rescan of everything pending, so an apply of
    thousands of actions stays linear. A dependency outside the plan counts as met.
    """

    def __init__(self, actions: list[Action]) -> None:
        self._actions = {a.id: a for a in actions}
        self._waiting_on = {a.id: {d for d in a.depends_on if d in self._actions}
                            for a in actions}
        self._dependents: dict[str, list[str]] = {}
        for action_id, deps in self._waiting_on.items():
            for dep in deps:
                self._dependents.setdefault(dep, []).append(action_id)
        self._ready = deque(a.id for a in actions if not self._waiting_on[a.id])

    def next_ready(self) -> Action | None:
        """An action whose in-plan dependencies all succeeded (plan order at first)."""
        if not self._ready:
            return None
        action_id = self._ready.popleft()
        del self._waiting_on[action_id]
        return self._actions[action_id]

    def settle(self, action: Action, succeeded: bool) -> list[Action]:
        """Records ``action``'s end; returns what must now be skipped (its dependents, and
        theirs, when it did not succeed)."""
        if succeeded:
            for dependent in self._dependents.get(action.id, ()):
                deps = self._waiting_on.get(dependent)
                if deps is not None:
                    deps.discard(action.id)
                    if not deps:
                        self._ready.append(dependent)
            return []
        skipped: list[Action] = []
        stack = list(self._dependents.get(action.id, ()))
        while stack:
            dependent = stack.pop()
            if self._waiting_on.pop(dependent, None) is None:
                continue  # already skipped through another failed dependency
            skipped.append(self._actions[dependent])
            stack.extend(self._dependents.get(dependent, ()))
        return skipped

    def left(self) -> list[Action]:
        return [self._actions[i] for i in self._waiting_on]


def _outcome(future: Future[str], action: Action, started: float) -> ActionOutcome:
    seconds = time.monotonic() - started
    try:
        return ActionOutcome(action, "succeeded", future.result(), seconds)
    except Exception as exc:  # recorded and reported; other actions go on
        return ActionOutcome(action, "failed", f"{type(exc).__name__}: {exc}", seconds, exc)


def _finish(result: ApplyResult, progress: Progress | None, outcome: ActionOutcome) -> None:
    result.outcomes.append(outcome)
    if progress:
        progress(outcome.action, outcome)
