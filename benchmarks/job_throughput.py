"""Trivial jobs through one local cluster, end to end, against the machine's fork+exec floor.

* **floor**: the processes every trivial job needs — the exact ``bash`` phase wrapper the
  agent runs for ``run: true`` — forked, exec'd and waited for straight from Python, as
  many at a time as the agent may run (node CPUs / 0.5 CPU per job). Nothing else: no
  job table, no scheduling. Also shown: bare ``/bin/true`` at the same parallelism.
* **agent, queued**: N jobs submitted while the agent is paused (SIGSTOP), then the clock
  runs from SIGCONT until the last one SUCCEEDED — the agent draining a queue of N.
  ``ratio`` = agent jobs/s ÷ floor jobs/s (target ≥ 80%).
* **agent, streamed**: N jobs submitted while the agent runs (submit → all SUCCEEDED).
* **sky.exec**: N/5 jobs through the SDK and the API server, each ``sky.get`` in turn.

    python benchmarks/job_throughput.py [--jobs 1000] [--repeat 3]

Each figure is the median of ``--repeat`` runs; the machine's load average is printed.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bench_cluster import bench_cluster

from skystate.runtime.jobdb import JobDB
from skystate.runtime.layout import NodePaths, read_node_config
from skystate.runtime.resources import DEFAULT_JOB_CPUS
from skystate.runtime.runners import phase_wrapper, runner_for


def _spawn_all(argv_for: Callable[[int], list[str]], jobs: int, parallel: int) -> float:
    """Seconds to fork+exec+wait ``jobs`` processes, at most ``parallel`` at a time."""
    running: dict[int, subprocess.Popen[bytes]] = {}

    def reap() -> None:
        pid, status = os.wait()
        running.pop(pid).returncode = os.waitstatus_to_exitcode(status)

    started = time.perf_counter()
    for i in range(jobs):
        if len(running) >= parallel:
            reap()
        proc = subprocess.Popen(argv_for(i), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        running[proc.pid] = proc
    while running:
        reap()
    return time.perf_counter() - started


def floor(node_dir: Path, jobs: int, parallel: int, scratch: Path) -> tuple[float, float]:
    """(wrapper floor, /bin/true floor) in jobs/s."""
    config = read_node_config(node_dir)
    runner = runner_for(config)
    scratch.mkdir(parents=True, exist_ok=True)

    def wrapper(i: int) -> list[str]:
        shell = runner.shell(config.nodes[0], "true", {"SKYPILOT_NODE_RANK": "0"}, None)
        return ["bash", "-c", phase_wrapper([shell], scratch / f"{i}.log", scratch / f"{i}.exit")]

    wrapped = _spawn_all(wrapper, jobs, parallel)
    bare = _spawn_all(lambda i: ["/bin/true"], jobs, parallel)
    return jobs / wrapped, jobs / bare


def _wait_done(db: JobDB, timeout: float) -> None:
    deadline = time.time() + timeout
    while db.count_active():
        if time.time() > deadline:
            raise SystemExit(f"FAIL: {db.count_active()} jobs still active after {timeout} s")
        time.sleep(0.01)
    failed = [j for j in db.jobs() if str(j["status"]) != "SUCCEEDED"]
    if failed:
        raise SystemExit(f"FAIL: {len(failed)} jobs did not succeed, e.g. {failed[0]}")


def queued(agent, node_dir: Path, jobs: int) -> float:
    """jobs/s of the agent draining ``jobs`` queued while it was paused."""
    from skystate.providers.base import JobRequest
    from skystate.runtime.api import agent_pid

    pid = agent_pid(node_dir)
    assert pid, "no agent"
    os.kill(pid, signal.SIGSTOP)
    try:
        for i in range(jobs):
            agent.submit(JobRequest(name=f"q{i}", run="true"))
    finally:
        os.kill(pid, signal.SIGCONT)
    started = time.perf_counter()
    _wait_done(JobDB(NodePaths(node_dir).db), timeout=600)
    return jobs / (time.perf_counter() - started)


def streamed(agent, node_dir: Path, jobs: int) -> float:
    from skystate.providers.base import JobRequest

    started = time.perf_counter()
    for i in range(jobs):
        agent.submit(JobRequest(name=f"s{i}", run="true"))
    _wait_done(JobDB(NodePaths(node_dir).db), timeout=600)
    return jobs / (time.perf_counter() - started)


def sdk_exec(node_dir: Path, jobs: int) -> float:
    import skystate as sky

    started = time.perf_counter()
    for i in range(jobs):
        sky.get(sky.exec(sky.Task(name=f"e{i}", run="true"), cluster_name="bench"))
    _wait_done(JobDB(NodePaths(node_dir).db), timeout=600)
    return jobs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    args = parser.parse_args()
    figures: dict[str, list[float]] = {k: [] for k in
                                       ("floor", "true", "queued", "streamed", "exec")}
    load = [os.getloadavg()[0]]
    with bench_cluster() as agent:
        node_dir = Path(agent.head)
        parallel = int(float(read_node_config(node_dir).cpus) / DEFAULT_JOB_CPUS)
        scratch = Path(os.environ["SKYSTATE_HOME"]) / "floor"
        for _ in range(args.repeat):
            wrapped, bare = floor(node_dir, args.jobs, parallel, scratch)
            figures["floor"].append(wrapped)
            figures["true"].append(bare)
            figures["queued"].append(queued(agent, node_dir, args.jobs))
            figures["streamed"].append(streamed(agent, node_dir, args.jobs))
            figures["exec"].append(sdk_exec(node_dir, max(1, args.jobs // 5)))
            load.append(os.getloadavg()[0])
    med = {k: statistics.median(v) for k, v in figures.items()}
    print(f"{args.jobs} trivial jobs, {parallel} at a time (node CPUs / {DEFAULT_JOB_CPUS}); "
          f"median of {args.repeat}; load average {min(load):.1f}-{max(load):.1f} on "
          f"{os.cpu_count()} CPUs")
    print(f"floor (the job's bash wrapper, fork+exec+wait): {med['floor']:.0f} jobs/s "
          f"(bare /bin/true: {med['true']:.0f}/s)")
    ratio = med["queued"] / med["floor"]
    print(f"agent, {args.jobs} queued: {med['queued']:.0f} jobs/s = {ratio:.0%} of the floor "
          f"({med['queued'] / med['true']:.0%} of bare /bin/true) -> "
          f"{'OK' if ratio >= 0.8 else 'BELOW the 80% target'}")
    print(f"agent, streamed (submitted while it runs): {med['streamed']:.0f} jobs/s")
    print(f"sky.exec: {max(1, args.jobs // 5)} jobs, each sky.get in turn: "
          f"{med['exec']:.0f} jobs/s")
    print("runs:", {k: [round(x) for x in v] for k, v in figures.items()})


if __name__ == "__main__":
    main()
