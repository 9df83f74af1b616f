"""The watch loop's seams when it runs against the API server: every apply is a request.

``skystate watch DIR`` (a client) and ``skystate api start --watch DIR`` (inside the
server) both use these, so the loop's applies are recorded, listed by ``api status``
and cancellable like any other request. Plans that only read run in-process.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from skystate.reconcile.plan import Plan
from skystate.reconcile.watch import AppliedAction, WatchOptions, plan_in_process, watch


def _run(name: str, **args: Any) -> Any:
    """Submit a request through the SDK's client and wait for its result."""
    from skystate.server.client import client

    api = client()
    return api.result(api.submit(name, args))


def apply_by_request(state_dir: Path, targets: list[str],
                     lock_timeout: float) -> list[AppliedAction]:
    from skystate.exceptions import ApplyFailedError

    try:  # the arguments of ``sdk.apply(state_dir, targets=..., lock_timeout=...)``
        outcomes = _run("apply", source=str(Path(state_dir).resolve()),
                        targets=list(targets), prune=True, refresh=False, wait=False,
                        lock_timeout=lock_timeout).get("outcomes", [])
    except ApplyFailedError as exc:  # a FAILED request still says what each action did
        outcomes = exc.outcomes
    return [AppliedAction(o["address"], o["type"], o["status"], o["message"])
            for o in outcomes]


def plan_by_request(state_dir: Path, refresh: bool, lock_timeout: float) -> Plan:
    """A refresh writes the state, so it is a request; a plain plan only reads."""
    if not refresh:
        return plan_in_process(state_dir, refresh, lock_timeout)
    plan: Plan = _run("plan", state_dir=str(Path(state_dir).resolve()), refresh=True,
                      targets=[], prune=True)
    return plan


def watch_by_requests(state_dir: str | Path, options: WatchOptions | None = None, *,
                      stop: threading.Event | None = None, out: Any = None) -> None:
    watch(state_dir, options, apply_fn=apply_by_request, plan_fn=plan_by_request, stop=stop,
          out=out)


def start_in_thread(state_dir: str | Path, options: WatchOptions | None = None
                    ) -> tuple[threading.Thread, threading.Event]:
    """``api start --watch DIR``: the loop on a thread of the server, stopped with it."""
    stop = threading.Event()
    thread = threading.Thread(target=watch_by_requests, args=(state_dir, options),
                              kwargs={"stop": stop}, name="watch", daemon=True)
    thread.start()
    return thread, stop
