"""Under ``watch``: save an edited YAML → the apply starts. p50/p95 over N saves.

The real loop (watchdog observer, debounce, plan of the whole directory) runs in a
thread of this process and files each apply as a request to the real API server, as
``skystate watch`` does; the figure is save → the server marks the request RUNNING.
Saves alternate between writing the file in place and an editor's
temp-file-then-rename. Each save changes a cluster's autostop, so each one needs an
apply; the next save waits until that apply has finished.

    python benchmarks/watch_latency.py [--saves 20] [--clusters 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path


def _cluster_yaml(name: str, idle: int) -> str:
    return (f"kind: Cluster\nname: {name}\nresources: {{cpus: 1}}\n"
            f"autostop: {{idle_minutes: {idle}}}\n")


def _save(path: Path, text: str, rename: bool) -> None:
    if rename:
        temp = path.with_name(f".{path.name}.swp")
        temp.write_text(text)
        os.replace(temp, path)
    else:
        path.write_text(text)


def measure(saves: int, clusters: int, root: Path) -> list[float]:
    os.environ["SKYSTATE_HOME"] = str(root / "home")
    from skystate.reconcile import watch as watching
    from skystate.server.watching import plan_by_request

    state = root / "state"
    state.mkdir()
    (state / "skystate.yaml").write_text("kind: Project\nname: bench\n")
    for i in range(clusters):
        (state / f"c{i}.yaml").write_text(_cluster_yaml(f"c{i}", 10))
    started: list[float] = []
    finished = threading.Event()

    def timed_apply(state_dir: Path, targets: list[str],
                    lock_timeout: float) -> list[watching.AppliedAction]:
        import skystate as sky

        try:
            request_id = sky.apply(state_dir, targets=targets, lock_timeout=lock_timeout)
            result = sky.get(request_id)
            [row] = sky.api_status([request_id], all_status=True)
            started.append(float(row["started_at"]))
            return [watching.AppliedAction(o["address"], o["type"], o["status"], o["message"])
                    for o in result["outcomes"]]
        finally:
            finished.set()

    stop = threading.Event()
    loop = threading.Thread(target=watching.watch, args=(state,), kwargs=dict(
        options=watching.WatchOptions(interval=3600), apply_fn=timed_apply,
        plan_fn=plan_by_request, out=lambda line: None, stop=stop))
    loop.start()
    if not finished.wait(120):
        raise SystemExit("the first apply (creating the clusters) did not finish")
    latencies = []
    try:
        for n in range(saves):
            time.sleep(0.3)  # let the previous pass settle
            finished.clear()
            before = len(started)
            saved_at = time.time()
            _save(state / "c0.yaml", _cluster_yaml("c0", 11 + n), rename=n % 2 == 1)
            if not finished.wait(30):
                raise SystemExit(f"save {n}: no apply within 30 s")
            latencies.append(started[before] - saved_at)
    finally:
        stop.set()
        loop.join()
        import skystate as sky

        for i in range(clusters):
            sky.get(sky.down(f"c{i}"))
        sky.api_stop()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--clusters", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="skystate-watch-bench-") as tmp:
        latencies = measure(args.saves, args.clusters, Path(tmp))
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    print(f"watch: save -> apply started, {len(ms)} saves, {args.clusters} clusters: "
          f"p50 {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms, "
          f"min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms")


if __name__ == "__main__":
    main()
