"""Managed jobs on local clusters: preemption → RUNNING again, and N jobs → all RUNNING.

Recovery: one managed job (``sleep``) is preempted ``--runs`` times with the local
provider's preemption (every process SIGKILLed, its nodes reported gone); each run is
timed from the preemption to the job's RUNNING again on its next attempt's cluster
(detection at the controller's check interval, teardown, launch, submit). Default
timings (no SKYSTATE_TIME_SCALE): a 3 s check interval.

Throughput: ``--jobs`` managed jobs submitted one after another, until every one is
RUNNING on its own cluster (each a local cluster: one agent process); then all are
cancelled and timed until none is left.

Cancel: ``--cancel`` managed jobs submitted, cancelled (``cancel(all=True)``) as soon as
a few run (the others still queued or starting), timed until every one is CANCELLED,
none CANCELLING, and no cluster is recorded or left on disk.

    python benchmarks/managed_jobs.py [--runs 10] [--jobs 20] [--cancel 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any


def _jobs() -> dict[int, dict[str, Any]]:
    from skystate.reconcile.store import read_snapshot

    return {j["job_id"]: j for j in read_snapshot().get("managed_jobs", [])}


def _wait(predicate: Any, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.02)


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[max(0, int(round(len(values) * q)) - 1)]


def recovery(runs: int) -> None:
    import skystate as sky
    from skystate.home import local_clusters_dir
    from skystate.providers.local_nodes import preempt_nodes

    task = sky.Task(run="sleep 3600")
    task.set_resources(sky.Resources(infra="local"))
    job_id, _ = sky.get(sky.jobs.launch(task, name="bench-recovery"))
    seconds = []
    for attempt in range(1, runs + 1):
        _wait(lambda a=attempt: _jobs()[job_id]["attempt"] == a
              and _jobs()[job_id]["status"] == "RUNNING")
        started = time.time()
        preempt_nodes(local_clusters_dir() / f"mj-{job_id}-{attempt}")
        _wait(lambda a=attempt: _jobs()[job_id]["attempt"] == a + 1
              and _jobs()[job_id]["status"] == "RUNNING")
        seconds.append(time.time() - started)
    sky.get(sky.jobs.cancel(job_ids=[job_id]))
    _wait(lambda: _jobs()[job_id]["status"] == "CANCELLED")
    print(f"preemption → RUNNING again: p50 {statistics.median(seconds):.2f} s, "
          f"p95 {_pct(seconds, 0.95):.2f} s ({runs} preemptions)")


def throughput(count: int) -> None:
    import skystate as sky

    task = sky.Task(run="sleep 3600")
    task.set_resources(sky.Resources(infra="local"))
    started = time.time()
    ids = [sky.get(sky.jobs.launch(task, name=f"bench-{n}"))[0] for n in range(count)]
    submitted = time.time() - started
    _wait(lambda: all(_jobs()[i]["status"] == "RUNNING" for i in ids), timeout=1200)
    running = time.time() - started
    print(f"{count} managed jobs: submitted in {submitted:.1f} s ({count / submitted:.1f} "
          f"jobs/s); all RUNNING after {running:.1f} s ({count / running:.2f} jobs/s)")
    started = time.time()
    sky.get(sky.jobs.cancel(all=True))
    _wait(lambda: all(_jobs()[i]["status"] == "CANCELLED" for i in ids), timeout=1200)
    from skystate.reconcile.store import read_snapshot

    left = [c["name"] for c in read_snapshot().get("clusters", [])]
    if left:
        raise SystemExit(f"clusters left after the cancel: {left}")
    print(f"cancel of {count} running managed jobs → all CANCELLED, no cluster left: "
          f"{time.time() - started:.1f} s")


def cancel_mixed(count: int) -> None:
    import skystate as sky
    from skystate.home import local_clusters_dir
    from skystate.reconcile.store import read_snapshot

    task = sky.Task(run="sleep 3600")
    task.set_resources(sky.Resources(infra="local"))
    ids = [sky.get(sky.jobs.launch(task, name=f"bench-cancel-{n}"))[0] for n in range(count)]
    _wait(lambda: sum(_jobs()[i]["status"] == "RUNNING" for i in ids) >= min(5, count))
    running = sum(_jobs()[i]["status"] == "RUNNING" for i in ids)
    started = time.time()
    sky.get(sky.jobs.cancel(all=True))
    _wait(lambda: all(_jobs()[i]["status"] == "CANCELLED" for i in ids), timeout=1200)
    took = time.time() - started
    left = [c["name"] for c in read_snapshot().get("clusters", [])]
    root = local_clusters_dir()
    dirs = [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    if left or dirs:
        raise SystemExit(f"left after the cancel: records {left}, folders {dirs}")
    print(f"cancel of {count} managed jobs ({running} running, {count - running} queued or "
          f"starting) → all CANCELLED, none CANCELLING, no cluster left: {took:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--cancel", type=int, default=0)
    args = parser.parse_args()
    os.environ["SKYSTATE_HOME"] = tempfile.mkdtemp(prefix="skystate-bench-")
    import skystate as sky

    try:
        if args.runs:
            recovery(args.runs)
        if args.jobs:
            throughput(args.jobs)
        if args.cancel:
            cancel_mixed(args.cancel)
    finally:
        sky.api_stop()


if __name__ == "__main__":
    main()
