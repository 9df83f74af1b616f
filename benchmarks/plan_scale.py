"""Benchmark: validate+plan time versus the number of resources in a state directory.

For each N, half ``Cluster`` and half ``Job`` documents are written as a few multi-document
YAML files; ``plan_state_dir`` is timed (best of 3) against an empty state (all-new) and a
state already holding every resource (no-change, written directly with the store).

``--cli`` also times the command end to end: ``python -m skystate.cli plan DIR`` in a cold
process, its plan text read from a pipe, for the largest N (median of ``--repeat``; wall
and CPU seconds, the load average alongside, since the machine may be shared).

    python benchmarks/plan_scale.py [--sizes 100,1000,10000] [--repeat 3] [--profile] [--cli]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skystate.providers.optimizer import rank_offers
from skystate.providers.registry import Providers
from skystate.reconcile.desired_views import cluster_view, job_view
from skystate.reconcile.engine import plan_state_dir
from skystate.reconcile.store import Store
from skystate.spec.loader import load_state_dir

FILES = 4  # multi-document YAML files per state directory


def write_state_dir(root: Path, n: int) -> None:
    """``n`` resources: ``n // 2`` clusters ``c{i}`` and as many jobs ``j{i}`` on them."""
    root.mkdir(parents=True)
    (root / "skystate.yaml").write_text("kind: Project\nname: bench\n")
    half = n // 2
    chunks: list[list[str]] = [[] for _ in range(FILES)]
    for i in range(half):
        chunks[i % FILES].append(
            f"kind: Cluster\nname: c{i}\nresources: {{infra: local, cpus: 1}}\n"
        )
        chunks[i % FILES].append(f"kind: Job\nname: j{i}\ncluster: c{i}\nrun: echo {i}\n")
    for k, docs in enumerate(chunks):
        if docs:
            (root / f"part{k}.yaml").write_text("---\n".join(docs))


