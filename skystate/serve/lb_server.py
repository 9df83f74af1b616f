"""A service's load balancer: a streaming reverse proxy in its own process.

``python -m skystate.serve.lb_server --service-dir DIR --host 127.0.0.1 --port P
[--tls-keyfile KEY --tls-certfile CERT]`` (with both: HTTPS, lb_tls.py; replicas stay HTTP)

An aiohttp low-level server; each request goes to one replica of ``DIR/ready_set.json``
(re-read when it changes, polled every 50 ms) through one pooled keep-alive aiohttp
``ClientSession`` (no proxy lookup, no decompression, no headers of its own). aiohttp and
not uvicorn + httpx: both HTTP parsers are C, and on a loaded machine the pure-Python pair
cost several times the CPU per request (docs/serve-load-balancer.md has the figures).
Bodies are streamed both ways, except a response of known length up to
``WHOLE_BODY_LIMIT``, which is read whole before anything reaches the client: a replica
that dies between its headers and its body then costs a retry, not a cut response.
Hop-by-hop headers are dropped; ``X-Forwarded-For/-Proto/-Host`` are set. A connection
that fails takes the replica out of rotation (lb_state.Rotation) until a connection check
to it succeeds again (checked here, with the backoff Rotation keeps); the request is
retried on another replica if that is safe (nothing of its body was sent, and the method
is idempotent or the connection never opened). No replica: 503.

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
import signal
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from skystate.home import use_private_umask
from skystate.runtime.layout import write_private
from skystate.serve.lb import ReadySet
from skystate.serve.lb_state import Rotation, Stats, parse_ready_set
from skystate.serve.lb_tls import TLSFileError, server_context

READY_SET = "ready_set.json"
STATS = "lb_stats.json"
PID_FILE = "lb.pid"
PORT_FILE = "lb.port"
POLL_SECONDS = 0.05
CHECK_TIMEOUT = 2.0  # a connection check of a replica out of rotation
STATS_SECONDS = 1.0
GRACE = 5.0
CONNECTIONS_PER_REPLICA = 256
WHOLE_BODY_LIMIT = 256 * 1024  # bytes: a response this small is read whole, then relayed
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                        "proxy-authorization", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade"})
_FORWARDED = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host")

log = logging.getLogger("skystate.serve.lb")
Headers = list[tuple[str, str]]


def _decoded(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]


def _hop_by_hop(headers: Headers) -> set[str]:
    named = set(HOP_BY_HOP)
    for key, value in headers:
        if key.lower() == "connection":
            named |= {v.strip().lower() for v in value.split(",")}
    return named


def request_headers(raw: Headers, client: str, scheme: str) -> Headers:
    """The headers to send on: hop-by-hop and Host dropped, X-Forwarded-* set."""
    drop = _hop_by_hop(raw) | {"host", *_FORWARDED}
    out = [(k, v) for k, v in raw if k.lower() not in drop]
    earlier = ", ".join(v for k, v in raw if k.lower() == "x-forwarded-for")
    out.append(("X-Forwarded-For", f"{earlier}, {client}" if earlier else client))
    out.append(("X-Forwarded-Proto", scheme))
    host = next((v for k, v in raw if k.lower() == "host"), None)
    if host:
        out.append(("X-Forwarded-Host", host))
    return out


def response_headers(raw: Headers) -> Headers:
    drop = _hop_by_hop(raw)
    return [(k, v) for k, v in raw if k.lower() not in drop]


async def _whole_if_small(request: web.BaseRequest,
                          upstream: aiohttp.ClientResponse) -> bytes | None:
    """The response body, read whole, when its length is known and small (None: stream
    it). Reading before the client sees anything keeps a broken-off body retryable."""
    length = upstream.content_length
    if request.method == "HEAD" or length is None or length > WHOLE_BODY_LIMIT:
        return None
    return await upstream.read()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class LoadBalancer:
    """The request handler; its state lives in ``rotation`` and ``stats``."""

    def __init__(self, service_dir: Path) -> None:
        self.service_dir = service_dir
        self.rotation = Rotation()
        self.stats = Stats()
        self.port = 0
        self.session: aiohttp.ClientSession | None = None
        self._ready_key: tuple[int, int, int] | None = None
        self._checks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        # at most CONNECTIONS_PER_REPLICA at once: past that requests queue here, rather
        # than a flood of new connections a busy replica would time out
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=CONNECTIONS_PER_REPLICA,
                                         keepalive_timeout=30, ttl_dns_cache=None)
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, trust_env=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=3.0),
            cookie_jar=aiohttp.DummyCookieJar())
        self.reload_ready_set()

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        self.write_stats()

    async def every(self, seconds: float, work: Callable[[], None]) -> None:
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
            if self._ready_key is not None:
                log.info("ready set %s is gone: no replica gets traffic", path)
            self._ready_key = None
            self.rotation.replace(ReadySet())
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

    def start_checks(self) -> None:
        """Start the connection checks that are due (replicas out of rotation)."""
        for replica in self.rotation.due_checks(time.monotonic()):
            task = asyncio.get_running_loop().create_task(
                self._check(replica.replica_id, replica.url))
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    async def _check(self, rid: int, url: str) -> None:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, port), CHECK_TIMEOUT)
        except (OSError, asyncio.TimeoutError, ValueError) as exc:
            self.rotation.check_failed(rid, time.monotonic())
            log.debug("replica %d (%s) still fails: %s", rid, url, _describe(exc))
            return
        writer.close()
        self.rotation.check_passed(rid, time.monotonic())
        log.info("replica %d (%s) accepts connections again: back in rotation", rid, url)

    def write_stats(self) -> None:
        document = self.stats.snapshot(pid=os.getpid(), port=self.port, now=time.time(),
                                       in_flight=self.rotation.in_flight)
        write_private(self.service_dir / STATS, json.dumps(document))

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        assert self.session is not None
        self.stats.request(time.time())
        headers = request_headers(_decoded(request.raw_headers), request.remote or "",
                                  request.scheme)
        started = False

        async def body() -> AsyncIterator[bytes]:
            nonlocal started
            started = True
            async for data in request.content.iter_any():
                yield data

        data = body() if request.body_exists else None
        tried: set[int] = set()
        last_error = ""
        while True:
            upstream: aiohttp.ClientResponse | None = None
            replica = self.rotation.choose(tried)
            if replica is None:
                reason = (f"no replica could take the request ({last_error})" if tried
                          else "no ready replica for this service")
                return web.Response(status=503, text=reason + "\n")
            rid = replica.replica_id
            self.stats.sent(rid)
            try:
                upstream = await self.session.request(
                    request.method, replica.url.rstrip("/") + request.raw_path,
                    headers=headers, data=data, allow_redirects=False)
                whole = await _whole_if_small(request, upstream)
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                if upstream is not None:  # it broke off a body read whole (see above)
                    upstream.release()
                self.rotation.release(rid)
                last_error = _describe(exc)
                connect = isinstance(exc, aiohttp.ClientConnectorError)
                self.stats.failure(rid, last_error, time.time())
                if connect:
                    self.rotation.take_out(rid, time.monotonic())
                log.warning("replica %d (%s) failed%s: %s", rid, replica.url,
                            " and is out of rotation" if connect else "", last_error)
                tried.add(rid)
                if not started and (connect or request.method in IDEMPOTENT):
                    continue
                return web.Response(status=502, text=f"the replica failed: {last_error}\n")
            try:
                return await self._relay(request, upstream, rid, whole)
            finally:
                upstream.release()
                self.rotation.release(rid)

    async def _relay(self, request: web.BaseRequest, upstream: aiohttp.ClientResponse,
                     rid: int, whole: bytes | None = None) -> web.StreamResponse:
        """Send the replica's response to the client: ``whole`` if it was read already,
        else streamed chunk by chunk."""
        out = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for key, value in response_headers(_decoded(upstream.raw_headers)):
            out.headers.add(key, value)
        await out.prepare(request)
        if whole is not None:
            await out.write_eof(whole)
            return out
        try:
            async for chunk in upstream.content.iter_any():
                await out.write(chunk)
        except (aiohttp.ClientError, OSError) as exc:
            # the response has started: the client must see a cut connection, not an end
            if not isinstance(exc, ConnectionResetError):  # that is the client leaving
                self.stats.failure(rid, _describe(exc), time.time())
                log.warning("replica %d broke off a response: %s", rid, _describe(exc))
            if request.transport is not None:
                request.transport.abort()
            return out
        await out.write_eof()
        return out


async def _serve(app: LoadBalancer, sock: socket.socket,
                 tls: ssl.SSLContext | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.open()
    server = web.Server(app.handle, access_log=None)
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=GRACE)
    await runner.setup()
    await web.SockSite(runner, sock, ssl_context=tls).start()
    write_private(app.service_dir / PORT_FILE, f"{app.port}\n")
    log.info("load balancer %d listening on port %d (%s)", os.getpid(), app.port,
             "https" if tls else "http")
    chores = [asyncio.create_task(app.every(POLL_SECONDS, app.reload_ready_set)),
              asyncio.create_task(app.every(POLL_SECONDS, app.start_checks)),
              asyncio.create_task(app.every(STATS_SECONDS, app.write_stats))]
    await stop.wait()
    log.info("stopping: no new connections, up to %gs for requests in flight", GRACE)
    (app.service_dir / PORT_FILE).unlink(missing_ok=True)
    await runner.cleanup()
    for chore in chores:
        chore.cancel()
    await app.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skystate.serve.lb_server")
    parser.add_argument("--service-dir", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-keyfile", default=None)
    parser.add_argument("--tls-certfile", default=None)
    args = parser.parse_args(argv)
    use_private_umask()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    service_dir: Path = args.service_dir.resolve()
    service_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    pid_file, port_file = service_dir / PID_FILE, service_dir / PORT_FILE
    port_file.unlink(missing_ok=True)
    write_private(pid_file, f"{os.getpid()}\n")
    app = LoadBalancer(service_dir)
    tls = None
    try:
        if args.tls_keyfile or args.tls_certfile:
            tls = server_context(args.tls_keyfile or "", args.tls_certfile or "")
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(1024)
    except TLSFileError as exc:
        print(f"load balancer cannot serve HTTPS: {exc}", file=sys.stderr)
        pid_file.unlink(missing_ok=True)
        return 1
    except OSError as exc:
        print(f"load balancer cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        pid_file.unlink(missing_ok=True)
        return 1
    app.port = sock.getsockname()[1]
    try:
        asyncio.run(_serve(app, sock, tls))
    finally:
        port_file.unlink(missing_ok=True)
        with contextlib.suppress(OSError, ValueError):
            if int(pid_file.read_text().split()[0]) == os.getpid():
                pid_file.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
