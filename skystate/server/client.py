"""The API client the SDK and CLI use; starts a local server when none is running.

``SKYSTATE_API_SERVER_URL`` points at a remote server (with ``SKYSTATE_API_TOKEN``);
otherwise the server of this ``SKYSTATE_HOME`` is used, started on demand, and
restarted when it runs another skystate version. A server that cannot start (port
busy, a non-loopback host without a token) is reported at once with its own reason.

Clients are per process: a process that forks after using the SDK gets a new client
(and so new connections) in the child; the parent's pooled sockets are never used
there, so two processes never interleave requests on one connection.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import httpx

from skystate import __version__
from skystate.exceptions import ApiServerError, RequestCancelledError
from skystate.home import home
from skystate.server import settings
from skystate.server.codec import decode, decode_error, encode
from skystate.server.main import server_file

FINISHED = ("SUCCEEDED", "FAILED", "CANCELLED")
FULL_ID_LENGTH = 36  # str(uuid.uuid4())
# (pid, server) -> client: a forked child never finds (and so never uses) its parent's
_CLIENTS: dict[tuple[int, str], ApiClient] = {}


@atexit.register
def _close_clients() -> None:
    mine = [key for key in _CLIENTS if key[0] == os.getpid()]
    for key in mine:  # an inherited client's sockets are the parent's: left alone
        _CLIENTS.pop(key).http.close()


def user_name() -> str:
    return os.environ.get("SKYSTATE_USER") or getpass.getuser()


class ApiClient:
    def __init__(self, url: str, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url
        # Plain HTTP to loopback: no CA bundle to load, no proxy to look up (~1/3 s saved)
        local = httpx.URL(url).scheme == "http" and httpx.URL(url).host in (
            "127.0.0.1", "localhost", "::1")
        self.http = httpx.Client(base_url=url, headers=headers,
                                 timeout=httpx.Timeout(30.0, connect=5.0),
                                 verify=not local, trust_env=not local)

    # --- requests -----------------------------------------------------------------

    def submit(self, name: str, args: dict[str, Any]) -> str:
        reply = self._call("POST", "/api/v1/requests", json={
            "name": name, "args": {k: encode(v) for k, v in args.items()},
            "user_name": user_name(), "settings": settings.current()})
        return str(reply["request_id"])

    def request(self, request_id: str, wait: float = 0.0) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/requests/{request_id}",  # type: ignore[return-value]
                          params={"wait": wait} if wait else None,
                          timeout=wait + 30.0)

    def resolve(self, prefix: str) -> str:
        """The full request ID of a prefix (a full ID is returned without a call)."""
        if len(prefix) == FULL_ID_LENGTH:
            return prefix
        rows = self._call("GET", "/api/v1/requests", params={"prefix": prefix})
        if not rows:
            raise ValueError(f"no request with ID {prefix!r}")
        if len(rows) > 1:
            raise ValueError(f"request ID prefix {prefix!r} is ambiguous "
                             f"({len(rows)} requests)")
        return str(rows[0]["request_id"])

    def wait(self, request_id: str) -> dict[str, Any]:
        while True:
            row = self.request(request_id, wait=25.0)
            if row["status"] in FINISHED:
                return row

    def result(self, request_id: str) -> Any:
        """The request's return value, or its exception raised here."""
        return result_of(self.wait(request_id))

    def stream(self, request_id: str, *, follow: bool = True, tail: int | None = None,
               out: TextIO | None = None) -> None:
        params: dict[str, Any] = {"follow": follow}
        if tail is not None:
            params["tail"] = tail
        target = out or sys.stdout
        with self.http.stream("GET", f"/api/v1/requests/{request_id}/logs", params=params,
                              timeout=httpx.Timeout(None, connect=5.0)) as reply:
            _raise_for_status(reply)
            for chunk in reply.iter_text():
                target.write(chunk)
                target.flush()

    def listing(self, request_ids: list[str] | None = None, all_status: bool = False,
                all_users: bool = True) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"all_status": all_status}
        if request_ids:
            params["request_ids"] = request_ids
        if not all_users:
            params["user_name"] = user_name()
        return self._call("GET", "/api/v1/requests", params=params)  # type: ignore[return-value]

    def cancel(self, request_ids: list[str] | None, all_users: bool) -> str:
        reply = self._call("POST", "/api/v1/cancel", json={
            "request_ids": request_ids, "all_users": all_users, "user_name": user_name()})
        return str(reply["request_id"])

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/api/health")  # type: ignore[return-value]

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            reply = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiServerError(f"cannot reach the API server at {self.url}: {exc}") from exc
        _raise_for_status(reply)
        return reply.json()


def result_of(row: dict[str, Any]) -> Any:
    if row["status"] == "SUCCEEDED":
        return decode(row.get("return_value"))
    if row["status"] == "CANCELLED":
        raise RequestCancelledError(f"request {row['request_id']} ({row['name']}) was "
                                    "cancelled")
    error = row.get("error") or {"type": "builtins:RuntimeError",
                                 "message": row.get("status_msg") or "request failed"}
    raise decode_error(error)


