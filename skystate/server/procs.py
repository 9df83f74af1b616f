"""Process-tree control for requests: tag, find and kill what a request started.

A request's worker runs in its own session, and every process it starts inherits
``SKYSTATE_REQUEST_ID``. Cancel kills the session and then every process still
carrying the tag — that also finds children that left the session (setup runs in
one of its own) and works after the worker itself died. Detached cluster agents
drop the tag when they start, so cancelling a request never kills a cluster.

The server's own variables (``SERVER_ONLY``: its bearer token ``SKYSTATE_API_TOKEN``
and every other ``SKYSTATE_API_*`` setting) stay with the server: ``server_child_env``
removes them from the environment of every process the server starts (request
workers), so nothing below a worker — cluster agents, setup, jobs, ssh — can see them.
A deny-list, not an allow-list: jobs on local clusters run with the user's environment
(PATH, CUDA, HF_HOME, ...), as on a SkyPilot host. Cloud and SSH agents already get
only an allow-list (``cloud_nodes.FORWARDED_ENV``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time

TAG = "SKYSTATE_REQUEST_ID"
SERVER_ONLY_PREFIXES = ("SKYSTATE_API_",)
SERVER_ONLY = ("SKYSTATE_REQUEST_RETENTION_DAYS",)
_PR_SET_PDEATHSIG = 1
KILL_SETTLE_SECONDS = 5.0  # how long a kill waits for the killed to be gone


def die_with_parent() -> None:
    """Linux: SIGKILL this process when the server that spawned it dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def is_server_only(name: str) -> bool:
    return name in SERVER_ONLY or name.startswith(SERVER_ONLY_PREFIXES)


def server_child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a process the server starts: without the server's variables."""
    source = env if env is not None else os.environ
    return {k: v for k, v in source.items() if not is_server_only(k)}


def untagged_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a process that must outlive the request (a cluster agent)."""
    return {k: v for k, v in server_child_env(env).items() if k != TAG}


def tagged_pids(request_id: str) -> list[int]:
    needle = f"{TAG}={request_id}".encode()
    pids = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        if needle + b"\0" in environ or environ.endswith(needle):
            pids.append(int(entry.name))
    return pids


def kill_request_tree(request_id: str, worker_pid: int | None,
                      settle: float = KILL_SETTLE_SECONDS) -> int:
    """SIGKILL the worker's session and every process tagged with the request; count.

    Returns once no tagged process is left (or ``settle`` seconds passed): SIGKILL takes
    effect asynchronously, and a process may fork while /proc is read, so the scan is
    repeated until it finds nothing. A cancel that returned has nothing left running.
    """
    killed: set[int] = set()
    if worker_pid:
        try:
            os.killpg(worker_pid, signal.SIGKILL)
            killed.add(worker_pid)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + settle
    while pids := tagged_pids(request_id):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    return len(killed)
