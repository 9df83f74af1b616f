"""Start the API server: ``python -m skystate.server [--host H] [--port P] [--deploy]``.

It binds before it announces itself: the pid/port file (``api_server.json`` in
``SKYSTATE_HOME``, never holding the token) is written once the socket listens, so a
client that reads it can connect at once.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import socket
import sys
import time
from pathlib import Path

from skystate import __version__
from skystate.home import home, secure_home, use_private_umask
from skystate.reconcile.storage import write_json_atomic
from skystate.server import settings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def server_file(base: Path | None = None) -> Path:
    return (base or home()) / "api_server.json"


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(host: str = "127.0.0.1", port: int = 0, *, deploy: bool = False,
          watch_dir: str | None = None) -> None:
    token = os.environ.get("SKYSTATE_API_TOKEN") or None
    if not is_loopback(host) and not token:
        sys.exit(f"skystate api: listening on {host} needs SKYSTATE_API_TOKEN to be set "
                 "(clients send it as a bearer token)")
    use_private_umask()  # everything the server, its workers and agents create is 0600/0700
    base = home()  # a home found wider than 0700 is made owner-only here, all of it
    secure_home(base, depth=1)  # and what a client made before the server ran (its log)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only
    # then; without it every keep-alive response waits ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:  # the client that started us reports this line
        sys.exit(f"skystate api: cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.listen(2048)
    import uvicorn  # after the checks above: a server that cannot start says so at once

    from skystate.server.app import create_app

    cpus = os.cpu_count() or 2
    app = create_app(base, token=token, max_workers=max(4, cpus * (4 if deploy else 2)),
                     warm=2)
    bound = sock.getsockname()[1]
    write_json_atomic(server_file(base), {
        "pid": os.getpid(), "host": host, "port": bound, "version": __version__,
        "started_at": time.time(), "auth": bool(token), "settings": settings.current(),
    })
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=2)
    watcher = None
    if watch_dir:
        from skystate.server.watching import start_in_thread

        watcher = start_in_thread(watch_dir)
    from skystate.jobs.loop import start_controller

    jobs = start_controller()  # managed jobs: resumes every unfinished one from its record
    from skystate.serve.loop import start_controller as start_services

    services = start_services()  # services: continues every recorded one from its record
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        services.stop()
        jobs.stop()
        if watcher is not None:
            watcher[1].set()
            watcher[0].join(timeout=5)
        app.state.scheduler.close()
        with contextlib.suppress(OSError, ValueError):
            if json.loads(server_file(base).read_text()).get("pid") == os.getpid():
                server_file(base).unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m skystate.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--deploy", action="store_true")
    parser.add_argument("--watch", metavar="DIR", help="Also run the watch loop on DIR.")
    args = parser.parse_args(argv)
    host = "0.0.0.0" if args.deploy and args.host == "127.0.0.1" else args.host
    serve(host, args.port, deploy=args.deploy, watch_dir=args.watch)
