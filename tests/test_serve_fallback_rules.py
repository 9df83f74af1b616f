"""Pure rules of the services controller added for spot replicas and UNKNOWN looks: the
spot/on-demand split (SkyPilot's fallback rules), the decide step acting on it, the plan's
spot/on-demand text, and an UNKNOWN look never failing or replacing a replica."""

from __future__ import annotations

from typing import Any

import pytest

from skystate.serve.decide import Act, Evidence, View, decide, transition
from skystate.serve.fallback import Member, Mix, kinds, split
from skystate.serve.policy import Policy, Probe, Scaling, policy_of
from skystate.serve.status import ReplicaStatus as R

DYNAMIC = Mix(use_spot=True, base_ondemand=0, dynamic=True)


def _members(*items: tuple[int, bool, R]) -> list[Member]:
    return [Member(rid, spot, status) for rid, spot, status in items]


def test_base_ondemand_replicas_are_kept_and_the_rest_is_spot() -> None:
    mix = Mix(use_spot=True, base_ondemand=1)
    first = split([], target=3, count=3, mix=mix)
    assert (first.launch_spot, first.launch_ondemand) == (2, 1)
    assert first.launches == [False, True, True]
    steady = split(_members((1, False, R.READY), (2, True, R.READY), (3, True, R.READY)),
                   3, 3, mix)
    assert (steady.launch_spot, steady.launch_ondemand, steady.drain) == (0, 0, ())
    # a preempted spot replica (terminal, so no longer a member) is replaced by a spot one;
    # without dynamic fallback no extra on-demand one is launched meanwhile
    hole = split(_members((1, False, R.READY), (2, True, R.READY)), 3, 3, mix)
    assert (hole.launch_spot, hole.launch_ondemand) == (1, 0)
    # scaling down to 1 keeps the on-demand base and drains the spot ones, newest first
    down = split(_members((1, False, R.READY), (2, True, R.READY), (3, True, R.READY)),
                 1, 1, mix)
    assert down.drain == (2, 3) and down.launch_ondemand == 0


def test_dynamic_fallback_covers_spot_replicas_that_are_not_ready_then_drains() -> None:
    start = split([], 2, 2, DYNAMIC)  # nothing ready yet: on-demand covers both
    assert (start.launch_spot, start.launch_ondemand) == (2, 2)
    provisioning = _members((1, False, R.READY), (2, False, R.READY), (3, True, R.STARTING),
                            (4, True, R.READY))
    one_left = split(provisioning, 2, 2, DYNAMIC)  # one spot is ready: one on-demand goes
    assert one_left.drain == (2,) and not one_left.launch_ondemand
    ready = _members((1, False, R.READY), (3, True, R.READY), (4, True, R.READY))
    assert split(ready, 2, 2, DYNAMIC).drain == (1,)
    # a spot replica preempted: a spot replacement and an on-demand cover are launched
    preempted = split(_members((3, True, R.READY)), 2, 2, DYNAMIC)
    assert (preempted.launch_spot, preempted.launch_ondemand) == (1, 1)
    # the cover never exceeds the target (overprovisioned replicas are spot only)
    over = split([], target=1, count=2, mix=DYNAMIC)
    assert (over.launch_spot, over.launch_ondemand) == (2, 1)
    # not-ready on-demand replicas are drained before ready ones
    extra = split(_members((1, False, R.READY), (2, False, R.STARTING), (3, True, R.READY),
                           (4, True, R.STARTING)), 2, 2, DYNAMIC)
    assert extra.drain == (2,)


def test_an_update_launches_on_demand_up_to_the_base_then_spot() -> None:
    mix = Mix(use_spot=True, base_ondemand=2)
    assert kinds([], mix, 3) == [False, False, True]
    assert kinds(_members((5, False, R.READY)), mix, 2) == [False, True]
    assert kinds([], Mix(use_spot=False), 2) == [False, False]
    assert kinds([], DYNAMIC, 2) == [True, True]


def _replica(rid: int, status: R, is_spot: bool, **extra: Any) -> dict[str, Any]:
    return {"replica_id": rid, "version": 1, "status": status.value, "is_spot": is_spot,
            "cluster": f"svc-{rid}", "url": f"http://127.0.0.1:{9000 + rid}",
            "launched_at": 0.0, "started_at": 0.0, "first_ready_at": 1.0,
            "probe_failures": 0, **extra}


