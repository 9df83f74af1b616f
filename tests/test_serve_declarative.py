"""``kind: Service`` applied: the executor's serve-up / serve-update / serve-down handlers."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import httpx
import pytest
from helpers import deadline, run_cli

from skystate.reconcile.handlers import _handler_of_layer_above
from skystate.reconcile.plan import ActionType

PROJECT = "kind: Project\nname: webteam\n"
SERVICE = """kind: Service
name: web
resources: {{infra: local, ports: 8080}}
service:
  readiness_probe: {{path: /, initial_delay_seconds: 120}}
  replicas: 1
update_mode: {mode}
run: {run}
"""


def test_serve_actions_are_handled_by_the_serve_layer():
    from skystate.serve import declarative

    assert _handler_of_layer_above(ActionType.SERVE_UP) is declarative.serve_up
    assert _handler_of_layer_above(ActionType.SERVE_UPDATE) is declarative.serve_update
    assert _handler_of_layer_above(ActionType.SERVE_DOWN) is declarative.serve_down
    assert _handler_of_layer_above(ActionType.CREATE) is None


def test_the_served_task_reads_its_secrets_from_the_state_directory(tmp_path: Path):
    from skystate.reconcile.engine import load_desired
    from skystate.reconcile.planner import make_plan
    from skystate.serve.declarative import task_config

    (tmp_path / "skystate.yaml").write_text(PROJECT)
    (tmp_path / "web.yaml").write_text(
        SERVICE.format(mode="rolling", run="python3 -m http.server 8080")
        + "secrets: {TOKEN: s3cret}\n")
    from skystate.providers.base import Offer
    from skystate.reconcile.actual import ActualState

    offer = Offer("local", None, None, "local", {}, 1, 1, False, 0.0)
    plan = make_plan(load_desired(tmp_path), ActualState(), rank_offers=lambda r, n: [offer])
    (action,) = plan.actions
    assert "s3cret" not in plan.to_json()
    assert task_config(action.after)["secrets"] == {"TOKEN": "s3cret"}
    (tmp_path / "web.yaml").write_text(
        SERVICE.format(mode="rolling", run="python3 -m http.server 8080"))
    with pytest.raises(Exception, match="secrets TOKEN are no longer in"):
        task_config(action.after)


def _service_record(home: Path) -> dict | None:
    from skystate.reconcile.store import Store

    return Store(home / "state.json").service("web")


def _get(port: int) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=5.0).status_code
    except httpx.HTTPError:
        return None


def _wait(predicate, timeout: float, what: str) -> None:
    until = deadline(timeout)
    while not predicate():
        assert time.monotonic() < until, f"timed out waiting for {what}"
        time.sleep(0.3)


def _serve_operations_exist() -> bool:
    try:
        return importlib.util.find_spec("skystate.serve.operations") is not None
    except ImportError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _serve_operations_exist(),
                    reason="skipped while skystate.serve.operations (branch serve-ctl) is "
                           "not merged")
def test_apply_serves_updates_and_takes_down_a_service(home: Path, tmp_path: Path):
    """End to end through the CLI and the API server (whose controller runs the replicas).

    Skipped while ``skystate.serve.operations`` does not exist (before serve-ctl is merged).
    """
    state = tmp_path / "state"
    state.mkdir()
    (state / "skystate.yaml").write_text(PROJECT)
    web = state / "web.yaml"
    web.write_text(SERVICE.format(mode="rolling", run="python3 -m http.server 8080"))
    out = run_cli(home, "plan", str(state), "--detailed-exitcode", check=2).stdout
    assert "serve-up" in out and "per replica" in out
    run_cli(home, "apply", str(state), "--yes", timeout=240)
    record = _service_record(home)
    assert record is not None and record["owner"] == "webteam"
    assert record["declared"]["version"] == 1
    port = int(record["lb_port"])
    _wait(lambda: _get(port) == 200, 180, "the service to answer through its load balancer")
    run_cli(home, "plan", str(state), "--detailed-exitcode", check=0)  # nothing to do

    web.write_text(SERVICE.format(mode="blue_green",
                                  run="python3 -m http.server 8080 --bind 127.0.0.1"))
    out = run_cli(home, "apply", str(state), "--yes", timeout=240).stdout
    assert "serve-update" in out
    record = _service_record(home)
    assert record is not None and record["version"] == 2
    assert record["update_mode"] == "blue_green" and record["declared"]["version"] == 2
    run_cli(home, "plan", str(state), "--detailed-exitcode", check=0)

    web.unlink()
    out = run_cli(home, "apply", str(state), "--yes", timeout=600).stdout
    assert "serve-down" in out
    assert _service_record(home) is None
    _wait(lambda: _get(port) is None, 60, "the load balancer to stop")
