"""Planning ``kind: Service``: pure, from plan data only (no provider, no controller)."""

from __future__ import annotations

from typing import Any

from skystate.providers.base import Offer
from skystate.reconcile.actual import ActualState
from skystate.reconcile.desired_views import service_task_view, service_view
from skystate.reconcile.plan import ActionType, Plan
from skystate.reconcile.planner import make_plan
from skystate.reconcile.render import render_plan
from skystate.spec.desired import DesiredState, spec_hash
from skystate.spec.documents import Project, Service

OWNER = "team"
PRICE = 1.5  # $/h of one L4 node


def _offer(resources, num_nodes):
    if resources.accelerators and "H100" in resources.accelerators:
        return []  # nothing offers H100s here
    gpus = resources.accelerators or {}
    return [Offer("local", None, None, "l4-box", gpus, 4, 16, False,
                  PRICE * max(1, sum(gpus.values())))]


def _service(name="api", run="python -m http.server 8080", **extra: Any) -> Service:
    fields: dict[str, Any] = {
        "name": name, "run": run, "resources": {"accelerators": "L4:1", "ports": 8080},
        "service": {"readiness_probe": "/health",
                    "replica_policy": {"min_replicas": 1, "max_replicas": 4,
                                       "target_qps_per_replica": 5}},
        **extra,
    }
    return Service.model_validate(fields)


def _desired(*services: Service) -> DesiredState:
    return DesiredState(project=Project(name=OWNER), owner=OWNER,
                        services={s.name: s for s in services})


def _plan(desired: DesiredState, services: list[dict] = (), **kw) -> Plan:
    actual = ActualState(version=3, services={s["name"]: s for s in services})
    return make_plan(desired, actual, rank_offers=_offer, now=0.0, **kw)


def _served(service: Service, *, owner: str | None = OWNER, target=2, version=1,
            declared=True, **extra) -> dict:
    """A service record as skystate.serve keeps it after this apply's serve-up."""
    task = service_task_view(service)
    view = service_view(service, OWNER)
    record = {
        "name": service.name, "owner": owner, "user_name": "alice", "status": "READY",
        "tasks": {str(version): task}, "version": version, "update_mode": "rolling",
        "replicas": [{"replica_id": i, "status": "READY", "version": version}
                     for i in range(1, target + 1)],
        "target_replicas": target, "lb_port": 30001, "down_requested_at": None,
    }
    if declared:
        record["declared"] = {"spec_hash": view["spec_hash"], "version": version,
                              "protect": service.protect, "hourly_per_replica": PRICE,
                              "offer": {"provider": "local", "instance_type": "l4-box",
                                        "hourly_price": PRICE}}
    return {**record, **extra}


def _types(plan: Plan) -> list[tuple[str, str]]:
    return [(a.type.value, a.address) for a in plan.actions]


def test_new_service_serves_up_with_the_replica_offer_and_its_cost_range():
    plan = _plan(_desired(_service()))
    assert not plan.errors
    (action,) = plan.actions
    assert action.type is ActionType.SERVE_UP and action.address == "Service/api"
    assert action.offer["instance_type"] == "l4-box"
    after = action.after
    assert (after["min_replicas"], after["max_replicas"]) == (1, 4)
    assert (after["hourly_at_min"], after["hourly_at_max"]) == (1.5, 6.0)
    assert action.hourly_after == 1.5 and plan.hourly_delta == 1.5
    assert after["owner"] == OWNER and after["update_mode"] == "rolling"
    assert after["spec_hash"] == spec_hash(service_task_view(_service()))
    text = render_plan(plan, markup=False)
    assert "+ Service/api  serve-up  per replica local l4-box on-demand $1.50/h; " \
           "$1.50/h at 1 to $6.00/h at 4 replicas" in text
    assert "services: 1 to serve up, 0 to update, 0 to take down" in text
    assert "not reconciled" not in text


def test_unchanged_service_is_noop_whatever_count_the_autoscaler_chose():
    service = _service()
    for target in (1, 3, 4):
        plan = _plan(_desired(service), [_served(service, target=target)])
        (action,) = plan.actions
        assert action.type is ActionType.NOOP, action.reason
        assert f"{target} replica(s)" in action.reason
        assert action.hourly_before == action.hourly_after == PRICE * target
    assert not plan.has_changes
    assert "No changes" in render_plan(plan, markup=False)


def test_changed_run_is_an_update_in_the_documents_mode():
    old = _service()
    for mode in ("rolling", "blue_green"):
        new = _service(run="python -m http.server 8080 --bind 0.0.0.0", update_mode=mode)
        plan = _plan(_desired(new), [_served(old, target=3)])
        (action,) = plan.actions
        assert action.type is ActionType.SERVE_UPDATE
        assert action.after["update_mode"] == mode and action.after["task_changed"] is True
        assert f"spec changed: {mode} update" == action.reason
        assert [c.path for c in action.changes] == ["run"]
        assert action.hourly_before == action.hourly_after == 3 * PRICE


def test_update_mode_alone_changes_nothing():
    service = _service()
    plan = _plan(_desired(_service(update_mode="blue_green")), [_served(service)])
    assert _types(plan) == [("noop", "Service/api")]


