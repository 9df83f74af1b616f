"""One request in one process: ``python -m skystate.server.worker``.

The server starts workers ahead of time (imports done, so a request starts in
milliseconds), hands each exactly one request on stdin and reads one JSON reply on
the original stdout; the request's own output (progress, logs) goes to its log
file. A fresh process per request means a cancel can kill the whole tree, and no
state leaks from one request into the next.
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


def main() -> None:
    from skystate.server.procs import TAG, die_with_parent

    die_with_parent()
    os.chdir(os.environ.get("SKYSTATE_HOME") or os.getcwd())
    _warm_imports()
    reply = os.fdopen(os.dup(1), "w")
    reply.write("ready\n")
    reply.flush()
    line = sys.stdin.readline()
    if not line:
        os._exit(0)  # the server closed the pool
    request = json.loads(line)
    os.environ[TAG] = request["request_id"]
    if request.get("user_name"):
        os.environ["SKYSTATE_USER"] = request["user_name"]
    log = os.open(request["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    result = _run(request)
    sys.stdout.flush()
    sys.stderr.flush()
    reply.write(json.dumps(result) + "\n")
    reply.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
