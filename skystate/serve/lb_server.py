"""A service's load balancer: a streaming reverse proxy in its own process.

``python -m skystate.serve.lb_server --service-dir DIR --host 127.0.0.1 --port P``

A raw ASGI app on uvicorn; each request goes to one replica of ``DIR/ready_set.json``
(re-read when it changes, polled every 50 ms) through one pooled keep-alive
``httpx.AsyncClient`` (no proxy lookup: ``trust_env=False``). Bodies are streamed both
ways, never buffered; hop-by-hop headers are dropped; ``X-Forwarded-For/-Proto/-Host`` are
set. A connection that fails takes the replica out of rotation (see lb_state.Rotation);
the request is retried on another replica if that is safe (nothing of its body was sent,
and the method is idempotent or the connection never opened). No replica: 503.

Files: ``lb.pid`` at start, ``lb.port`` once listening (both removed at exit), and
``lb_stats.json`` about once a second. SIGTERM: stop accepting, let requests in flight
finish for up to ``GRACE`` seconds, write the last stats, exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from skystate.home import use_private_umask
from skystate.runtime.layout import write_private
from skystate.serve.lb_state import Rotation, Stats, parse_ready_set

READY_SET = "ready_set.json"
STATS = "lb_stats.json"
PID_FILE = "lb.pid"
PORT_FILE = "lb.port"
POLL_SECONDS = 0.05
STATS_SECONDS = 1.0
GRACE = 5.0
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate",
                        b"proxy-authorization", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade"})
_TIMEOUT = httpx.Timeout(connect=3.0, read=None, write=None, pool=None)
_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=512,
                       keepalive_expiry=30.0)

log = logging.getLogger("skystate.serve.lb")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _ClientGone(Exception):
    """The client disconnected while its request body was being read."""


def _hop_by_hop(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    named = {b"host"} | HOP_BY_HOP
    for key, value in headers:
        if key.lower() == b"connection":
            named |= {v.strip().lower() for v in value.split(b",")}
    return named


def request_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The headers to send on: hop-by-hop and Host dropped, X-Forwarded-* set."""
    raw: list[tuple[bytes, bytes]] = scope["headers"]
    drop = _hop_by_hop(raw) | {b"x-forwarded-proto", b"x-forwarded-host"}
    out = [(k, v) for k, v in raw if k.lower() not in drop and k.lower() != b"x-forwarded-for"]
    client = (scope.get("client") or ("", 0))[0].encode()
    earlier = b", ".join(v for k, v in raw if k.lower() == b"x-forwarded-for")
    out.append((b"x-forwarded-for", earlier + b", " + client if earlier else client))
    out.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
    host = next((v for k, v in raw if k.lower() == b"host"), None)
    if host:
        out.append((b"x-forwarded-host", host))
    return out


