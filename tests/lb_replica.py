"""A real HTTP replica for the load-balancer tests (stdlib, HTTP/1.1 keep-alive, threads).

``python tests/lb_replica.py --id N --port-file PATH [--delay S] [--port P]
[--hang-up-after-headers]``; it writes its port to PATH once listening (``--port``: that
one, e.g. to come back where it was). ``--hang-up-after-headers``: every answer stops
after its headers and the connection closes, as a replica killed between the two writes.
Routes:

- ``GET /id``: ``replica N`` (after ``--delay`` seconds), header ``X-Replica: N``;
- ``GET /slow?s=S``: the same after S seconds;
- ``GET /headers``: the request headers as JSON;
- ``GET /stream?gate=PATH&chunks=K&size=B``: a chunked response, the first chunk at once,
  the other K chunks of B bytes only once the file PATH exists (so a proxy that buffers
  would never deliver the first chunk early);
- ``POST /upload?seen=PATH&first=B``: reads B bytes of the body, creates PATH, reads the
  rest, answers ``<total length> <sha256>``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK
    replica_id = 0
    delay = 0.0
    hang_up = False

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def _send(self, body: bytes, status: int = 200, ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Replica", str(self.replica_id))
        self.end_headers()
        if self.hang_up:
            self.close_connection = True
            return
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        route, query = urlsplit(self.path).path, self._query()
        if route == "/id":
            time.sleep(self.delay)
            self._send(f"replica {self.replica_id}".encode())
        elif route == "/slow":
            time.sleep(float(query.get("s", "0.2")))
            self._send(f"replica {self.replica_id}".encode())
        elif route == "/headers":
            self._send(json.dumps([[k.lower(), v] for k, v in self.headers.items()]).encode(),
                       ctype="application/json")
        elif route == "/stream":
            self._stream(Path(query["gate"]), int(query.get("chunks", "8")),
                         int(query.get("size", "65536")))
        else:
            self._send(b"not found", 404)

    def _stream(self, gate: Path, chunks: int, size: int) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("X-Replica", str(self.replica_id))
        self.end_headers()

        def chunk(data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        chunk(b"first\n")
        deadline = time.monotonic() + 120
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        for n in range(chunks):
            chunk(bytes([65 + n % 26]) * size)
        self.wfile.write(b"0\r\n\r\n")

    def do_POST(self) -> None:  # noqa: N802
        query = self._query()
        length = int(self.headers.get("Content-Length", "0") or 0)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "")
        digest, total, first = hashlib.sha256(), 0, int(query.get("first", "0"))
        seen = Path(query["seen"]) if "seen" in query else None
        for data in (self._chunks() if chunked else self._exact(length)):
            digest.update(data)
            total += len(data)
            if seen is not None and total >= first and not seen.exists():
                seen.touch()
        self._send(f"{total} {digest.hexdigest()}".encode())

    def _exact(self, length: int):  # type: ignore[no-untyped-def]
        while length > 0:
            data = self.rfile.read(min(length, 65536))
            if not data:
                return
            length -= len(data)
            yield data

    def _chunks(self):  # type: ignore[no-untyped-def]
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return
            yield from self._exact(size)
            self.rfile.readline()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--hang-up-after-headers", action="store_true")
    args = parser.parse_args()
    Handler.replica_id, Handler.delay = args.id, args.delay
    Handler.hang_up = args.hang_up_after_headers
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
