"""Differential test of task YAML loading: SkyPilot 0.14.1 vs skystate (dev only, not in CI).

    python benchmarks/sky_diff.py [--venv /tmp/sky-venv] [--record] [--only NAME...]

Creates a venv with ``skypilot==0.14.1`` (once), loads every case under
``tests/data/sky_compat/`` (except ``service/``, written by its own owner) with SkyPilot's
``sky.Task.from_yaml`` in that venv (one subprocess for all cases) and with skystate's
``skystate.Task.from_yaml``, and compares the verdict (accepted or rejected) and the parsed
values in a normalised form both sides produce (``normalise_*`` below). ``--record``
writes each case's ``<case>.verdict.json`` from SkyPilot's answer; ``tests/test_sky_compat.py``
then checks skystate against those files without SkyPilot.

SkyPilot's verdict is ``Task.from_yaml`` followed by the checks of ``Task.validate`` that
need neither local files nor a cloud catalog (task name, mount paths ending in '/'), as
``sky launch`` runs them before anything starts. A case that needs SkyPilot's online
catalog (it raises a connection error) is reported and skipped.

A case's first line may be ``# expect: TEXT``: a rejected case's skystate error must then
contain TEXT (the field it names), recorded as ``error_contains``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "data" / "sky_compat"
SKIPPED_DIRS = ("service",)
DEFAULT_DISK_GB = 256  # SkyPilot treats this size as "not set"
# Cases where skystate knowingly gives the other verdict (docs/sky-compat.md says why).
DIVERGENCES = {
    "infra/bad-06": "infra: local is skystate's own local provider",
    "accelerators/bad-12": "SkyPilot takes '' as an accelerator named ''; skystate refuses it",
    "accelerators/bad-13": "SkyPilot takes ':8' as 8 of an accelerator named ''; skystate "
                           "refuses it",
    "multi/any-of-labels": "SkyPilot merges an option's labels into the block's own dict, so "
                           "every option sees them (aliasing); skystate merges per option",
    "envs/null-block": "SkyPilot crashes on `envs:` with no value (AttributeError); skystate "
                       "reads it as no envs",
}

# Run inside SkyPilot's venv: JSON list of paths on stdin, JSON list of results on stdout.
_SKY_RUNNER = r'''
import contextlib, json, sys
paths = json.load(sys.stdin)
out = []
real_stdout = sys.stdout
with contextlib.redirect_stdout(sys.stderr):
    import sky
    def norm_resources(r):
        d = {}
        def put(k, v):
            if v is not None and v != {} and v != []:
                d[k] = v
        put("cloud", str(r.cloud).lower() if r.cloud is not None else None)
        put("region", r.region)
        put("zone", r.zone)
        put("instance_type", r.instance_type)
        put("cpus", r.cpus)
        put("memory", r.memory)
        acc = r.accelerators
        put("accelerators", {k: (int(v) if float(v).is_integer() else float(v))
                             for k, v in acc.items()} if acc else None)
        if r.use_spot:
            d["use_spot"] = True
        if r.disk_size not in (None, DEFAULT_DISK_GB):
            d["disk_size"] = int(r.disk_size)
        put("ports", [str(p) for p in r.ports] if r.ports else None)
        put("disk_tier", r.disk_tier.value if r.disk_tier is not None else None)
        put("network_tier", r.network_tier.value if r.network_tier is not None else None)
        put("labels", dict(r.labels) if r.labels else None)
        jr = r.job_recovery
        if jr:
            jr = {k: v for k, v in dict(jr).items() if v is not None}
            if isinstance(jr.get("recover_on_exit_codes"), int):
                jr["recover_on_exit_codes"] = [jr["recover_on_exit_codes"]]
            put("job_recovery", jr or None)
        put("priority", r.priority)
        a = r.autostop_config
        if a is not None:
            d["autostop"] = {"enabled": bool(a.enabled),
                             **({"idle_minutes": a.idle_minutes, "down": bool(a.down)}
                                if a.enabled else {})}
        return d
    for path in paths:
        rec = {"case": path}
        try:
            t = sky.Task.from_yaml(path)
            t.validate_name()
            for dst, src in (t.file_mounts or {}).items():
                t._validate_mount_path(dst, dst)
                t._validate_path(src, dst)
            res = [norm_resources(r) for r in t.resources]
            ordered = isinstance(t.resources, list)
            if not ordered:  # a set: order and duplicates mean nothing
                res = [json.loads(x) for x in sorted({json.dumps(x, sort_keys=True)
                                                      for x in res})]
            rec.update(accepted=True, resources=res, ordered=ordered,
                       envs=dict(t.envs), num_nodes=t.num_nodes, name=t.name,
                       file_mounts=sorted({**(t.file_mounts or {}),
                                           **(t.storage_mounts or {})}),
                       secrets=sorted(t.secrets))
        except BaseException as e:  # noqa: BLE001 - SkyPilot raises many kinds
            rec.update(accepted=False, error=f"{type(e).__name__}: {e}"[:400])
            if "Connection" in type(e).__name__ or "NameResolution" in str(e):
                rec["needs_network"] = True
        out.append(rec)
real_stdout.write(json.dumps(out))
'''.replace("DEFAULT_DISK_GB", str(DEFAULT_DISK_GB))


def case_files(root: Path = CASES) -> list[Path]:
    """Every case YAML under ``root``, except the subfolders owned elsewhere."""
    return sorted(
        p for p in root.rglob("*.yaml")
        if not any(part in SKIPPED_DIRS for part in p.relative_to(root).parts[:-1])
    )


def expected_text(path: Path) -> str | None:
    first = path.read_text().split("\n", 1)[0]
    if first.startswith("# expect:"):
        return first[len("# expect:"):].strip() or None
    return None


# --- skystate side --------------------------------------------------------------------


def normalise_resources(r: Any) -> dict[str, Any]:
    """A skystate Resources in the normalised form of the SkyPilot runner above."""
    d: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if value not in (None, {}, []):
            d[key] = value

    put("cloud", r.cloud)
    put("region", r.region)
    put("zone", r.zone)
    put("instance_type", r.instance_type)
    put("cpus", r.cpus)
    put("memory", r.memory)
    put("accelerators", dict(r.accelerators) if r.accelerators else None)
    if r.use_spot:
        d["use_spot"] = True
    if r.disk_size not in (None, DEFAULT_DISK_GB):
        d["disk_size"] = int(r.disk_size)
    put("ports", list(r.ports) if r.ports else None)
    put("disk_tier", r.disk_tier)
    put("network_tier", r.network_tier)
    put("labels", dict(r.labels) if r.labels else None)
    if r.job_recovery is not None:
        jr = r.job_recovery.model_dump(exclude_none=True, exclude_defaults=True)
        put("job_recovery", jr or None)
    put("priority", r.priority)
    if r.autostop is not None:
        a = r.autostop
        d["autostop"] = {"enabled": a.enabled,
                         **({"idle_minutes": a.idle_minutes, "down": a.down}
                            if a.enabled else {})}
    return d


def skystate_result(path: Path) -> dict[str, Any]:
    """skystate's verdict and normalised values for one case."""
    import skystate

    try:
        task = skystate.Task.from_yaml(path)
    except ValueError as err:
        return {"accepted": False, "error": str(err)}
    res = [normalise_resources(r) for r in task.resources]
    ordered = isinstance(task.resources, list)
    if not ordered:  # a set: order and duplicates mean nothing
        res = [json.loads(x) for x in sorted({json.dumps(x, sort_keys=True) for x in res})]
    return {
        "accepted": True, "resources": res, "ordered": ordered, "envs": dict(task.envs),
        "num_nodes": task.num_nodes, "name": task.name,
        "file_mounts": sorted({**(task.file_mounts or {}), **task.storage_mounts}),
        "secrets": sorted(task.secrets),
    }