def response_headers(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    raw = list(response.headers.raw)
    drop = _hop_by_hop(raw) - {b"host"}
    return [(k, v) for k, v in raw if k.lower() not in drop]


def _has_body(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        if key == b"transfer-encoding" or (key == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class LoadBalancer:
    """The ASGI app; its state lives in ``rotation`` and ``stats``."""

    def __init__(self, service_dir: Path) -> None:
        self.service_dir = service_dir
        self.rotation = Rotation()
        self.stats = Stats()
        self.port = 0
        self.client: httpx.AsyncClient | None = None
        self._ready_key: tuple[int, int, int] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.proxy(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    # lifespan: the client, the ready-set poller and the stats writer
    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.client = httpx.AsyncClient(trust_env=False, timeout=_TIMEOUT,
                                                limits=_LIMITS, follow_redirects=False)
                self.reload_ready_set()
                self._tasks = [asyncio.create_task(self._every(POLL_SECONDS,
                                                               self.reload_ready_set)),
                               asyncio.create_task(self._every(STATS_SECONDS,
                                                               self.write_stats))]
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in self._tasks:
                    task.cancel()
                if self.client is not None:
                    await self.client.aclose()
                self.write_stats()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _every(seconds: float, work: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                work()
            except Exception:  # a bad file or a full disk must not stop the proxy
                log.exception("load balancer housekeeping failed")

    def reload_ready_set(self) -> None:
        path = self.service_dir / READY_SET
        try:
            info = path.stat()
        except FileNotFoundError:
            if self._ready_key is not None or self.rotation.ready.replicas:
                log.info("ready set %s is gone: no replica gets traffic", path)
            self._ready_key = None
            self.rotation.replace(type(self.rotation.ready)())
            return
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        if key == self._ready_key:
            return
        self._ready_key = key
        try:
            ready = parse_ready_set(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable ready set %s (keeping generation %d): %s",
                        path, self.rotation.ready.generation, exc)
            return
        self.rotation.replace(ready)
        log.info("ready set generation %d (%s): %s", ready.generation, ready.policy,
                 ", ".join(f"{r.replica_id}={r.url}" for r in ready.replicas) or "none")

    def write_stats(self) -> None:
        document = self.stats.snapshot(pid=os.getpid(), port=self.port, now=time.time(),
                                       in_flight=self.rotation.in_flight)
        write_private(self.service_dir / STATS, json.dumps(document))

    # the proxy
    async def proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.client is not None
        self.stats.request(time.time())
        method: str = scope["method"]
        path = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            path += b"?" + scope["query_string"]
        headers = request_headers(scope)
        started = False

        async def body() -> AsyncIterator[bytes]:
            nonlocal started
            started = True
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _ClientGone
                if message.get("body"):
                    yield message["body"]
                if not message.get("more_body"):
                    return

        content = body() if _has_body(scope) else None
        tried: set[int] = set()
        last_error = ""
        while True:
            replica = self.rotation.choose(tried, time.monotonic())
            if replica is None:
                reason = (f"no replica could take the request ({last_error})" if tried
                          else "no ready replica for this service")
                await _plain(send, 503, reason)
                return
            rid = replica.replica_id
            self.stats.sent(rid)
            try:
                request = httpx.Request(method, replica.url.rstrip("/") + path.decode("latin-1"),
                                        headers=headers, content=content)
                response = await self.client.send(request, stream=True)
            except _ClientGone:
                self.rotation.release(rid)
                return
            except (httpx.TransportError, httpx.InvalidURL) as exc:
                self.rotation.release(rid)
                last_error = _describe(exc)
                connect = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                self.stats.failure(rid, last_error, time.time())
                if connect:
                    self.rotation.take_out(rid, time.monotonic())
                log.warning("replica %d (%s) failed%s: %s", rid, replica.url,
                            " and is out of rotation" if connect else "", last_error)
                tried.add(rid)
                if not started and (connect or method in IDEMPOTENT):
                    continue
                await _plain(send, 502, f"the replica failed: {last_error}")
                return
            try:
                await self._relay(response, receive, send, rid)
            finally:
                await response.aclose()
                self.rotation.release(rid)
            return

    async def _relay(self, response: httpx.Response, receive: Receive, send: Send,
                     rid: int) -> None:
        """Stream the replica's response to the client, chunk by chunk."""
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": response_headers(response)})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if gone.is_set():
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.TransportError as exc:
            # the response has started: the client sees a cut connection, not a fake end
            self.stats.failure(rid, _describe(exc), time.time())
            log.warning("replica %d broke off a response: %s", rid, _describe(exc))
        finally:
            watcher.cancel()


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _serve(app: LoadBalancer, sock: socket.socket) -> None:
    config = uvicorn.Config(app, lifespan="on", access_log=False, log_level="warning",
                            server_header=False, date_header=False, ws="none",
                            timeout_graceful_shutdown=int(GRACE), timeout_keep_alive=30)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if server.started:
        write_private(app.service_dir / PORT_FILE, f"{app.port}\n")
        log.info("load balancer %d listening on port %d", os.getpid(), app.port)
    await serving


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skystate.serve.lb_server")
    parser.add_argument("--service-dir", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    use_private_umask()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("httpx", "httpcore"):  # one INFO line per proxied request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    service_dir: Path = args.service_dir.resolve()
    service_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    pid_file, port_file = service_dir / PID_FILE, service_dir / PORT_FILE
    port_file.unlink(missing_ok=True)
    write_private(pid_file, f"{os.getpid()}\n")
    app = LoadBalancer(service_dir)
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(1024)
    except OSError as exc:
        print(f"load balancer cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        pid_file.unlink(missing_ok=True)
        return 1
    app.port = sock.getsockname()[1]
    try:
        asyncio.run(_serve(app, sock))
    finally:
        port_file.unlink(missing_ok=True)
        with contextlib.suppress(OSError, ValueError):
            if int(pid_file.read_text().split()[0]) == os.getpid():
                pid_file.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
