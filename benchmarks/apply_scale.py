"""Benchmark: the executor's own cost per action, versus the size of a plan.

A plan of ``N`` actions (``N // 2`` cluster creates, each with a job submit depending on
it) is applied with ``run_action`` replaced by a no-op, so what is timed is the executor:
ordering by dependencies, the thread pool, outcomes and the events and sync status written
to the state store at the end. Provisioning itself is measured elsewhere
(``bench_cluster.py``, ``job_throughput.py``).

    python benchmarks/apply_scale.py [--sizes 1000,5000,20000] [--parallelism 4]

It measures this checkout's code (its root goes first on ``sys.path``), whichever copy of
skystate is installed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from skystate.reconcile import executor  # noqa: E402
from skystate.reconcile.plan import Action, ActionType, Plan
from skystate.reconcile.store import Store


def make_plan(n: int, version: int) -> Plan:
    actions: list[Action] = []
    for i in range(n // 2):
        cluster = Action(type=ActionType.CREATE, kind="Cluster", address=f"Cluster/c{i}",
                         name=f"c{i}", cluster=f"c{i}")
        actions.append(cluster)
        actions.append(Action(type=ActionType.SUBMIT_JOB, kind="Job",
                              address=f"Job/c{i}/j{i}", name=f"j{i}", cluster=f"c{i}",
                              depends_on=[cluster.id]))
    return Plan(owner="bench", state_version=version, actions=actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--parallelism", type=int, default=4)
    args = parser.parse_args()
    executor.run_action = lambda ctx, action: "ok"  # type: ignore[assignment]
    print(f"{'actions':>8} {'wall s':>8} {'CPU s':>8} {'CPU us/action':>14}"
          f"   (load {os.getloadavg()[0]:.1f}; wall time includes waiting for the CPUs)")
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as home:
            os.environ["SKYSTATE_HOME"] = home
            store = Store()
            plan = make_plan(n, store.version)
            start, cpu = time.perf_counter(), time.process_time()
            result = executor.apply_plan(plan, store, parallelism=args.parallelism)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            assert len(result.outcomes) == n and all(o.status == "succeeded"
                                                     for o in result.outcomes)
            print(f"{n:>8} {seconds:>8.2f} {cpu:>8.2f} {cpu / n * 1e6:>14.0f}")


if __name__ == "__main__":
    main()