def test_changed_replica_bounds_update_and_bound_the_cost():
    old = _service()
    new = _service(service={"readiness_probe": "/health",
                            "replica_policy": {"min_replicas": 5, "max_replicas": 8,
                                               "target_qps_per_replica": 5}})
    (action,) = _plan(_desired(new), [_served(old, target=2)]).actions
    assert action.type is ActionType.SERVE_UPDATE
    assert action.hourly_before == 2 * PRICE and action.hourly_after == 5 * PRICE
    assert any(c.path.startswith("service.replica_policy.min_replicas") for c in action.changes)


def test_an_update_from_outside_the_files_is_undone():
    service = _service()
    record = _served(service, version=2)
    record["declared"]["version"] = 1  # the last apply made version 1; sky.serve.update made 2
    (action,) = _plan(_desired(service), [record]).actions
    assert action.type is ActionType.SERVE_UPDATE
    assert action.reason.startswith("updated outside the files (version 2)")


def test_without_declared_the_recorded_task_is_compared():
    """An apply that died after serve-up but before recording ``declared``."""
    service = _service()
    plan = _plan(_desired(service), [_served(service, declared=False)])
    assert _types(plan) == [("noop", "Service/api")]
    changed = _service(run="python serve.py")
    plan = _plan(_desired(changed), [_served(service, declared=False)])
    assert _types(plan) == [("serve-update", "Service/api")]


def test_protect_change_is_recorded_without_touching_replicas():
    service = _service()
    (action,) = _plan(_desired(_service(protect=True)), [_served(service)]).actions
    assert action.type is ActionType.SERVE_UPDATE and action.after["task_changed"] is False
    assert action.reason.startswith("protect changed")


def test_removed_service_serves_down_and_frees_its_cost():
    service = _service()
    plan = _plan(_desired(), [_served(service, target=3)])
    (action,) = plan.actions
    assert action.type is ActionType.SERVE_DOWN and action.address == "Service/api"
    assert action.hourly_before == 3 * PRICE and action.hourly_after == 0
    assert plan.hourly_delta == -3 * PRICE
    assert "- Service/api  serve-down" in render_plan(plan, markup=False)


def test_protected_removed_service_is_an_error_and_no_prune_keeps_it():
    protected = _service(protect=True)
    plan = _plan(_desired(), [_served(protected)])
    assert not plan.actions and "Service/api is protected" in plan.errors[0]
    plan = _plan(_desired(), [_served(_service())], prune=False)
    assert not plan.actions and not plan.errors
    assert "kept (--no-prune)" in plan.warnings[0]


def test_foreign_and_sdk_services_are_never_pruned_and_their_names_are_taken():
    service = _service()
    others = [_served(service, owner="other-team"),
              _served(_service(name="web"), owner=None)]  # made with sky.serve.up
    plan = _plan(_desired(), others)
    assert not plan.actions and not plan.errors
    plan = _plan(_desired(_service(), _service(name="web")), others)
    assert not plan.actions
    assert any("Service/api already exists and is not owned" in e and "other-team" in e
               for e in plan.errors)
    assert any("Service/web" in e and "sky.serve.up by 'alice'" in e for e in plan.errors)


def test_service_being_taken_down_is_left_alone():
    service = _service()
    record = _served(service, down_requested_at=100.0)
    assert _types(_plan(_desired(service), [record])) == [("noop", "Service/api")]
    assert _types(_plan(_desired(), [record])) == []


def test_infeasible_replica_is_a_plan_error():
    service = _service(resources={"accelerators": "H100:8"})
    plan = _plan(_desired(service))
    assert not plan.actions and "no offer satisfies a replica's request" in plan.errors[0]


def test_secrets_never_reach_the_plan_but_change_the_hash(tmp_path):
    service = _service(secrets={"HF_TOKEN": "hunter2"})
    desired = DesiredState(project=Project(name=OWNER), owner=OWNER, root=tmp_path,
                           services={"api": service})
    plan = _plan(desired)
    assert "hunter2" not in plan.to_json()
    (action,) = plan.actions
    assert action.after["task"]["secrets"] == {"HF_TOKEN": "<redacted>"}
    assert action.after["secrets_from"] == str(tmp_path)
    rotated = _service(secrets={"HF_TOKEN": "hunter3"})
    record = _served(service)
    plan = _plan(DesiredState(project=Project(name=OWNER), owner=OWNER, root=tmp_path,
                              services={"api": rotated}), [record])
    assert _types(plan) == [("serve-update", "Service/api")]
    assert "hunter" not in plan.to_json()


def test_targets_pick_a_service():
    plan = _plan(_desired(_service(), _service(name="web")), targets=["service/web"])
    assert _types(plan) == [("serve-up", "Service/web")]


def test_plan_round_trips_as_json():
    plan = _plan(_desired(_service()), [])
    again = Plan.from_json(plan.to_json())
    assert again.actions[0].after == plan.actions[0].after


def test_live_job_statuses_keep_the_recorded_services():
    """The plan's actual state passes through the job-status refresh with its services."""
    from skystate.providers.registry import Providers
    from skystate.reconcile.refresh import with_live_job_statuses

    record = _served(_service())
    actual = ActualState(version=3, services={"api": record})
    assert with_live_job_statuses(actual, Providers({}), {}).services == {"api": record}
