"""Latency the service load balancer adds, and its throughput at saturation.

One fast replica (a raw asyncio HTTP/1.1 server in its own process, keep-alive, a small
fixed answer) is called directly and through a real load-balancer process
(``skystate.serve.lb_process.start_load_balancer``). Load is open-loop: request *i* is due
at ``t0 + i / rate`` whether or not earlier ones have returned, and its latency counts
from when it was due (so a proxy that falls behind shows it). The client is raw asyncio
sockets over a pool of keep-alive connections, so the client costs as little as possible.
Saturation: ``--concurrency`` connections in a closed loop for ``--seconds``.
``--tls``: the load balancer serves HTTPS (a self-signed certificate made with the
``openssl`` CLI; the client verifies it), the replica stays plain HTTP, so the figures
include TLS termination (connections are kept alive: handshakes are not in the latency).

    PYTHONPATH=$PWD python benchmarks/serve_lb.py [--seconds 5] [--rates 100,1000] [--tls]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REQUEST = b"GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


async def _replica(port_file: Path) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    await server.serve_forever()


class Pool:
    """Keep-alive connections to one port; a request takes a free one or opens one."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.port, self.tls = port, tls
        self.free: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self) -> None:
        conn = self.free.pop() if self.free else await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=self.tls)
        reader, writer = conn
        writer.write(REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head[:80].decode(errors="replace"))
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        self.free.append(conn)

    def close(self) -> None:
        for _, writer in self.free:
            writer.close()


async def open_loop(port: int, rate: float, seconds: float,
                    tls: ssl.SSLContext | None = None) -> tuple[list[float], int]:
    """Latencies (ms) of ``rate`` requests/s for ``seconds``, each from its due time,
    and how many failed."""
    pool, latencies, tasks = Pool(port, tls), [], []
    failed = 0

    async def one(due: float) -> None:
        nonlocal failed
        try:
            await pool.get()
        except (OSError, RuntimeError, asyncio.IncompleteReadError):
            failed += 1
            return
        latencies.append((time.perf_counter() - due) * 1000)

    for _ in range(20):
        await pool.get()  # warm connections and the proxy's pool
    start = time.perf_counter() + 0.05
    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    pool.close()
    return latencies, failed


async def saturation(port: int, concurrency: int, seconds: float,
                     tls: ssl.SSLContext | None = None) -> float:
    pool, done = Pool(port, tls), 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await pool.get()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    pool.close()
    return done / (time.perf_counter() - started)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def _certificate(folder: Path) -> tuple[tuple[str, str], ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 (openssl CLI): the files, and a client
    context that trusts it."""
    key, cert = folder / "lb.key", folder / "lb.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return (str(key), str(cert)), ssl.create_default_context(cafile=str(cert))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="100,1000")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--tls", action="store_true", help="HTTPS at the load balancer")
    parser.add_argument("--replica", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replica:
        asyncio.run(_replica(args.replica))
        return
    from skystate.serve.lb_process import (
        ReadyReplica,
        start_load_balancer,
        stop_load_balancer,
        write_ready_set,
    )

    with tempfile.TemporaryDirectory() as tmp:
        service, port_file = Path(tmp) / "svc", Path(tmp) / "replica.port"
        replica = subprocess.Popen([sys.executable, __file__, "--replica", str(port_file)])
        try:
            while not port_file.exists() or not port_file.read_text():
                time.sleep(0.01)
            direct = int(port_file.read_text())
            write_ready_set(service, "round_robin", [ReadyReplica(
                replica_id=1, url=f"http://127.0.0.1:{direct}", version=1)], 1)
            files, client_tls = _certificate(Path(tmp)) if args.tls else (None, None)
            _, proxied = start_load_balancer(service, tls=files)
            print(f"load balancer: {'https' if args.tls else 'http'}, replica: http")
            print(f"{'load':>12} {'direct p50':>11} {'p99':>7} {'via LB p50':>11} {'p99':>7}"
                  f" {'added p50':>10} {'p99':>7}   (ms)  failed")
            for rate in (float(r) for r in args.rates.split(",")):
                lat_d, fail_d = asyncio.run(open_loop(direct, rate, args.seconds))
                lat_l, fail_l = asyncio.run(open_loop(proxied, rate, args.seconds,
                                                      client_tls))
                d50, d99, l50, l99 = (_pct(lat_d, 0.5), _pct(lat_d, 0.99),
                                      _pct(lat_l, 0.5), _pct(lat_l, 0.99))
                print(f"{rate:>8.0f} r/s {d50:>11.2f} {d99:>7.2f} {l50:>11.2f} {l99:>7.2f}"
                      f" {l50 - d50:>10.2f} {l99 - d99:>7.2f}        {fail_d}/{fail_l}")
            sat_d = asyncio.run(saturation(direct, args.concurrency, args.seconds))
            sat_l = asyncio.run(saturation(proxied, args.concurrency, args.seconds,
                                           client_tls))
            print(f"saturation ({args.concurrency} connections): direct {sat_d:,.0f} r/s, "
                  f"via LB {sat_l:,.0f} r/s")
        finally:
            stop_load_balancer(service)
            replica.kill()
            replica.wait()


if __name__ == "__main__":
    main()