def _raise_for_status(reply: httpx.Response) -> None:
    if reply.status_code < 400:
        return
    if reply.status_code == 401:
        raise ApiServerError("the API server refused the call (401): set SKYSTATE_API_TOKEN "
                             "to its token")
    try:
        reply.read()
        detail = reply.json().get("detail")
    except (ValueError, AttributeError, httpx.StreamError):
        detail = reply.text if not reply.is_stream_consumed else ""
    if reply.status_code == 404:
        raise ValueError(str(detail))
    if reply.status_code == 422:
        raise ValueError(f"invalid request: {detail}")
    raise ApiServerError(f"the API server answered {reply.status_code}: {detail}")


# --- finding or starting the server ---------------------------------------------------


def client() -> ApiClient:
    """The client of this process, connected to a running (or just started) server."""
    remote = os.environ.get("SKYSTATE_API_SERVER_URL")
    token = os.environ.get("SKYSTATE_API_TOKEN")
    key = (os.getpid(), remote or str(home()))
    cached = _CLIENTS.get(key)
    if cached is not None and (remote or _alive(server_file())):
        return cached
    url = remote or ensure_server()
    if cached is not None:
        cached.http.close()
    made = _CLIENTS[key] = ApiClient(url, token)
    if remote:
        with contextlib.suppress(ApiServerError, ValueError):
            settings.tell_once(url, made.health().get("settings"))
    else:
        settings.tell_once(url, (server_info() or {}).get("settings"))
    return made


def server_info(base: Path | None = None) -> dict[str, Any] | None:
    try:
        info = json.loads(server_file(base).read_text())
    except (OSError, ValueError):
        return None
    return info if _pid_alive(int(info.get("pid", 0))) else None


def _alive(path: Path) -> bool:
    try:
        return _pid_alive(int(json.loads(path.read_text()).get("pid", 0)))
    except (OSError, ValueError):
        return False


def _pid_alive(pid: int) -> bool:
    from skystate.runtime.procs import is_zombie_or_gone

    return pid > 0 and not is_zombie_or_gone(pid)


def ensure_server(*, host: str = "127.0.0.1", deploy: bool = False, port: int = 0,
                  watch_dir: str | None = None, timeout: float = 30.0) -> str:
    """The URL of this home's server, starting it (or a newer version of it) if needed."""
    from filelock import FileLock

    base = home()
    base.mkdir(parents=True, exist_ok=True)
    info = server_info(base)
    if info and info.get("version") == __version__:
        return _url(info)
    with FileLock(str(base / "api_server.start.lock"), timeout=timeout, mode=0o600):
        info = server_info(base)
        if info and info.get("version") == __version__:
            return _url(info)
        if info:
            stop_server(base)
        extra = ["--deploy"] if deploy else []
        extra += ["--watch", str(Path(watch_dir).resolve())] if watch_dir else []
        return _url(_spawn(base, host, port, extra, timeout))


def _spawn(base: Path, host: str, port: int, extra: list[str],
           timeout: float) -> dict[str, Any]:
    """Start the server detached (reparented to init: it outlives this process).

    The wait ends as soon as the server announces itself, or as soon as it has exited
    without doing so: then its own reason (what it wrote to its log since) is raised.
    """
    argv = [sys.executable, "-m", "skystate.server", "--host", host, "--port", str(port),
            *extra]
    log = base / "api_server.log"
    offset = log.stat().st_size if log.exists() else 0
    started = time.time()
    spawned = subprocess.run(
        ["bash", "-c", 'log=$1; shift; "$@" >>"$log" 2>&1 </dev/null & echo $!', "_",
         str(log), *argv], check=True, cwd=base, start_new_session=True,
        env={**os.environ, "SKYSTATE_HOME": str(base)}, capture_output=True, text=True)
    pid = int(spawned.stdout.split()[-1])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = server_info(base)
        if info and float(info.get("started_at", 0)) >= started - 1:
            return info
        if not _pid_alive(pid):
            raise ApiServerError("the API server could not start: "
                                 + (_startup_reason(log, offset) or "it exited at once "
                                    f"without a reason (see {log})"))
        time.sleep(0.01)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise ApiServerError(f"the API server did not start within {timeout:g}s:\n{tail}")


def _startup_reason(log: Path, offset: int) -> str:
    """What a server that exited at start wrote (its last lines: the reason or the error
    at the end of a traceback)."""
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            written = handle.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line for line in written.splitlines() if line.strip()]
    return "\n".join(lines[-3:])


def stop_server(base: Path | None = None, timeout: float = 10.0) -> bool:
    """Stop this home's server (SIGTERM, then SIGKILL); False if none was running."""
    base = base or home()
    info = server_info(base)
    if info is None:
        return False
    pid = int(info["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        server_file(base).unlink()
    cached = _CLIENTS.pop((os.getpid(), str(base)), None)
    if cached is not None:
        cached.http.close()
    return True


def _url(info: dict[str, Any]) -> str:
    host = info.get("host") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{info['port']}"
