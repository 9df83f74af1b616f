"""Benchmark: CLI start-up time and which heavy modules ``skystate --help`` imports.

Times ``skystate --help`` and ``skystate status`` (empty temporary ``SKYSTATE_HOME``) as
subprocesses (plus a bare ``python -c pass`` for reference), lists heavy modules imported by
``--help``, and shows the slowest imports (``-X importtime``) of ``import skystate.cli`` and
of a ``--help`` run.

    python benchmarks/cli_start.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HEAVY = ["boto3", "botocore", "google", "fabric", "paramiko", "fastapi", "uvicorn", "httpx",
         "deepdiff", "pydantic"]
TARGET_HELP_S = 0.3

PROBE = f"""
import sys
sys.argv = ['skystate', '--help']
import skystate.cli as c
try:
    c.main()
except SystemExit:
    pass
heavy = {HEAVY!r}
print('MODULES', ' '.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))
"""


def skystate_cmd() -> list[str]:
    exe = shutil.which("skystate")
    return [exe] if exe else [sys.executable, "-m", "skystate.cli"]


def time_runs(cmd: list[str], env: dict[str, str], runs: int) -> list[float]:
    times: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            sys.exit(f"FAIL: {' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return times


def heavy_modules(env: dict[str, str]) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES")), None)
    if line is None:
        sys.exit(f"FAIL: module probe printed nothing:\n{proc.stderr[-2000:]}")
    return line.split()[1:]


def import_profile(env: dict[str, str], code: str) -> list[tuple[int, int, str]]:
    """``-X importtime`` of ``code``: (cumulative µs, nesting depth, module) per import."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env,
                          capture_output=True, text=True)
    rows: list[tuple[int, int, str]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, raw = line[12:].split("|", 2)
        name = raw[1:]  # nesting is shown as two spaces per level after "| "
        rows.append((int(cumulative), (len(name) - len(name.lstrip())) // 2, name.strip()))
    return rows


def show_imports(title: str, rows: list[tuple[int, int, str]], top: int = 8) -> None:
    total = sum(us for us, depth, _ in rows if depth == 0) / 1e3
    print(f"\n-X importtime: {title}: {total:.0f} ms of imports (incl. site); slowest "
          "imports at depth <= 1:")
    for us, depth, name in sorted((r for r in rows if r[1] <= 1), reverse=True)[:top]:
        print(f"  {us / 1e3:>7.1f} ms  {'  ' * depth}{name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per command")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="skystate-cli-bench-") as home:
        env = {**os.environ, "SKYSTATE_HOME": home}
        base = skystate_cmd()
        rows = []
        for label, extra in (("skystate --help", ["--help"]), ("skystate status", ["status"])):
            times = time_runs(base + extra, env, args.runs)
            rows.append((label, min(times), statistics.median(times)))
        bare = time_runs([sys.executable, "-c", "pass"], env, args.runs)
        rows.append(("python -c pass", min(bare), statistics.median(bare)))
        heavy = heavy_modules(env)
        cli_imports = import_profile(env, "import skystate.cli")
        help_imports = import_profile(env, PROBE)

    print(f"\nCLI start-up ({args.runs} runs each, wall clock, {' '.join(base)})")
    print("(python -c pass = bare interpreter start, for reference)")
    print(f"{'command':<18} {'min ms':>8} {'median ms':>10}")
    for label, low, mid in rows:
        print(f"{label:<18} {low * 1e3:>8.0f} {mid * 1e3:>10.0f}")
    help_med = rows[0][2]
    verdict = "OK" if help_med <= TARGET_HELP_S else "SLOWER THAN TARGET"
    print(f"target --help <= {TARGET_HELP_S * 1e3:.0f} ms: median {help_med * 1e3:.0f} ms "
          f"-> {verdict}")
    print(f"\nheavy modules loaded by `skystate --help`: {', '.join(heavy) or 'none'}")
    roots = sorted({m.split('.')[0] for m in heavy})
    print(f"  of {', '.join(HEAVY)}: {', '.join(roots) or 'none'}")
    show_imports("import skystate.cli", cli_imports)
    show_imports("skystate --help (import + render)", help_imports)


if __name__ == "__main__":
    main()