COMPARED = ("resources", "ordered", "envs", "num_nodes", "name", "file_mounts", "secrets")


def disagreement(verdict: dict[str, Any], ours: dict[str, Any]) -> str | None:
    """Why skystate's result differs from a recorded verdict, or None when they agree
    (or differ exactly as a recorded ``divergence`` says)."""
    if verdict.get("divergence"):
        if verdict["accepted"] != ours["accepted"] or (
            verdict["accepted"] and any(verdict[k] != ours.get(k) for k in COMPARED)
        ):
            return None
        return f"documented divergence no longer holds: {verdict['divergence']}"
    if verdict["accepted"] != ours["accepted"]:
        if verdict["accepted"]:
            return f"SkyPilot accepts, skystate rejects: {ours.get('error', '')[:300]}"
        return f"SkyPilot rejects ({verdict.get('sky_error', '')[:200]}), skystate accepts"
    if not verdict["accepted"]:
        want = verdict.get("error_contains")
        if want and want not in ours.get("error", ""):
            return f"error lacks {want!r}: {ours.get('error', '')[:300]}"
        return None
    for key in COMPARED:
        if key in verdict and verdict[key] != ours.get(key):
            return f"{key}: SkyPilot {verdict[key]!r} != skystate {ours.get(key)!r}"
    return None


