"""A tiny HTTP service: ``/`` answers with its version and replica, ``/health`` says ok.

``python server.py [--port P]`` (default: $PORT, else 8080). Standard library only.
``VERSION`` (env) is shown in every answer, so a rolling update can be watched.
"""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the load balancer reuses connections
    wbufsize = 64 * 1024  # one write per response (headers and body together) ...
    disable_nagle_algorithm = True  # ... sent at once: no 40 ms delayed-ACK stall

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/health":
            self._answer(200, {"status": "ok"})
        elif self.path == "/":
            self._answer(200, {"message": "hello from skystate serve",
                               "version": os.environ.get("VERSION", "1"),
                               "replica": os.environ.get("SKYPILOT_SERVE_REPLICA_ID", "-")})
        else:
            self._answer(404, {"error": f"no page {self.path}"})

    def _answer(self, code: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # quiet: one line per request would flood the replica's log


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"serving on 127.0.0.1:{args.port} (version {os.environ.get('VERSION', '1')})",
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
