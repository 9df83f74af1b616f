"""The services controller's pure rules: replica transitions, rollout steps, autoscaling
with hysteresis, rollback, the three-way record merge and the local port rewrite."""

from __future__ import annotations

from typing import Any

import pytest

from skystate.serve import autoscale
from skystate.serve.decide import Act, Evidence, View, decide, transition
from skystate.serve.handlers import local_run, merge_replicas
from skystate.serve.policy import Policy, Probe, Scaling, policy_of
from skystate.serve.rollout import Replica, ready_ids, rollout
from skystate.serve.status import ReplicaStatus as R
from skystate.serve.status import ServiceComponent, ServiceStatus, UpdateMode

POLICY = Policy(probe=Probe(initial_delay=10.0), scaling=Scaling(2, 2))


def _replica(rid: int, status: R, version: int = 1, **extra: Any) -> dict[str, Any]:
    return {"replica_id": rid, "version": version, "status": status.value,
            "cluster": f"svc-{rid}", "url": f"http://127.0.0.1:{9000 + rid}",
            "launched_at": 0.0, "started_at": 0.0, "first_ready_at": None,
            "probe_failures": 0, **extra}


def test_probe_evidence_moves_replicas_and_unknown_changes_nothing() -> None:
    starting = _replica(1, R.STARTING)
    ready, why = transition(starting, Evidence(probe_ok=True), POLICY, now=1.0)
    assert ready["status"] == "READY" and ready["first_ready_at"] == 1.0 and why
    failing, why = transition(ready, Evidence(probe_ok=False, detail="refused"), POLICY, 2.0)
    assert failing["status"] == "NOT_READY" and "refused" in str(why)
    for n in range(2):
        failing, _ = transition(failing, Evidence(probe_ok=False), POLICY, 3.0 + n)
    assert failing["status"] == "FAILED_PROBING"
    assert transition(ready, Evidence(), POLICY, 5.0) == (ready, None)  # not probed
    assert transition(starting, Evidence(False), POLICY, 5.0)[0]["status"] == "STARTING"
    late, _ = transition(starting, Evidence(False), POLICY, 11.0)
    assert late["status"] == "FAILED_INITIAL_DELAY"
    assert transition(ready, Evidence(False, gone=True), POLICY, 2.0)[0]["status"] == \
        "PREEMPTED"
    assert transition(ready, Evidence(False, exited=True), POLICY, 2.0)[0]["status"] == \
        "FAILED"


def _views(*items: tuple[int, int, R]) -> list[Replica]:
    return [Replica(rid, version, status) for rid, version, status in items]


def test_steady_state_launches_to_the_count_and_drains_not_ready_first() -> None:
    assert rollout(_views((1, 1, R.READY)), 1, 3, UpdateMode.ROLLING, 1).launch == 2
    plan = rollout(_views((1, 1, R.READY), (2, 1, R.STARTING), (3, 1, R.READY)), 1, 1,
                   UpdateMode.ROLLING, 1)
    assert plan.drain == (2, 3) and plan.launch == 0


def test_rolling_surges_one_waits_then_drains_one_never_below_the_count() -> None:
    old = [(1, 1, R.READY), (2, 1, R.READY)]
    plan = rollout(_views(*old), 2, 2, UpdateMode.ROLLING, 1)
    assert plan.launch == 1 and not plan.drain
    plan = rollout(_views(*old, (3, 2, R.STARTING)), 2, 2, UpdateMode.ROLLING, 1)
    assert plan.launch == 0 and not plan.drain  # wait for the surge to be ready
    plan = rollout(_views(*old, (3, 2, R.READY)), 2, 2, UpdateMode.ROLLING, 1)
    assert plan.drain == (1,) and plan.launch == 0
    plan = rollout(_views((2, 1, R.READY), (3, 2, R.READY)), 2, 2, UpdateMode.ROLLING, 1)
    assert plan.launch == 1 and not plan.drain  # next surge
    plan = rollout(_views((2, 1, R.READY), (3, 2, R.READY), (4, 2, R.READY)), 2, 2,
                   UpdateMode.ROLLING, 1)
    assert plan.drain == (2,)
    assert rollout(_views((3, 2, R.READY), (4, 2, R.READY)), 2, 2, UpdateMode.ROLLING,
                   1).serving_version == 2


