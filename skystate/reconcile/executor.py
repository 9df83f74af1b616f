"""The executor: applies a Plan through providers, recording each outcome as it happens.

It is a plain library call (the API server will wrap it unchanged). The caller holds
the state lock. Independent actions run in parallel; an action runs once everything
it depends on succeeded, and is skipped if any of that failed. The result always says
what was reached, even when an apply stops part-way.
"""

from __future__ import annotations

import threading
import time
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
    changes = [a for a in plan.actions if a.is_change]
    result = ApplyResult()
    outcomes: dict[str, ActionOutcome] = {}
    pending = list(changes)
    planned = {a.id for a in changes}
    running: dict[Future[str], tuple[Action, float]] = {}
    with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
        while pending or running:
            for action in _ready(pending, outcomes, planned):
                pending.remove(action)
                if progress:
                    progress(action, None)
                running[pool.submit(run_action, ctx, action)] = (action, time.monotonic())
            for action in _blocked(pending, outcomes):
                pending.remove(action)
                _finish(outcomes, result, progress, ActionOutcome(
                    action, "skipped", "skipped: a step it depends on failed", 0.0))
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                action, started = running.pop(future)
                _finish(outcomes, result, progress, _outcome(future, action, started))
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


def _ready(pending: list[Action], outcomes: dict[str, ActionOutcome],
           planned: set[str]) -> list[Action]:
    """Actions whose in-plan dependencies all succeeded (others count as met)."""
    return [
        a for a in pending
        if all(d not in planned or (d in outcomes and outcomes[d].status == "succeeded")
               for d in a.depends_on)
    ]


def _blocked(pending: list[Action], outcomes: dict[str, ActionOutcome]) -> list[Action]:
    return [a for a in pending
            if any(d in outcomes and outcomes[d].status != "succeeded" for d in a.depends_on)]


def _outcome(future: Future[str], action: Action, started: float) -> ActionOutcome:
    seconds = time.monotonic() - started
    try:
        return ActionOutcome(action, "succeeded", future.result(), seconds)
    except Exception as exc:  # recorded and reported; other actions go on
        return ActionOutcome(action, "failed", f"{type(exc).__name__}: {exc}", seconds, exc)


def _finish(outcomes: dict[str, ActionOutcome], result: ApplyResult,
            progress: Progress | None, outcome: ActionOutcome) -> None:
    outcomes[outcome.action.id] = outcome
    result.outcomes.append(outcome)
    if progress:
        progress(outcome.action, outcome)
