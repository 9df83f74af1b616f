"""``skystate api start`` wall time on a fresh SKYSTATE_HOME: until the server answers.

(SkyPilot's `sky api start`: 7.25 s on this machine, FACTS.md.)

    python benchmarks/server_start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        env = {**os.environ, "SKYSTATE_HOME": tempfile.mkdtemp(prefix="skystate-bench-")}
        started = time.perf_counter()
        subprocess.run(["skystate", "api", "start"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - started) * 1000)
        subprocess.run(["skystate", "api", "stop"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    print(f"skystate api start (fresh home, until it answers): median "
          f"{statistics.median(times):.0f} ms, min {min(times):.0f} ms ({args.runs} runs)")


if __name__ == "__main__":
    main()