def test_blue_green_brings_the_whole_set_flips_once_then_drains_old() -> None:
    old = [(1, 1, R.READY), (2, 1, R.READY)]
    plan = rollout(_views(*old), 2, 2, UpdateMode.BLUE_GREEN, 1)
    assert plan.launch == 2 and plan.serving_version == 1
    views = _views(*old, (3, 2, R.READY), (4, 2, R.STARTING))
    plan = rollout(views, 2, 2, UpdateMode.BLUE_GREEN, 1)
    assert plan.serving_version == 1 and not plan.drain
    assert ready_ids(views, UpdateMode.BLUE_GREEN, 1) == [1, 2]  # old set only
    views = _views(*old, (3, 2, R.READY), (4, 2, R.READY))
    plan = rollout(views, 2, 2, UpdateMode.BLUE_GREEN, 1)
    assert plan.serving_version == 2 and plan.drain == (1, 2)
    assert ready_ids(views, UpdateMode.BLUE_GREEN, 2) == [3, 4]
    assert ready_ids(views, UpdateMode.ROLLING, None) == [1, 2, 3, 4]


def test_autoscaler_waits_the_delays_and_unknown_load_keeps_the_target() -> None:
    scaling = Scaling(1, 4, target_qps=10.0, upscale_delay=5.0, downscale_delay=20.0)
    first = autoscale.target(scaling, 35.0, 1, None, None, now=100.0)
    assert first.target == 1 and first.upscale_since == 100.0
    assert autoscale.target(scaling, 35.0, 1, 100.0, None, now=104.0).target == 1
    assert autoscale.target(scaling, 35.0, 1, 100.0, None, now=105.0).target == 4
    assert autoscale.target(scaling, 0.0, 4, None, None, now=200.0).downscale_since == 200.0
    assert autoscale.target(scaling, 0.0, 4, None, 200.0, now=219.0).target == 4
    assert autoscale.target(scaling, 0.0, 4, None, 200.0, now=220.0).target == 1
    assert autoscale.target(scaling, None, 3, 1.0, None, now=999.0).target == 3
    # a wish that goes away resets the delay
    assert autoscale.target(scaling, 15.0, 2, 100.0, None, now=101.0).upscale_since is None
    assert autoscale.qps([[98, 10], [99, 30], [100, 99]], now=100.5, window=2) == 20.0
    assert autoscale.qps(None, 1.0, 2) is None


def _service(replicas: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": "svc", "service_id": 1, "tasks": {"1": {}, "2": {}}, "version": 2,
            "update_mode": "rolling", "stable_version": 1, "failed_versions": [],
            "serving_version": 1, "replicas": replicas, "next_replica_id": 9,
            "target_replicas": 2, "generation": 3, "ready_ids": [1, 2], "lb_port": 1,
            "status": "READY", **extra}


def test_a_version_that_never_gets_ready_is_rolled_back_and_drained() -> None:
    replicas = [_replica(1, R.READY, first_ready_at=1.0), _replica(2, R.READY,
                                                                    first_ready_at=1.0),
                _replica(3, R.FAILED, 2), _replica(4, R.STARTING, 2)]
    view = View(_service(replicas), {1: POLICY, 2: POLICY},
                {4: Evidence(False, exited=True), 1: Evidence(True), 2: Evidence(True)},
                lb_running=True)
    step = decide(view, now=50.0)
    mark = step.actions[0]
    assert mark.type is Act.MARK and mark.fields["failed_versions"] == [2]
    assert "rolled back to version 1" in mark.fields["reason"]
    assert mark.fields["status"] == ServiceStatus.READY.value
    assert not any(a.type is Act.LAUNCH for a in step.actions)
    # the next step: nothing of version 2 is launched again; v1 stays ready
    again = decide(View(_service(mark.fields["replicas"], failed_versions=[2]),
                        {1: POLICY, 2: POLICY}, {1: Evidence(True), 2: Evidence(True)},
                        lb_running=True), now=51.0)
    fields = again.actions[0].fields
    assert [r["version"] for r in fields["replicas"]
            if not R(r["status"]).is_terminal()] == [1, 1]


def test_down_drains_everything_then_stops_the_lb_and_removes() -> None:
    view = View(_service([_replica(1, R.READY)], down_requested_at=1.0), {1: POLICY,
                                                                          2: POLICY},
                lb_running=True)
    step = decide(view, now=2.0)
    kinds = [a.type for a in step.actions]
    assert kinds[:3] == [Act.MARK, Act.READY_SET, Act.TEARDOWN]
    done = decide(View(_service([], down_requested_at=1.0), {1: POLICY}, lb_running=True),
                  now=3.0)
    assert [a.type for a in done.actions] == [Act.MARK, Act.STOP_LB, Act.REMOVE]


