"""The service section's typed model: effective values, every error at once, file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from skystate.exceptions import SpecError
from skystate.spec.loader import load_state_dir
from skystate.spec.service import ServiceSpec
from skystate.spec.task import Task


def _task(tmp_path: Path, text: str) -> Task:
    path = tmp_path / "svc.yaml"
    path.write_text(text)
    return Task.from_yaml(path)


def test_defaults_are_resolved():
    spec = ServiceSpec.model_validate({"readiness_probe": "/health"})
    assert spec.probe_path == "/health" and spec.probe_method == "GET"
    assert (spec.initial_delay_seconds, spec.probe_timeout_seconds) == (1200, 15)
    assert (spec.min_replicas, spec.max_replicas, spec.autoscaling) == (1, 1, False)
    assert (spec.upscale_delay_seconds, spec.downscale_delay_seconds) == (300, 1200)
    assert spec.lb_policy == "least_load" and spec.load_balancing_policy is None
    assert spec.ports is None and spec.tls is None and not spec.use_ondemand_fallback


def test_autoscaled_policy_values():
    spec = ServiceSpec.model_validate({
        "readiness_probe": {"path": "/v1", "post_data": '{"a": 1}', "headers": {"X": "y"}},
        "replica_policy": {"min_replicas": 1, "max_replicas": 4, "target_qps_per_replica": 5,
                           "base_ondemand_fallback_replicas": 1},
        "load_balancing_policy": "round_robin", "ports": 8080,
    })
    assert spec.readiness_probe.post_data == {"a": 1} and spec.probe_method == "POST"
    assert (spec.min_replicas, spec.max_replicas, spec.autoscaling) == (1, 4, True)
    assert spec.target_qps_per_replica == 5 and spec.use_ondemand_fallback
    assert spec.lb_policy == "round_robin" and spec.ports == 8080


def test_every_error_at_once_with_its_line_and_a_suggestion(tmp_path: Path):
    with pytest.raises(SpecError) as info:
        _task(tmp_path, (
            "run: serve\n"                                      # 1
            "service:\n"                                        # 2
            "  readiness_probe:\n"                              # 3
            "    path: health\n"                                # 4
            "    initial_delay_seconds: '30'\n"                 # 5
            "  replica_policy:\n"                               # 6
            "    min_replicas: 1\n"                             # 7
            "    max_replicas: 3\n"                             # 8
            "    upscale_delay_secs: 10\n"                      # 9
            "  load_balancing_policy: round-robin\n"            # 10
            "  ports: 70000\n"                                  # 11
            "  tls: {keyfile: k.pem}\n"                         # 12
        ))
    text = str(info.value)
    path = tmp_path / "svc.yaml"
    for line, piece in [
        (4, "service.readiness_probe.path: the readiness probe path must start with '/'"),
        (5, "service.readiness_probe.initial_delay_seconds: must be a number, got '30'"),
        (6, "autoscaling needs target_qps_per_replica"),
        (9, "unknown field 'upscale_delay_secs'; did you mean 'upscale_delay_seconds'?"),
        (10, "did you mean 'round_robin'?"),
        (11, "between 1 and 65535"),
        (12, "service.tls.certfile: missing required field 'certfile'"),
    ]:
        assert any(ln.startswith(f"{path}:{line}: ") and piece in ln
                   for ln in text.splitlines()), (line, piece, text)
    assert len(text.splitlines()) == 7


def test_set_service_raises_spec_error_naming_each_field():
    with pytest.raises(SpecError) as info:
        Task().set_service({"replicas": 2, "replica_policy": {"min_replicas": 1},
                            "readiness_probe": "nope"})
    text = str(info.value)
    assert "service.replica_policy: give either replicas or replica_policy" in text
    assert "service.readiness_probe.path" in text
    assert isinstance(info.value, ValueError)
    task = Task().set_service({"replicas": 2})
    assert task.service is not None and task.service.min_replicas == 2


def test_round_trip_keeps_the_values(tmp_path: Path):
    task = _task(tmp_path, (
        "run: serve\nservice:\n  readiness_probe: /h\n"
        "  replica_policy: {min_replicas: 1, max_replicas: 3, target_qps_per_replica: 2}\n"
        "  ports: 8080\n  tls: {keyfile: k, certfile: c}\n"
    ))
    again = Task.from_yaml_config(task.to_yaml_config())
    assert again.service == task.service and again == task
    assert again.to_yaml_config()["service"]["readiness_probe"]["initial_delay_seconds"] == 1200


@pytest.mark.parametrize("service", [
    {"replicas": -1},  # SkyPilot's schema has no minimum for `replicas`
    {"replicas": 5000},  # above limits.MAX_REPLICAS
    {"replica_policy": {"min_replicas": 1, "max_replicas": 5000, "target_qps_per_replica": 1}},
])
def test_deliberately_stricter_than_skypilot(service: dict):
    with pytest.raises(SpecError):
        Task().set_service(service)


def test_service_document_update_mode_and_errors(tmp_path: Path):
    (tmp_path / "svc.yaml").write_text(
        "kind: Service\nname: api\nrun: serve\nupdate_mode: blue_green\n"
        "service:\n  replicas: 2\n"
    )
    state = load_state_dir(tmp_path)
    (svc,) = state.services.values()
    assert svc.update_mode == "blue_green" and svc.service is not None
    assert svc.service.min_replicas == 2
    (tmp_path / "svc.yaml").write_text(
        "kind: Service\nname: api\nrun: serve\nupdate_mode: canary\n"
        "service:\n  replicas: 2\n  replica_policy: {min_replicas: 1}\n"
    )
    with pytest.raises(SpecError) as info:
        load_state_dir(tmp_path)
    text = str(info.value)
    assert "svc.yaml:4: update_mode" in text
    assert "svc.yaml:7: service.replica_policy: give either replicas or replica_policy" in text
