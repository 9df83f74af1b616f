"""Start, find and stop a service's load balancer; write its ready set; read its stats.

The load balancer (``skystate.serve.lb_server``) runs detached, in a session of its own,
reparented to init, so it outlives whatever started it (an API server that is SIGKILLed,
a request worker that is cancelled). Its environment has neither the API server's
variables nor the request tag (``procs.untagged_env``). It is found again through
``DIR/lb.pid`` (checked against the process's command line, so a reused pid is not taken
for it) and ``DIR/lb.port``. With ``tls`` (keyfile, certfile) it serves HTTPS
(``load_balancer_scheme`` tells which a running one serves).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from skystate.exceptions import LoadBalancerError
from skystate.runtime.layout import write_private
from skystate.runtime.procs import cmdline, is_zombie_or_gone, read_pid
from skystate.serve.lb import POLICIES, ReadyReplica, ReadySet
from skystate.serve.lb_server import PID_FILE, PORT_FILE, READY_SET, STATS
from skystate.server.procs import untagged_env

__all__ = ["LoadBalancerStats", "ReadyReplica", "load_balancer_running",
           "load_balancer_scheme", "read_stats", "start_load_balancer", "stop_load_balancer",
           "write_ready_set"]

LOG_FILE = "lb.log"
_MODULE = "skystate.serve.lb_server"


class ReplicaCounts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    requests: int = 0
    failures: int = 0
    in_flight: int = 0


class ReplicaFailure(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    replica_id: int
    at: float
    error: str


class LoadBalancerStats(BaseModel):
    """``lb_stats.json``; ``recent`` is (unix second, requests) for the last 60 s."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    pid: int
    port: int
    updated_at: float
    requests_total: int = 0
    recent: list[tuple[int, int]] = Field(default_factory=list)
    per_replica: dict[str, ReplicaCounts] = Field(default_factory=dict)
    failed: list[ReplicaFailure] = Field(default_factory=list)


def _pid(service_dir: Path) -> int | None:
    """The pid of this service's live load balancer (a reused pid is not it)."""
    pid = read_pid(service_dir / PID_FILE)
    if pid is None or is_zombie_or_gone(pid):
        return None
    line = cmdline(pid) or ""
    if _MODULE not in line or str(service_dir.resolve()) not in line:
        return None
    return pid


def _port(service_dir: Path) -> int | None:
    return read_pid(service_dir / PORT_FILE)


def load_balancer_running(service_dir: Path) -> tuple[int, int] | None:
    """(pid, port) of the service's load balancer once it listens; None otherwise."""
    pid = _pid(service_dir)
    port = _port(service_dir) if pid is not None else None
    return (pid, port) if pid is not None and port is not None else None


def load_balancer_scheme(service_dir: Path) -> str:
    """``https`` if the running load balancer terminates TLS, else ``http``."""
    pid = _pid(Path(service_dir).resolve())
    return "https" if pid is not None and "--tls-certfile" in (cmdline(pid) or "") \
        else "http"


def start_load_balancer(service_dir: Path, port: int = 0, *, timeout: float = 10.0,
                        tls: tuple[str, str] | None = None) -> tuple[int, int]:
    """Start the load balancer (or find the running one); (pid, port) once it listens.

    ``port`` 0 lets it pick a free port; ``tls`` (keyfile, certfile): HTTPS. A running one
    is returned as it is, whatever its port and scheme. LoadBalancerError if it exits
    without listening (its reason, from ``lb.log``, e.g. a key it cannot load) or does not
    listen within ``timeout`` seconds.
    """
    service_dir = Path(service_dir).resolve()
    service_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with FileLock(str(service_dir / "lb.start.lock"), timeout=timeout, mode=0o600):
        pid = _pid(service_dir)
        if pid is None:
            pid = _spawn(service_dir, port, tls)
        return _wait_listening(service_dir, pid, timeout)


def _spawn(service_dir: Path, port: int, tls: tuple[str, str] | None) -> int:
    """Run the load balancer detached (bash starts it in the background and exits, so
    init adopts it: nobody has to reap it); its pid."""
    argv = [sys.executable, "-m", _MODULE, "--service-dir", str(service_dir),
            "--host", "127.0.0.1", "--port", str(port)]
    if tls is not None:
        argv += ["--tls-keyfile", tls[0], "--tls-certfile", tls[1]]
    log = service_dir / LOG_FILE
    os.close(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    with contextlib.suppress(FileNotFoundError):
        (service_dir / PORT_FILE).unlink()
    spawned = subprocess.run(
        ["bash", "-c", 'log=$1; shift; "$@" >>"$log" 2>&1 </dev/null & echo $!', "_",
         str(log), *argv], check=True, cwd=service_dir, start_new_session=True,
        env=untagged_env(), capture_output=True, text=True)
    return int(spawned.stdout.split()[-1])


def _wait_listening(service_dir: Path, pid: int, timeout: float) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = not is_zombie_or_gone(pid)
        port = _port(service_dir)
        if port is not None and read_pid(service_dir / PID_FILE) == pid and alive:
            return pid, port
        if not alive:
            raise LoadBalancerError(f"the load balancer of {service_dir} exited at start: "
                                    f"{_log_tail(service_dir)}")
        time.sleep(0.01)
    raise LoadBalancerError(f"the load balancer of {service_dir} did not listen within "
                            f"{timeout:g}s: {_log_tail(service_dir)}")


def _log_tail(service_dir: Path) -> str:
    try:
        lines = (service_dir / LOG_FILE).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(line for line in lines[-3:] if line.strip()) or "(empty log)"


def stop_load_balancer(service_dir: Path, *, timeout: float = 10.0) -> None:
    """Stop the load balancer: SIGTERM (requests in flight finish), then SIGKILL past
    ``timeout``. Nothing to do if none is running."""
    service_dir = Path(service_dir).resolve()
    pid = _pid(service_dir)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while not is_zombie_or_gone(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not is_zombie_or_gone(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while not is_zombie_or_gone(pid):
                time.sleep(0.02)
    for name in (PORT_FILE, PID_FILE):
        with contextlib.suppress(FileNotFoundError):
            (service_dir / name).unlink()


def write_ready_set(service_dir: Path, policy: str, replicas: list[ReadyReplica],
                    generation: int, target_qps: dict[str, float] | None = None) -> None:
    """Atomically replace ``ready_set.json``: only these replicas get traffic.
    ``target_qps``: QPS per accelerator (``instance_aware_least_load``'s weights)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown load balancing policy {policy!r} "
                         f"(expected one of: {', '.join(POLICIES)})")
    ready = ReadySet(generation=generation, policy=policy,  # type: ignore[arg-type]
                     replicas=tuple(replicas), target_qps=target_qps)
    write_private(Path(service_dir) / READY_SET, ready.model_dump_json(exclude_none=True))


def read_stats(service_dir: Path) -> LoadBalancerStats | None:
    """The load balancer's last ``lb_stats.json``; None if there is none (yet)."""
    try:
        return LoadBalancerStats.model_validate(
            json.loads((Path(service_dir) / STATS).read_text()))
    except (OSError, ValueError, ValidationError):
        return None