def fill_state(state_dir: Path) -> None:
    """Record every desired resource as already applied (nothing is provisioned)."""
    desired = load_state_dir(state_dir)
    owner = desired.owner
    providers = Providers(desired.project.providers.model_dump(mode="json"))
    store = Store()
    with store.transaction():
        for cluster in desired.clusters.values():
            offers = rank_offers(cluster.resources, cluster.num_nodes, providers)
            if not offers:
                sys.exit(f"FAIL: no offer for cluster {cluster.name}")
            store.put_cluster({**cluster_view(cluster, owner), "status": "UP",
                               "provider": "local", "offer": offers[0].to_dict()})
        for i, job in enumerate(desired.jobs.values()):
            store.put_job({**job_view(job, owner), "status": "SUCCEEDED", "job_id": i})


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def use_home(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.environ["SKYSTATE_HOME"] = str(path)


def run_size(tmp: Path, n: int, repeat: int, profile: bool) -> dict[str, float]:
    state_dir = tmp / f"state{n}"
    write_state_dir(state_dir, n)
    load_s, desired = best_of(repeat, lambda: load_state_dir(state_dir))
    assert len(desired.clusters) + len(desired.jobs) == n, "loaded resource count"

    use_home(tmp / f"home-new{n}")
    new_s, plan = best_of(repeat, lambda: plan_state_dir(state_dir))
    changes = len(plan.changes)
    if plan.errors or changes != n:
        sys.exit(f"FAIL all-new N={n}: {changes} changes (want {n}), errors={plan.errors}")

    use_home(tmp / f"home-same{n}")
    fill_state(state_dir)
    same_s, plan = best_of(repeat, lambda: plan_state_dir(state_dir))
    if plan.errors or plan.has_changes:
        sys.exit(f"FAIL no-change N={n}: {len(plan.changes)} changes, errors={plan.errors}, "
                 f"first={[a.reason for a in plan.changes[:3]]}")
    if profile:
        for label, home in (("all-new", "home-new"), ("no-change", "home-same")):
            use_home(tmp / f"{home}{n}")
            prof = cProfile.Profile()
            prof.runcall(plan_state_dir, state_dir)
            print(f"\n--- cProfile N={n} {label} (top by cumulative, then tottime) ---")
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    return {"load": load_s, "new": new_s, "same": same_s}


def cli_plan(state_dir: Path, home: Path) -> tuple[float, float, str]:
    """(wall s, CPU s, stdout) of one cold ``skystate plan`` with its text on a pipe.

    Bytecode is cached as after ``pip install`` (in a private PYTHONPYCACHEPREFIX, even if
    PYTHONDONTWRITEBYTECODE is set here), so a cold process does not compile sources.
    """
    env = {**os.environ, "SKYSTATE_HOME": str(home),
           "PYTHONPYCACHEPREFIX": str(state_dir.parent / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "skystate.cli", "plan", str(state_dir)],
                          env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0 or "Plan:" not in proc.stdout and "No changes" not in proc.stdout:
        sys.exit(f"FAIL: skystate plan exited {proc.returncode}: {proc.stderr[-2000:]}")
    return wall, cpu, proc.stdout


def run_cli(tmp: Path, n: int, repeat: int) -> dict[str, tuple[float, float, int]]:
    """Median wall/CPU of the CLI for all-new and no-change, and the plan text's lines."""
    state_dir = tmp / f"state{n}"
    found = {}
    cli_plan(state_dir, tmp / f"home-new{n}")  # warm-up: fills the bytecode cache
    for label, home in (("all-new", f"home-new{n}"), ("no-change", f"home-same{n}")):
        runs = [cli_plan(state_dir, tmp / home) for _ in range(repeat)]
        found[label] = (statistics.median(r[0] for r in runs),
                        statistics.median(r[1] for r in runs), len(runs[0][2].splitlines()))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000",
                        help="comma-separated resource counts (default: 100,1000,10000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is kept)")
    parser.add_argument("--profile", action="store_true", help="cProfile the largest size")
    parser.add_argument("--cli", action="store_true",
                        help="also time `skystate plan` end to end (cold process) at the "
                             "largest size")
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]

    results: dict[int, dict[str, float]] = {}
    cli: dict[str, tuple[float, float, int]] = {}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="skystate-bench-") as tmp:
        for n in sizes:
            results[n] = run_size(Path(tmp), n, args.repeat, args.profile and n == max(sizes))
        if args.cli:
            cli = run_cli(Path(tmp), max(sizes), args.repeat)
        load.append(os.getloadavg()[0])

    print(f"\nplan_state_dir scale (best of {args.repeat}; load = load_state_dir alone)")
    print(f"{'N':>7} {'load s':>8} {'all-new s':>10} {'no-change s':>12} "
          f"{'new µs/res':>11} {'same µs/res':>12} {'load %':>7}")
    for n, r in results.items():
        print(f"{n:>7} {r['load']:>8.3f} {r['new']:>10.3f} {r['same']:>12.3f} "
              f"{r['new'] / n * 1e6:>11.1f} {r['same'] / n * 1e6:>12.1f} "
              f"{100 * r['load'] / max(r['new'], r['same']):>6.0f}%")
    if 1000 in results and 10000 in results:
        small, big = results[1000], results[10000]
        print("10k/1k ratio (10.0 = linear): " + ", ".join(
            f"{k} {big[k] / small[k]:.1f}" for k in ("load", "new", "same")))
    if 10000 in results:
        worst = max(results[10000]["new"], results[10000]["same"])
        verdict = "OK" if worst <= 2.0 else "SLOWER THAN TARGET"
        print(f"target 10,000 resources <= 2 s: worst {worst:.2f} s -> {verdict}")
    for label, (wall, cpu, lines) in cli.items():
        verdict = "OK" if wall <= 1.5 else "SLOWER THAN 1.5 s"
        print(f"CLI `skystate plan` N={max(sizes)} {label}, cold process, text on a pipe: "
              f"{wall:.2f} s wall, {cpu:.2f} s CPU (median of {args.repeat}), {lines} lines "
              f"of plan text -> {verdict}")
    print(f"load average {min(load):.1f}-{max(load):.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