# --- SkyPilot side --------------------------------------------------------------------


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import sky; assert sky.__version__ == '0.14.1'"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "skypilot==0.14.1"], check=True)
    return python


def sky_results(python: Path, paths: list[Path]) -> list[dict[str, Any]]:
    env = {**os.environ, "SKYPILOT_DISABLE_USAGE_COLLECTION": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [str(python), "-c", _SKY_RUNNER], input=json.dumps([str(p) for p in paths]),
        capture_output=True, text=True, env=env, cwd=str(CASES),
    )
    if proc.returncode != 0:
        raise SystemExit(f"SkyPilot runner failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def verdict_of(sky: dict[str, Any], path: Path) -> dict[str, Any]:
    if not sky["accepted"]:
        verdict: dict[str, Any] = {"accepted": False, "sky_error": sky["error"][:200]}
        want = expected_text(path)
        if want:
            verdict["error_contains"] = want
    else:
        verdict = {"accepted": True, **{k: sky[k] for k in COMPARED}}
    divergence = DIVERGENCES.get(path.relative_to(CASES).with_suffix("").as_posix())
    if divergence:
        verdict["divergence"] = divergence
    return verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--venv", default="/tmp/sky-venv", type=Path)
    parser.add_argument("--record", action="store_true", help="write <case>.verdict.json")
    parser.add_argument("--only", nargs="*", help="case names (stems) to run")
    args = parser.parse_args()
    paths = case_files()
    if args.only:
        paths = [p for p in paths if p.stem in args.only]
    python = ensure_venv(args.venv)
    agree = skipped = diverge = 0
    failures: list[str] = []
    for path, sky in zip(paths, sky_results(python, paths), strict=True):
        if sky.get("needs_network"):
            skipped += 1
            print(f"SKIP {path.relative_to(CASES)}: needs SkyPilot's online catalog")
            continue
        verdict = verdict_of(sky, path)
        if args.record:
            path.with_suffix(".verdict.json").write_text(
                json.dumps(verdict, indent=1, sort_keys=True) + "\n")
        why = disagreement(verdict, skystate_result(path))
        if why is None and verdict.get("divergence"):
            diverge += 1
        elif why is None:
            agree += 1
        else:
            failures.append(f"DIFF {path.relative_to(CASES)}: {why}")
    print("\n".join(failures))
    total = agree + diverge + len(failures)
    print(f"{total} cases compared ({skipped} skipped): {agree} agree "
          f"({100.0 * agree / max(total - diverge, 1):.1f}% of {total - diverge}), "
          f"{diverge} documented divergences, {len(failures)} differ")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
