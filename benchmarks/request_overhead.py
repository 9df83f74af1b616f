"""``sky.exec`` of a trivial job on an UP local cluster, until the job is RUNNING.

Measures the whole request path: SDK call → HTTP → the server's scheduler → a warm
worker process → the cluster agent → the job's process started (its ``start_at``).
The server is started (and warmed) before timing; each exec waits for the previous
one's job to start, so the figure is latency, not throughput.

    python benchmarks/request_overhead.py [--runs 50]
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench_cluster import bench_cluster


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    import skystate as sky

    with bench_cluster() as agent:
        for _ in range(3):  # warm the server's threads and worker pool
            sky.get(sky.exec(sky.Task(run="true"), cluster_name="bench"))
        to_running, to_returned = [], []
        for _ in range(args.runs):
            time.sleep(0.3)  # let the warm pool refill, as between interactive calls
            started = time.time()
            job_id, _ = sky.get(sky.exec(sky.Task(run="true"), cluster_name="bench"))
            returned = time.time()
            while True:
                [job] = agent.queue([job_id])
                if job.get("start_at"):
                    break
                time.sleep(0.002)
            to_running.append((float(job["start_at"]) - started) * 1000)
            to_returned.append((returned - started) * 1000)
        for label, values in (("exec → job RUNNING", to_running),
                              ("exec → sky.get returned", to_returned)):
            values.sort()
            p95 = values[max(0, int(len(values) * 0.95) - 1)]
            print(f"{label}: p50 {statistics.median(values):.0f} ms, p95 {p95:.0f} ms "
                  f"({len(values)} runs)")


if __name__ == "__main__":
    main()
