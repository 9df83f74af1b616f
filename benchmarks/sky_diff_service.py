"""Differential cases of the ``service:`` section: SkyPilot 0.14.1 vs skystate (dev only).

    python -m venv /tmp/skyvenv-spec && /tmp/skyvenv-spec/bin/pip install skypilot==0.14.1
    python benchmarks/sky_diff_service.py [--venv /tmp/skyvenv-spec] [--record]

Loads every ``tests/data/sky_compat/service/*.yaml`` with SkyPilot's ``sky.Task.from_yaml``
in that venv (one subprocess for all cases). ``--record`` writes ``<case>.verdict.json``:
``{"accepted": bool, "error_contains": str (rejected cases), "sky_error": str,
"service": {...} (accepted cases with a service)}``. ``service`` holds the values SkyPilot
acts on, with the defaults it applies later resolved by its own constants (an unset
``max_replicas`` means ``min_replicas``; unset autoscaler delays are
``AUTOSCALER_DEFAULT_*``). A case's first line ``# expect: TEXT`` names what a rejection
must mention; SkyPilot's own message must contain it too, or the case is not recorded
(a case without it records only the refusal: SkyPilot crashed without naming a field).
Without ``--record`` it prints where skystate disagrees with the recorded verdicts
(``tests/test_sky_compat_service.py`` checks the same in CI, without SkyPilot).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "data" / "sky_compat" / "service"

# Runs inside SkyPilot's venv: JSON list of paths on stdin, JSON list of results on stdout.
_SKY_RUNNER = r'''
import contextlib, json, sys
paths = json.load(sys.stdin)
out = []
with contextlib.redirect_stdout(sys.stderr):
    import sky
    from sky.serve import constants as C

    def view(s):
        tls = s.tls_credential
        return {
            "readiness_path": s.readiness_path,
            "initial_delay_seconds": s.initial_delay_seconds,
            "readiness_timeout_seconds": s.readiness_timeout_seconds,
            "endpoint_probe_interval_seconds": s.endpoint_probe_interval_seconds,
            "post_data": s.post_data,
            "readiness_headers": s.readiness_headers,
            "min_replicas": s.min_replicas,
            "max_replicas": s.max_replicas if s.max_replicas is not None else s.min_replicas,
            "num_overprovision": s.num_overprovision,
            "target_qps_per_replica": s.target_qps_per_replica,
            "upscale_delay_seconds": (s.upscale_delay_seconds
                if s.upscale_delay_seconds is not None
                else C.AUTOSCALER_DEFAULT_UPSCALE_DELAY_SECONDS),
            "downscale_delay_seconds": (s.downscale_delay_seconds
                if s.downscale_delay_seconds is not None
                else C.AUTOSCALER_DEFAULT_DOWNSCALE_DELAY_SECONDS),
            "base_ondemand_fallback_replicas": s.base_ondemand_fallback_replicas or 0,
            "dynamic_ondemand_fallback": bool(s.dynamic_ondemand_fallback),
            "use_ondemand_fallback": s.use_ondemand_fallback,
            "spot_placer": s.spot_placer,
            "load_balancing_policy": s.load_balancing_policy,
            "lb_stream_timeout_seconds": s.lb_stream_timeout_seconds,
            "ports": int(s.ports) if s.ports is not None else None,
            "tls_keyfile": tls.keyfile if tls is not None else None,
            "tls_certfile": tls.certfile if tls is not None else None,
            "pool": s.pool,
            "queue_length_threshold": s.queue_length_threshold,
        }

    for path in paths:
        rec = {"case": path}
        try:
            task = sky.Task.from_yaml(path)
            rec["accepted"] = True
            if task.service is not None:
                rec["service"] = view(task.service)
        except Exception as exc:  # every refusal, whatever its class
            rec["accepted"] = False
            rec["sky_error"] = f"{type(exc).__name__}: {exc}".strip()
        out.append(rec)
sys.stdout.write(json.dumps(out))
'''


def sky_verdicts(venv: Path, paths: list[Path]) -> list[dict]:
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", _SKY_RUNNER],
        input=json.dumps([str(p) for p in paths]), capture_output=True, text=True,
        check=True,
    )
    return json.loads(proc.stdout)


def expected_text(path: Path) -> str | None:
    first = path.read_text().splitlines()[0]
    return first.split(":", 1)[1].strip() if first.startswith("# expect:") else None


def record(venv: Path) -> int:
    paths = sorted(CASES.glob("*.yaml"))
    bad = 0
    for path, rec in zip(paths, sky_verdicts(venv, paths), strict=True):
        verdict: dict = {"accepted": rec["accepted"]}
        if not rec["accepted"]:
            want = expected_text(path)
            if want is not None and want not in rec["sky_error"]:
                print(f"{path.name}: SkyPilot's error lacks {want!r}: {rec['sky_error']}")
                bad += 1
                continue
            if want is not None:
                verdict["error_contains"] = want
            verdict["sky_error"] = rec["sky_error"]
        elif "service" in rec:
            verdict["service"] = rec["service"]
        out = path.with_name(path.name[: -len(".yaml")] + ".verdict.json")
        out.write_text(json.dumps(verdict, indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(paths) - bad} of {len(paths)} cases")
    return 1 if bad else 0


def compare() -> int:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    from test_sky_compat_service import CASE_PATHS, disagreement

    problems = [(p.name, d) for p in CASE_PATHS if (d := disagreement(p))]
    for name, text in problems:
        print(f"{name}: {text}")
    print(f"{len(CASE_PATHS) - len(problems)} of {len(CASE_PATHS)} cases agree")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path("/tmp/skyvenv-spec"))
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    return record(args.venv) if args.record else compare()


if __name__ == "__main__":
    sys.exit(main())
