"""The executor's handlers of ``kind: Service`` actions: serve-up, serve-update, serve-down.

Each calls ``skystate.serve.operations`` (the same calls ``sky.serve`` makes), then adds
``declared`` to the service record: the hash, version, offer, price and ``protect`` of
what this apply asked, which the next plan compares (reconcile/plan_services.py). An
apply that dies between the two leaves a service without ``declared``; the next plan
then compares the recorded task itself, so nothing is served twice or forgotten.

Imported by reconcile/handlers.py the first time a plan has one of these actions; it
registers the handlers there.
"""

from __future__ import annotations

import time
from typing import Any

from skystate.exceptions import NotSupportedError, ProviderError
from skystate.reconcile.handlers import HandlerContext, register_handler
from skystate.reconcile.plan import Action, ActionType
from skystate.reconcile.users import current_user

Record = dict[str, Any]


def _operations() -> Any:
    try:
        from skystate.serve import operations
    except ImportError as exc:  # a build without the services controller
        raise NotSupportedError(f"services need skystate.serve.operations: {exc}") from exc
    return operations


def task_config(spec: Record) -> Record:
    """The task to serve, with its secrets read from the state directory now."""
    task = dict(spec.get("task") or {})
    names = list(task.get("secrets") or {})
    if not names:
        return task
    from skystate.reconcile.desired_views import service_task_view
    from skystate.reconcile.engine import load_desired

    where = f"Service/{spec['name']}"
    source = spec.get("secrets_from")
    if not source:
        raise ProviderError(f"{where}: its secrets ({', '.join(names)}) are not in the plan "
                            "and it names no state directory to read them from")
    service = load_desired(source).services.get(spec["name"])
    secrets = (service_task_view(service).get("secrets") or {}) if service else {}
    missing = [n for n in names if n not in secrets]
    if missing:
        raise ProviderError(f"{where}: secrets {', '.join(missing)} are no longer in {source}; "
                            "plan again")
    return {**task, "secrets": {k: str(v) for k, v in secrets.items()}}


def _declare(ctx: HandlerContext, spec: Record) -> int | None:
    """Record what this apply asked on the service record; its version (None: gone)."""
    version: list[int | None] = [None]

    def change(store: Any) -> None:
        record = store.service(spec["name"])
        if record is None:
            return
        version[0] = record.get("version")
        store.put_service({**record, "declared": {
            "spec_hash": spec["spec_hash"], "version": record.get("version"),
            "protect": bool(spec.get("protect")), "update_mode": spec.get("update_mode"),
            "offer": spec.get("offer"), "hourly_per_replica": spec.get("hourly_per_replica"),
            "applied_at": time.time(),
        }})

    ctx.write(change)
    return version[0]


def serve_up(ctx: HandlerContext, action: Action) -> str:
    """Record the service and what this apply asked; waiting for its load balancer is an
    observation made once the state lock is released (``HandlerContext.observe_after``)."""
    spec = dict(action.after or {})
    operations = _operations()
    operations.submit_up(task_config(spec), spec["name"], user=current_user(),
                         owner=spec["owner"])
    _declare(ctx, spec)
    name = spec["name"]
    ctx.observe_after(action, lambda: f"serving at {operations.wait_endpoint(name)}")
    return f"recorded service {name} (version 1)"


def serve_update(ctx: HandlerContext, action: Action) -> str:
    spec = dict(action.after or {})
    mode = spec.get("update_mode") or "rolling"
    if spec.get("task_changed", True):
        _operations().update(task_config(spec), spec["name"], mode, user=current_user())
        version = _declare(ctx, spec)
        return f"updating to version {version} ({mode})"
    _declare(ctx, spec)
    return f"recorded protect: {str(bool(spec.get('protect'))).lower()}"


def serve_down(ctx: HandlerContext, action: Action) -> str:
    """Record the down request; waiting until it is gone is observed after the lock."""
    operations = _operations()
    chosen = operations.request_down([action.name], user=current_user())

    def gone() -> str:
        operations.wait_down(chosen)
        return "taken down"

    ctx.observe_after(action, gone)
    return "down requested"


register_handler(ActionType.SERVE_UP, serve_up)
register_handler(ActionType.SERVE_UPDATE, serve_update)
register_handler(ActionType.SERVE_DOWN, serve_down)
