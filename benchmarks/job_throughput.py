"""Trivial jobs through one local cluster, end to end: submit → all SUCCEEDED.

Two front ends: the cluster agent directly (what `apply` uses) and `sky.exec` (the SDK,
which also reads the state file and builds the request per call).

    python benchmarks/job_throughput.py [--jobs 1000]
"""

from __future__ import annotations

import argparse
import time

from bench_cluster import bench_cluster


def _wait_all(agent, ids: list[int], timeout: float) -> None:
    deadline = time.time() + timeout
    wanted = set(ids)
    while True:
        done = {int(j["job_id"]) for j in agent.queue() if str(j["status"]) == "SUCCEEDED"}
        failed = [j for j in agent.queue() if str(j["status"]) in ("FAILED", "FAILED_SETUP",
                                                                  "FAILED_DRIVER")]
        if failed:
            raise SystemExit(f"FAIL: {len(failed)} jobs failed, e.g. {failed[0]}")
        if wanted <= done:
            return
        if time.time() > deadline:
            raise SystemExit(f"FAIL: only {len(wanted & done)} of {len(wanted)} finished")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    import skystate as sky
    from skystate.providers.base import JobRequest

    with bench_cluster() as agent:
        started = time.perf_counter()
        ids = [agent.submit(JobRequest(name=f"j{i}", run="true")) for i in range(args.jobs)]
        submitted = time.perf_counter() - started
        _wait_all(agent, ids, timeout=600)
        total = time.perf_counter() - started
        print(f"agent:    {args.jobs} jobs submitted in {submitted:.2f} s, all SUCCEEDED in "
              f"{total:.2f} s -> {args.jobs / total:.0f} jobs/s end to end")
        n = max(1, args.jobs // 5)
        started = time.perf_counter()
        ids = []
        for i in range(n):
            job_id, _ = sky.get(sky.exec(sky.Task(name=f"e{i}", run="true"),
                                         cluster_name="bench"))
            ids.append(int(job_id))
        _wait_all(agent, ids, timeout=600)
        total = time.perf_counter() - started
        print(f"sky.exec: {n} jobs, all SUCCEEDED in {total:.2f} s -> {n / total:.0f} jobs/s "
              "end to end")


if __name__ == "__main__":
    main()
