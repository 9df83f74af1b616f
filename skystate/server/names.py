"""Every request the server runs: which function, how it is scheduled, what it locks.

``long`` requests run in a worker process of their own (cancel ends its process tree);
``short`` ones run on a server thread: they only read, but for ``status``'s budgeted
look at the clusters whose record may be stale (``reconcile.status_check``). ``keys``
name what a request changes: two requests sharing a key never run at the same time, in
arrival order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Args = Mapping[str, Any]


@dataclass(frozen=True)
class RequestKind:
    function: str  # attribute of ``module``
    schedule: str  # "long" or "short"
    keys: Callable[[Args], list[str]]
    module: str = "skystate.reconcile.operations"


def _cluster(args: Args) -> list[str]:
    name = args.get("cluster_name")
    return [f"cluster:{name}"] if name else []


def _none(args: Args) -> list[str]:
    return []


def _apply_keys(args: Args) -> list[str]:
    from skystate.server.apply_keys import keys_of_apply

    return keys_of_apply(args.get("source"))


KINDS: dict[str, RequestKind] = {
    "launch": RequestKind("launch", "long", _cluster),
    "exec": RequestKind("exec", "long", _cluster),
    "stop": RequestKind("stop", "long", _cluster),
    "start": RequestKind("start", "long", _cluster),
    "down": RequestKind("down", "long", _cluster),
    "autostop": RequestKind("autostop", "long", _cluster),
    "cancel": RequestKind("cancel", "long", _cluster),
    "tail_logs": RequestKind("tail_logs", "long", _none),
    "download_logs": RequestKind("download_logs", "long", _none),
    "queue": RequestKind("queue", "short", _none),
    "job_status": RequestKind("job_status", "short", _none),
    "status": RequestKind("status", "short", _none),
    "plan": RequestKind("plan", "long", _none),
    "refresh": RequestKind("refresh", "long", _none),
    "apply": RequestKind("apply", "long", _apply_keys),
    # managed jobs: records only; the controller in the server acts on them
    "jobs.launch": RequestKind("launch", "long", _none, "skystate.jobs.operations"),
    "jobs.queue": RequestKind("queue", "short", _none, "skystate.jobs.operations"),
    "jobs.cancel": RequestKind("cancel", "long", _none, "skystate.jobs.operations"),
    "jobs.tail_logs": RequestKind("tail_logs", "long", _none, "skystate.jobs.operations"),
    # services: records (and waits) only; the controller in the server acts on them
    "serve.up": RequestKind("up", "long", _none, "skystate.serve.requests"),
    "serve.update": RequestKind("update", "long", _none, "skystate.serve.requests"),
    "serve.down": RequestKind("down", "long", _none, "skystate.serve.requests"),
    "serve.terminate_replica": RequestKind("terminate_replica", "long", _none,
                                           "skystate.serve.requests"),
    "serve.status": RequestKind("status", "short", _none, "skystate.serve.requests"),
    "serve.tail_logs": RequestKind("tail_logs", "long", _none, "skystate.serve.requests"),
}


def kind_of(name: str, args: Args) -> RequestKind:
    kind = KINDS.get(name)
    if kind is None:
        raise KeyError(name)
    refresh = getattr(args.get("refresh"), "value", args.get("refresh"))
    if name == "status" and str(refresh).upper() not in ("NONE", "FALSE", "AUTO"):
        return RequestKind("status", "long", _none)
    if name == "plan" and not args.get("refresh"):
        return RequestKind("plan", "short", _none)
    return kind


def function_of(name: str) -> Callable[..., Any]:
    import importlib

    kind = KINDS[name]
    module = importlib.import_module(kind.module)
    return getattr(module, kind.function)  # type: ignore[no-any-return]