def test_merge_keeps_a_launch_that_finished_during_the_step() -> None:
    before = [_replica(1, R.PROVISIONING), _replica(2, R.READY)]
    stored = [dict(before[0], status="STARTING", url="http://x"), before[1]]
    after = [before[0], dict(before[1], status="NOT_READY"), _replica(3, R.PENDING)]
    merged = merge_replicas(stored, before, after)
    assert [r["status"] for r in merged] == ["STARTING", "NOT_READY", "PENDING"]
    assert merged[0]["url"] == "http://x"
    assert [r["replica_id"] for r in merge_replicas(stored, before, after[1:])] == [2, 3]


def test_local_replicas_get_their_port_in_place_of_the_declared_one() -> None:
    assert local_run("python -m http.server 8080", 8080, 41000) == \
        "python -m http.server 41000"
    assert local_run("serve --port=8080 --other 18080 v8080.1", 8080, 5) == \
        "serve --port=5 --other 18080 v8080.1"
    assert local_run("x", None, 5) == "x"


def test_policy_reads_the_service_section_with_skypilot_defaults() -> None:
    policy = policy_of({"service": {"readiness_probe": "/health", "replicas": 3},
                        "resources": {"ports": 8080}})
    assert policy.probe.path == "/health" and policy.scaling.min_replicas == 3
    assert policy.port == 8080 and policy.load_balancing == "least_load"
    with pytest.raises(ValueError, match="target_qps_per_replica"):
        policy_of({"service": {"replica_policy": {"min_replicas": 1, "max_replicas": 3}}})
    with pytest.raises(ValueError, match="service section"):
        policy_of({"run": "x"})
    assert ServiceComponent.of("load_balancer") is ServiceComponent.LOAD_BALANCER
    assert ServiceComponent.of("REPLICA") is ServiceComponent.REPLICA
    assert UpdateMode.of("blue-green") is UpdateMode.BLUE_GREEN


def test_terminate_request_drains_the_replica_and_a_new_one_replaces_it() -> None:
    replicas = [_replica(1, R.READY, first_ready_at=1.0), _replica(2, R.READY,
                                                                    first_ready_at=1.0)]
    view = View(_service(replicas, tasks={"1": {}}, version=1, terminate_requested=[2]),
                {1: POLICY}, {1: Evidence(True), 2: Evidence(True)}, lb_running=True)
    step = decide(view, now=10.0)
    mark = step.actions[0]
    statuses = {r["replica_id"]: r["status"] for r in mark.fields["replicas"]}
    assert statuses == {1: "READY", 2: "SHUTTING_DOWN", 9: "PENDING"}
    assert mark.fields["_terminate_done"] == [2]
    ready = next(a for a in step.actions if a.type is Act.READY_SET)
    assert ready.fields["ids"] == [1]  # out of the ready set before it is torn down
    assert any(a.type is Act.LAUNCH and a.fields["replica_id"] == 9 for a in step.actions)
    assert not any(a.type is Act.TEARDOWN for a in step.actions)  # drains first
    later = decide(View(_service(mark.fields["replicas"], tasks={"1": {}}, version=1),
                        {1: POLICY}, {1: Evidence(True)}, lb_running=True,
                        in_flight=frozenset({9})), now=11.0)
    assert any(a.type is Act.TEARDOWN and a.fields["replica_id"] == 2 for a in later.actions)


def test_replacements_back_off_after_the_first_failure() -> None:
    from skystate.serve.decide import backoff

    assert backoff(1, 1.0) == 0.0 and backoff(2, 1.0) == 1.0 and backoff(3, 1.0) == 2.0
    assert backoff(50, 1.0) == 20.0
    replicas = [_replica(1, R.READY, first_ready_at=1.0), _replica(2, R.READY,
                                                                    first_ready_at=1.0)]
    view = View(_service(replicas, tasks={"1": {}}, version=1, launch_failures=2),
                {1: POLICY}, {1: Evidence(True), 2: Evidence(False, exited=True)},
                lb_running=True, backoff_base=4.0)
    mark = decide(view, now=100.0).actions[0]
    assert mark.fields["launch_failures"] == 3 and mark.fields["next_launch_at"] == 108.0
    assert not any(r["status"] == "PENDING" for r in mark.fields["replicas"])
