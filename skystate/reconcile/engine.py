"""The library calls behind ``plan``/``apply`` and the imperative cluster commands.

Front ends (CLI, SDK, later the API server) call these and render the results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skystate.exceptions import ClusterDoesNotExist, PlanError
from skystate.providers.registry import Providers
from skystate.reconcile.actual import ActualState
from skystate.reconcile.gc_pauses import fewer_gc_passes
from skystate.reconcile.plan import Action, ActionType, Plan
from skystate.reconcile.planner import make_plan
from skystate.reconcile.refresh import (
    RefreshReport,
    refresh_clusters,
    refresh_desired,
    unknown_warnings,
    with_live_job_statuses,
)
from skystate.reconcile.store import Store, group_nodes, read_snapshot
from skystate.spec.desired import DesiredState, address

if TYPE_CHECKING:  # the executor is loaded by what applies, not by a plan
    from skystate.reconcile.executor import Progress
    from skystate.reconcile.outcomes import ApplyResult

Confirm = Callable[[Plan], bool]


def _state_lock(timeout: float, purpose: str = "") -> Any:
    from skystate.reconcile.lock import state_lock  # not loaded by a plain plan

    return state_lock(timeout=timeout, purpose=purpose)


def load_desired(state_dir: str | Path) -> DesiredState:
    from skystate.spec.loader import load_state_dir

    with fewer_gc_passes():
        return load_state_dir(Path(state_dir))


def providers_for(desired: DesiredState) -> Providers:
    return Providers(desired.project.providers.model_dump(mode="json"))


def _plan_against(desired: DesiredState, actual: ActualState, providers: Providers,
                  nodes: dict[str, list[dict[str, Any]]], *, targets: Iterable[str],
                  prune: bool, refreshed: bool, state_dir: str) -> Plan:
    from skystate.providers.optimizer import explain_infeasible, rank_offers

    actual = with_live_job_statuses(actual, providers, nodes)
    with fewer_gc_passes():
        return make_plan(
            desired, actual,
            rank_offers=lambda res, n: rank_offers(res, n, providers),
            explain_infeasible=lambda res: explain_infeasible(res, providers),
            now=time.time(), targets=list(targets), prune=prune, refreshed=refreshed,
            state_dir=state_dir, enabled=providers.enabled(),
        )


@fewer_gc_passes()
def plan_state_dir(state_dir: str | Path, *, targets: Iterable[str] = (), prune: bool = True,
                   refresh: bool = False, lock_timeout: float = 30.0) -> Plan:
    """Plan without taking the lock (reads the atomically written state file)."""
    desired = load_desired(state_dir)
    providers = providers_for(desired)
    report = None
    if refresh:
        with _state_lock(timeout=lock_timeout, purpose="skystate plan --refresh"):
            report = refresh_desired(Store(), providers, desired)
    tables = read_snapshot()
    nodes = group_nodes(tables.get("nodes", []))
    plan = _plan_against(desired, ActualState.from_tables(tables), providers, nodes,
                         targets=targets, prune=prune, refreshed=refresh,
                         state_dir=str(state_dir))
    plan.warnings.extend(unknown_warnings(report) if report else [])
    return plan


def apply_state_dir(state_dir: str | Path, *, targets: Iterable[str] = (), prune: bool = True,
                    refresh: bool = False, confirm: Confirm | None = None,
                    progress: Progress | None = None,
                    lock_timeout: float = 30.0) -> tuple[Plan, ApplyResult | None]:
    """Plan and apply under the lock; ``confirm`` may decline (result None). Waits the
    handlers left (a service's load balancer listening) run after the lock is released."""
    plan, result = _apply_state_dir_locked(state_dir, targets=targets, prune=prune,
                                           refresh=refresh, confirm=confirm,
                                           progress=progress, lock_timeout=lock_timeout)
    if result is not None:
        observe_after_lock(result, progress)
    return plan, result


def _apply_state_dir_locked(state_dir: str | Path, *, targets: Iterable[str], prune: bool,
                            refresh: bool, confirm: Confirm | None, progress: Progress | None,
                            lock_timeout: float) -> tuple[Plan, ApplyResult | None]:
    from skystate.reconcile.executor import apply_plan
    from skystate.reconcile.health import record_outcomes

    desired = load_desired(state_dir)
    providers = providers_for(desired)
    with _state_lock(timeout=lock_timeout):
        store = Store()
        report = refresh_desired(store, providers, desired) if refresh else None
        nodes = store.nodes_by_cluster()
        plan = _plan_against(desired, ActualState.from_store(store), providers, nodes,
                             targets=targets, prune=prune, refreshed=refresh,
                             state_dir=str(state_dir))
        plan.warnings.extend(unknown_warnings(report) if report else [])
        if plan.errors:
            raise PlanError("the plan has errors", plan.errors)
        if not plan.has_changes:
            with store.transaction():  # noop resources are Synced (written only on change)
                record_outcomes(store, plan.actions)
            return plan, None
        if confirm is not None and not confirm(plan):
            return plan, None
        return plan, apply_plan(plan, store, providers=providers, progress=progress)


def apply_saved_plan(plan: Plan, *, progress: Progress | None = None,
                     lock_timeout: float = 30.0) -> ApplyResult:
    from skystate.reconcile.executor import apply_plan

    with _state_lock(timeout=lock_timeout):
        result = apply_plan(plan, Store(), progress=progress)
    observe_after_lock(result, progress)
    return result


def observe_after_lock(result: ApplyResult, progress: Progress | None = None) -> None:
    """Run the waits the handlers left, with no lock held (other writers go on): each
    one's outcome gets what it saw, or fails with its error (recorded as an event)."""
    from dataclasses import replace

    from skystate.reconcile.health import record_outcomes

    for observation in result.observations:
        index = next((i for i, o in enumerate(result.outcomes)
                      if o.action is observation.action), None)
        if index is None:
            continue
        outcome = result.outcomes[index]
        started = time.monotonic()
        try:
            seen = observation.wait()
            outcome = replace(outcome, message=f"{outcome.message}; {seen}",
                              seconds=outcome.seconds + time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - the action failed; shown and recorded
            outcome = replace(outcome, status="failed", error=exc,
                              message=f"{outcome.message}; then {type(exc).__name__}: {exc}",
                              seconds=outcome.seconds + time.monotonic() - started)
            store = Store()
            with store.transaction():
                store.add_event(outcome.action.address, outcome.action.type.value,
                                outcome.status, outcome.message)
                record_outcomes(store, [outcome.action], [outcome])
        result.outcomes[index] = outcome
        if progress:
            progress(outcome.action, outcome)
    result.observations = []


def cluster_operation(name: str, operation: ActionType, *, providers_config: dict[str, Any]
                      | None = None, progress: Progress | None = None) -> ApplyResult:
    """``stop``/``start``/``down`` of a recorded cluster, as a one-action plan.

    No state lock: the API server runs requests on one cluster one at a time.
    """
    from skystate.reconcile.executor import apply_action

    store = Store()
    record = store.cluster(name)
    if record is None:
        raise ClusterDoesNotExist(f"cluster {name!r} does not exist")
    action = Action(type=operation, kind="Cluster", address=address("Cluster", name),
                    name=name, before=record, reason=f"requested: {operation.value}")
    return apply_action(action, store, Providers(providers_config), progress=progress)


def refresh_state(state_dir: str | Path | None = None, *, rebuild: bool = False,
                  owners: Iterable[str] = (), lock_timeout: float = 30.0) -> RefreshReport:
    """``skystate refresh [DIR] [--rebuild]`` (and the watch loop's interval refresh).

    Looks in the project's providers (with a DIR) and ``config.yaml``'s; adopts leaks of
    the project's owner, the current user and ``owners`` (``rebuild``: of any owner).
    """
    from skystate.reconcile.imperative import current_user
    from skystate.spec.home_config import home_providers_config

    home = home_providers_config()
    desired = load_desired(state_dir) if state_dir is not None else None
    purpose = "skystate refresh" + (" --rebuild" if rebuild else "")
    with _state_lock(timeout=lock_timeout, purpose=purpose):
        options: dict[str, Any] = dict(owners=[*owners, current_user()], rebuild=rebuild)
        if desired is None:
            return refresh_clusters(Store(), Providers(home), **options)
        return refresh_desired(Store(), providers_for(desired), desired, also_config=home,
                               **options)
