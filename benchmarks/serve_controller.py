"""Services on local replicas (examples/serve-http/server.py): up → every replica READY,
requests through the load balancer, a killed replica → replaced and READY again, and a
rolling update → every replica on version 2; then down → nothing left.

Default timings (no SKYSTATE_TIME_SCALE): probes every 10 s. ``--scale 30`` divides every
controller timing by 30, as the tests do.

    python benchmarks/serve_controller.py [--replicas 3] [--requests 2000] [--scale 30]
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "serve-http"


def _task(version: int, replicas: int) -> Any:
    import skystate as sky

    return sky.Task.from_yaml_config({
        "name": "bench", "workdir": str(EXAMPLE), "envs": {"VERSION": str(version)},
        "resources": {"infra": "local", "ports": 8080},
        "service": {"readiness_probe": {"path": "/health", "initial_delay_seconds": 600},
                    "replicas": replicas},
        "run": "exec python3 server.py --port 8080"})


def _ready(version: int, count: int, avoid: int | None = None) -> dict[str, Any]:
    import skystate as sky

    while True:
        record = sky.get(sky.serve.status(["bench"]))[0]
        ready = [r for r in record["replica_info"] if str(r["status"]) == "READY"
                 and r["version"] == version and r["replica_id"] != avoid]
        live = [r for r in record["replica_info"] if not r["status"].is_terminal()]
        if len(ready) == count and len(live) == count:
            return record
        time.sleep(0.05)


def _pid_on(port: int) -> int:
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            parts = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"server.py" in parts and str(port).encode() in parts:
            return int(pid)
    raise SystemExit(f"no replica on port {port}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--scale", default="30")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="skystate-bench-serve-")
    Path(home, "config.yaml").write_text("providers:\n  local: {}\n")
    os.environ.update(SKYSTATE_HOME=home, SKYSTATE_TIME_SCALE=args.scale)
    import httpx

    import skystate as sky

    sky.api_start()
    started = time.perf_counter()
    _, endpoint = sky.get(sky.serve.up(_task(1, args.replicas), "bench"))
    listening = time.perf_counter() - started
    record = _ready(1, args.replicas)
    print(f"up: endpoint in {listening:.2f}s, {args.replicas} replicas READY in "
          f"{time.perf_counter() - started:.2f}s")
    with httpx.Client(trust_env=False, timeout=30) as client:
        begin, codes = time.perf_counter(), []
        codes = [client.get(endpoint + "/").status_code for _ in range(args.requests)]
        took = time.perf_counter() - begin
    print(f"{args.requests} sequential requests through the LB: {took:.2f}s "
          f"({args.requests / took:.0f}/s), non-200: {sum(c != 200 for c in codes)}")
    victim = record["replica_info"][0]
    killed = time.perf_counter()
    os.kill(_pid_on(int(victim["endpoint"].rsplit(":", 1)[1])), signal.SIGKILL)
    _ready(1, args.replicas, avoid=victim["replica_id"])
    print(f"killed replica → replaced and READY: {time.perf_counter() - killed:.2f}s")
    updating = time.perf_counter()
    sky.get(sky.serve.update(_task(2, args.replicas), "bench"))
    _ready(2, args.replicas)
    print(f"rolling update of {args.replicas} replicas: {time.perf_counter() - updating:.2f}s")
    downing = time.perf_counter()
    sky.get(sky.serve.down("bench"))
    print(f"down: {time.perf_counter() - downing:.2f}s")
    sky.api_stop()


if __name__ == "__main__":
    main()
