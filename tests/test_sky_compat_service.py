"""skystate reads the ``service:`` section as SkyPilot 0.14.1 does (recorded verdicts).

Each ``tests/data/sky_compat/service/<case>.yaml`` has ``<case>.verdict.json``, recorded from
SkyPilot 0.14.1's ``sky.Task.from_yaml`` by ``benchmarks/sky_diff_service.py --record``:
whether it accepts the task, what its refusal names, and the service values it acts on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from skystate.exceptions import SpecError
from skystate.spec.service import ServiceSpec
from skystate.spec.task import Task

CASES = Path(__file__).parent / "data" / "sky_compat" / "service"
CASE_PATHS = sorted(CASES.glob("*.yaml"))


def sky_view(spec: ServiceSpec) -> dict[str, Any]:
    """skystate's values under the names the recorder gives SkyPilot's."""
    probe, tls = spec.readiness_probe, spec.tls
    return {
        "readiness_path": spec.probe_path,
        "initial_delay_seconds": spec.initial_delay_seconds,
        "readiness_timeout_seconds": spec.probe_timeout_seconds,
        "endpoint_probe_interval_seconds": spec.probe_interval_seconds,
        "post_data": probe.post_data,
        "readiness_headers": probe.headers,
        "min_replicas": spec.min_replicas,
        "max_replicas": spec.max_replicas,
        "num_overprovision": spec.num_overprovision,
        "target_qps_per_replica": spec.target_qps_per_replica,
        "upscale_delay_seconds": spec.upscale_delay_seconds,
        "downscale_delay_seconds": spec.downscale_delay_seconds,
        "base_ondemand_fallback_replicas": spec.base_ondemand_fallback_replicas,
        "dynamic_ondemand_fallback": spec.dynamic_ondemand_fallback,
        "use_ondemand_fallback": spec.use_ondemand_fallback,
        "spot_placer": spec.spot_placer,
        "load_balancing_policy": spec.lb_policy,
        "lb_stream_timeout_seconds": spec.lb_stream_timeout_seconds,
        "ports": spec.ports,
        "tls_keyfile": tls.keyfile if tls else None,
        "tls_certfile": tls.certfile if tls else None,
        "pool": spec.is_pool,
        "queue_length_threshold": spec.queue_length_threshold,
    }


def disagreement(path: Path) -> str | None:
    """None when skystate agrees with the verdict recorded next to ``path``; else why not."""
    verdict = json.loads(path.with_name(path.stem + ".verdict.json").read_text())
    try:
        task = Task.from_yaml(path)
    except SpecError as exc:
        if verdict["accepted"]:
            return f"SkyPilot accepts it, skystate refuses: {exc}"
        want = verdict.get("error_contains")
        if want and want not in str(exc):
            return f"skystate's error lacks {want!r}: {exc}"
        return None
    if not verdict["accepted"]:
        return f"SkyPilot refuses it ({verdict.get('sky_error')}), skystate accepts"
    want_service = verdict.get("service")
    if (task.service is None) != (want_service is None):
        return f"service parsed: skystate {task.service is not None}, SkyPilot {want_service}"
    if want_service is not None:
        assert task.service is not None
        got = sky_view(task.service)
        diff = {k: (got.get(k), v) for k, v in want_service.items() if got.get(k) != v}
        if diff:
            return f"values differ (skystate, SkyPilot): {diff}"
    return None


def test_there_are_cases_of_both_kinds():
    verdicts = [json.loads(p.with_name(p.stem + ".verdict.json").read_text())
                for p in CASE_PATHS]
    assert sum(v["accepted"] for v in verdicts) >= 20
    assert sum(not v["accepted"] for v in verdicts) >= 40


@pytest.mark.parametrize("path", CASE_PATHS, ids=lambda p: p.stem)
def test_skystate_agrees_with_skypilot(path: Path):
    assert disagreement(path) is None
