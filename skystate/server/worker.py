"""A request worker process: ``python -m skystate.server.worker``.

The server starts workers ahead of time (imports done, so a request starts in
milliseconds) and hands each one request at a time on stdin; it reads one JSON reply
per request on the original stdout, while the request's own output (progress, logs)
goes to the request's log file. A worker runs one request at a time in its own
session, so a cancel kills the whole tree (and the server starts a fresh worker);
after a request that finished, the worker takes the next one.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _warm_imports() -> None:
    import rich.console  # noqa: F401

    import skystate.providers.local  # noqa: F401
    import skystate.providers.optimizer  # noqa: F401
    import skystate.reconcile.engine  # noqa: F401
    import skystate.reconcile.imperative  # noqa: F401
    import skystate.reconcile.operations  # noqa: F401
    import skystate.spec.loader  # noqa: F401
    import skystate.spec.task  # noqa: F401


def _run(request: dict[str, Any]) -> dict[str, Any]:
    from skystate.reconcile.lock import current_request_id
    from skystate.server.codec import decode_args, encode, encode_error
    from skystate.server.names import function_of

    current_request_id.set(request["request_id"])  # the state lock's holder names it
    try:
        args = decode_args(request["args"])
        value = function_of(request["name"])(**args)
        return {"ok": True, "value": encode(value)}
    except BaseException as exc:  # noqa: BLE001 - every failure is the request's result
        return {"ok": False, "error": encode_error(exc)}


def _redirect_output(path: str) -> None:
    """Point fds 1 and 2 (and so print, rich and child processes) at ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def main() -> None:
    from skystate.server.procs import TAG, die_with_parent
    from skystate.server.settings import applied

    die_with_parent()
    os.umask(0o077)  # as the server's (skystate.home.PRIVATE_UMASK), if started otherwise
    os.chdir(os.environ.get("SKYSTATE_HOME") or os.getcwd())
    _warm_imports()
    reply = os.fdopen(os.dup(1), "w")
    _redirect_output(os.devnull)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    reply.write("ready\n")
    reply.flush()
    for line in sys.stdin:
        request = json.loads(line)
        os.environ[TAG] = request["request_id"]  # inherited by what the request starts
        os.environ["SKYSTATE_USER"] = request.get("user_name") or ""
        _redirect_output(request["log_path"])
        with applied(request.get("settings") or {}):  # the client's (server.settings)
            result = _run(request)
        _redirect_output(os.devnull)
        reply.write(json.dumps(result) + "\n")
        reply.flush()
    os._exit(0)  # stdin closed: the server is done with this worker


if __name__ == "__main__":
    main()