def _service(replicas: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": "svc", "service_id": 1, "tasks": {"1": {}}, "version": 1,
            "update_mode": "rolling", "stable_version": 1, "failed_versions": [],
            "serving_version": 1, "replicas": replicas, "next_replica_id": 9,
            "target_replicas": 2, "generation": 3, "ready_ids": [3, 4], "lb_port": 1,
            "status": "READY", **extra}


FALLBACK = Policy(probe=Probe(initial_delay=10.0), scaling=Scaling(2, 2), mix=DYNAMIC)


def test_decide_launches_an_on_demand_cover_for_a_preempted_spot_replica() -> None:
    replicas = [_replica(3, R.READY, True), _replica(4, R.READY, True)]
    view = View(_service(replicas), {1: FALLBACK},
                {3: Evidence(True), 4: Evidence(False, gone=True)}, lb_running=True)
    mark = decide(view, now=10.0).actions[0]
    new = {r["replica_id"]: r for r in mark.fields["replicas"]}
    assert new[4]["status"] == "PREEMPTED"
    assert new[9]["is_spot"] is False and new[10]["is_spot"] is True  # cover, replacement
    # once the spot replacement is READY the on-demand cover is drained
    later = [_replica(3, R.READY, True), _replica(9, R.READY, False),
             _replica(10, R.STARTING, True)]
    view = View(_service(later, next_replica_id=11), {1: FALLBACK},
                {3: Evidence(True), 9: Evidence(True), 10: Evidence(True)}, lb_running=True)
    mark = decide(view, now=20.0).actions[0]
    statuses = {r["replica_id"]: r["status"] for r in mark.fields["replicas"]}
    assert statuses == {3: "READY", 9: "SHUTTING_DOWN", 10: "READY"}


def test_policy_reads_the_mix_and_refuses_a_fallback_without_use_spot() -> None:
    service = {"readiness_probe": "/", "replica_policy": {
        "min_replicas": 2, "base_ondemand_fallback_replicas": 1,
        "dynamic_ondemand_fallback": True}}
    mix = policy_of({"resources": {"use_spot": True}, "service": service}).mix
    assert mix == Mix(use_spot=True, base_ondemand=1, dynamic=True) and mix.falls_back
    assert not policy_of({"service": {"readiness_probe": "/"}}).mix.falls_back
    with pytest.raises(ValueError, match="use_spot"):
        policy_of({"resources": {"cpus": 1}, "service": service})


def test_an_unknown_look_marks_unknown_never_fails_or_replaces() -> None:
    policy = Policy(probe=Probe(initial_delay=10.0), scaling=Scaling(2, 2))
    ready = _replica(1, R.READY, False)
    unknown, why = transition(ready, Evidence(False, unknown=True, detail="timeout"), policy,
                              5.0)
    assert unknown["status"] == "UNKNOWN" and unknown["unknown_since"] == 5.0 and why
    for n in range(10):  # however many looks fail, it stays UNKNOWN, never FAILED_*
        unknown, _ = transition(unknown, Evidence(False, unknown=True), policy, 6.0 + n)
    assert unknown["status"] == "UNKNOWN" and unknown["probe_failures"] == 0
    back, _ = transition(unknown, Evidence(True), policy, 30.0)
    assert back["status"] == "READY" and back["unknown_since"] is None
    answered, _ = transition(unknown, Evidence(False), policy, 30.0)  # RUNNING, probe fails
    assert answered["status"] == "NOT_READY"
    gone, _ = transition(unknown, Evidence(False, gone=True), policy, 30.0)
    assert gone["status"] == "PREEMPTED"
    replicas = [_replica(3, R.READY, False), unknown]
    view = View(_service(replicas, tasks={"1": {}}), {1: policy},
                {3: Evidence(True), 1: Evidence(False, unknown=True)}, lb_running=True,
                unknown_window=100.0)
    step = decide(view, now=50.0)
    assert not any(a.type in (Act.LAUNCH, Act.TEARDOWN) for a in step.actions)
    ready_set = next(a for a in step.actions if a.type is Act.READY_SET)
    assert ready_set.fields["ids"] == [3]  # out of the ready set meanwhile
    # past the window one replica is launched beside it; it is still not torn down
    late = decide(View(_service(replicas, tasks={"1": {}}), {1: policy},
                       {3: Evidence(True), 1: Evidence(False, unknown=True)},
                       lb_running=True, unknown_window=10.0), now=50.0)
    assert [a.fields["replica_id"] for a in late.actions if a.type is Act.LAUNCH] == [9]
    assert not any(a.type is Act.TEARDOWN for a in late.actions)


