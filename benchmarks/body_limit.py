"""An oversized request body against a loopback server with a token: how much of it the
client had sent when the server answered, and how much the server process grew.

A 50 MB body is sent in 64 KiB pieces over a raw socket, stopping as soon as the server
answers: with ``Content-Length`` (no token), chunked without the token, chunked with it.

    python benchmarks/body_limit.py [--mb 50]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

TOKEN = "bench-token"
PIECE = 64 * 1024


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return int(next(x for x in status if x.startswith("VmRSS:")).split()[1]) / 1024


def pieces(total: int, chunked: bool) -> Iterator[bytes]:
    for start in range(0, total, PIECE):
        piece = b"x" * min(PIECE, total - start)
        yield b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
    if chunked:
        yield b"0\r\n\r\n"


def send(port: int, head: bytes, body: Iterator[bytes]) -> tuple[str, int]:
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        for piece in body:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(piece)
            except OSError:
                break
            sent += len(piece)
        try:
            answer = sock.recv(4096).split(b"\r\n", 1)[0].decode()
        except OSError as exc:
            answer = f"({exc})"
    return answer, sent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=50)
    total = parser.parse_args().mb * 1024 * 1024
    home = Path(tempfile.mkdtemp(prefix="skystate-bench-"))
    env = {**os.environ, "SKYSTATE_HOME": str(home), "SKYSTATE_API_TOKEN": TOKEN}
    server = subprocess.Popen([sys.executable, "-m", "skystate.server", "--port", "0"],
                              env=env, cwd=home, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        while not (home / "api_server.json").exists():
            time.sleep(0.05)
        port = json.loads((home / "api_server.json").read_text())["port"]
        start = b"POST /api/v1/requests HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        auth = b"Authorization: Bearer %s\r\n" % TOKEN.encode()
        cases = [("Content-Length, no token", b"Content-Length: %d\r\n" % total, False),
                 ("chunked, no token", b"Transfer-Encoding: chunked\r\n", True),
                 ("chunked, token", auth + b"Transfer-Encoding: chunked\r\n", True)]
        for label, headers, chunked in cases:
            before = rss_mb(server.pid)
            answer, sent = send(port, start + headers + b"\r\n",
                                pieces(total, chunked))
            print(f"{label:26} {answer:40} sent {sent / 1e6:6.1f} MB of {total / 1e6:.1f};"
                  f" server RSS {rss_mb(server.pid) - before:+6.1f} MB")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