def test_the_plan_shows_the_spot_and_on_demand_split_and_its_cost(tmp_path: Any) -> None:
    from skystate.providers.base import Offer
    from skystate.reconcile.actual import ActualState
    from skystate.reconcile.engine import load_desired
    from skystate.reconcile.planner import make_plan
    from skystate.reconcile.render import service_offer_text

    (tmp_path / "skystate.yaml").write_text("kind: Project\nname: webteam\n")
    (tmp_path / "web.yaml").write_text(
        "kind: Service\nname: web\nresources: {infra: local, use_spot: true}\n"
        "service:\n  readiness_probe: /\n  replica_policy: {min_replicas: 2, max_replicas: 4,"
        " target_qps_per_replica: 5, base_ondemand_fallback_replicas: 1,"
        " dynamic_ondemand_fallback: true}\nrun: python3 -m http.server 8080\n")

    def offers(resources: Any, num_nodes: int) -> list[Offer]:
        spot = bool(resources.use_spot)
        return [Offer("local", None, None, "box", {}, 1, 1, spot, 0.5 if spot else 2.0)]

    plan = make_plan(load_desired(tmp_path), ActualState(), rank_offers=offers)
    (action,) = plan.actions
    assert action.after["split_at_min"] == [1, 1] and action.after["split_at_max"] == [3, 1]
    assert action.hourly_after == pytest.approx(2.5)
    text = service_offer_text(action)
    assert "spot $0.50/h" in text and "on-demand $2.00/h" in text
    assert "$2.50/h at 1 spot + 1 on-demand to $3.50/h at 3 spot + 1 on-demand" in text
    assert "covers spot replicas that are not ready" in text


def test_the_spot_placer_avoids_preempted_and_used_locations_cheapest_first() -> None:
    from skystate.providers.base import Offer
    from skystate.serve.spot_placer import after_transitions, place

    def offer(zone: str, price: float) -> Offer:
        return Offer("aws", "us-east-1", zone, "g5", {}, 4, 16, True, price)

    a, b, c = offer("a", 1.0), offer("b", 2.0), offer("c", 3.0)
    zone = lambda o: o.zone  # noqa: E731
    assert [zone(o) for o in place([a, b, c], [], [])] == ["a", "b", "c"]
    used_a = [("aws", "us-east-1", "a")]
    assert [zone(o) for o in place([a, b, c], [], used_a)] == ["b", "a", "c"]
    assert [zone(o) for o in place([a, b, c], used_a, [])] == ["b", "c", "a"]
    everywhere = [("aws", "us-east-1", z) for z in "abc"]  # all preempted: all active again
    assert [zone(o) for o in place([a, b, c], everywhere, [])] == ["a", "b", "c"]
    before = [{"replica_id": 1, "status": "READY", "is_spot": True,
               "location": ["aws", "us-east-1", "a"]}]
    after = [{**before[0], "status": "PREEMPTED"}]
    assert after_transitions([], before, after) == [["aws", "us-east-1", "a"]]
    back = [{"replica_id": 2, "status": "READY", "is_spot": True,
             "location": ["aws", "us-east-1", "a"]}]
    assert after_transitions([["aws", "us-east-1", "a"]], [{**back[0], "status": "STARTING"}],
                             back) == []
    on_demand = [{**after[0], "is_spot": False}]
    assert after_transitions([], before, on_demand) == []


def test_decide_records_where_a_spot_replica_was_preempted() -> None:
    replicas = [_replica(3, R.READY, True, location=["local", None, None]),
                _replica(4, R.READY, True)]
    view = View(_service(replicas), {1: FALLBACK},
                {3: Evidence(False, gone=True), 4: Evidence(True)}, lb_running=True)
    mark = decide(view, now=10.0).actions[0]
    assert mark.fields["preempted_locations"] == [["local", None, None]]


def test_the_replica_table_says_spot_or_on_demand() -> None:
    from skystate.cli_serve import replica_rows

    record = {"name": "svc", "replica_info": [
        {"replica_id": 1, "version": 1, "endpoint": None, "launched_at": None,
         "status": "READY", "is_spot": True},
        {"replica_id": 2, "version": 1, "endpoint": None, "launched_at": None,
         "status": "READY", "is_spot": False}]}
    assert [row[5] for row in replica_rows([record])] == ["spot", "on-demand"]
