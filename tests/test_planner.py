"""The planner is a pure function: these tests need no provider and no files."""

from __future__ import annotations

import json

import pytest

from skystate.providers.base import Offer
from skystate.reconcile.actual import ActualState
from skystate.reconcile.desired_views import cluster_view, job_view
from skystate.reconcile.plan import ActionType, Plan
from skystate.reconcile.planner import make_plan
from skystate.spec.desired import DesiredState
from skystate.spec.documents import Cluster, Job, Project

OWNER = "team"


def _offer(resources, num_nodes):
    gpus = resources.accelerators or {}
    price = 3.0 * sum(gpus.values())
    return [Offer("local", None, None, "local", gpus, 2, 8, False, price)]


def _desired(clusters=(), jobs=()) -> DesiredState:
    return DesiredState(
        project=Project(name=OWNER), owner=OWNER,
        clusters={c.name: c for c in clusters},
        jobs={(j.cluster, j.name): j for j in jobs},
    )


def _record(cluster: Cluster, status="UP", **extra):
    offer = _offer(cluster.resources, cluster.num_nodes)[0].to_dict()
    return {**cluster_view(cluster, OWNER), "status": status, "offer": offer,
            "provider": "local", **extra}


def _job_record(job: Job, status="SUCCEEDED", job_id=1):
    return {**job_view(job, OWNER), "status": status, "job_id": job_id}


def _plan(desired, clusters=(), jobs=(), **kw) -> Plan:
    actual = ActualState(
        version=7,
        clusters={c["name"]: c for c in clusters},
        jobs={(j["cluster"], j["name"]): j for j in jobs},
    )
    return make_plan(desired, actual, rank_offers=_offer, now=0.0, **kw)


def _types(plan):
    return [(a.type.value, a.address) for a in plan.changes]


TRAIN = Cluster(name="train", resources={"accelerators": "A100:2"}, autostop=30)
JOB = Job(name="ft", cluster="train", run="python train.py")


def test_empty_state_creates_clusters_before_jobs():
    plan = _plan(_desired([TRAIN], [JOB]))
    assert _types(plan) == [("create", "Cluster/train"), ("submit-job", "Job/train/ft")]
    submit = plan.changes[1]
    assert submit.depends_on == ["create Cluster/train"]
    assert plan.state_version == 7
    assert plan.changes[0].hourly_after == pytest.approx(6.0)


def test_matching_state_is_all_noop():
    plan = _plan(_desired([TRAIN], [JOB]), [_record(TRAIN)], [_job_record(JOB)])
    assert not plan.has_changes
    assert {a.type for a in plan.actions} == {ActionType.NOOP}


def test_job_same_hash_is_noop_whatever_its_status():
    plan = _plan(_desired([TRAIN], [JOB]), [_record(TRAIN)], [_job_record(JOB, "FAILED")])
    assert not plan.has_changes


def test_editing_run_resubmits_only_that_job():
    other = Job(name="eval", cluster="train", run="python eval.py")
    edited = JOB.model_copy(update={"run": "python train.py --epochs 3"})
    plan = _plan(_desired([TRAIN], [edited, other]), [_record(TRAIN)],
                 [_job_record(JOB), _job_record(other)])
    assert _types(plan) == [("submit-job", "Job/train/ft")]
    assert [c.path for c in plan.changes[0].changes] == ["run"]


def test_editing_an_active_job_cancels_it_first():
    edited = JOB.model_copy(update={"run": "python train.py --lr 1"})
    plan = _plan(_desired([TRAIN], [edited]), [_record(TRAIN)], [_job_record(JOB, "RUNNING")])
    assert _types(plan) == [("cancel-job", "Job/train/ft"), ("submit-job", "Job/train/ft")]
    assert plan.changes[1].depends_on == ["cancel-job Job/train/ft"]


def test_changing_accelerators_is_a_replace_with_field_diff():
    bigger = TRAIN.model_copy(update={"resources": TRAIN.resources.copy(accelerators="A100:4")})
    plan = _plan(_desired([bigger]), [_record(TRAIN)])
    assert _types(plan) == [("replace", "Cluster/train")]
    change = plan.changes[0].changes[0]
    assert (change.path, change.before, change.after) == (
        "resources.accelerators.A100", 2, 4)
    assert plan.hourly_delta == pytest.approx(6.0)


def test_replace_resubmits_jobs_even_with_the_same_hash():
    bigger = TRAIN.model_copy(update={"num_nodes": 2})
    plan = _plan(_desired([bigger], [JOB]), [_record(TRAIN)], [_job_record(JOB)])
    assert _types(plan) == [("replace", "Cluster/train"), ("submit-job", "Job/train/ft")]


def test_protected_cluster_replace_is_an_error():
    protected = TRAIN.model_copy(update={"protect": True})
    bigger = protected.model_copy(update={"num_nodes": 3})
    plan = _plan(_desired([bigger]), [_record(protected)])
    assert plan.errors and "protect" in plan.errors[0]


def test_protection_outlives_the_file():
    protected = TRAIN.model_copy(update={"protect": True})
    plan = _plan(_desired([]), [_record(protected)])
    assert plan.errors and "no longer in the files" in plan.errors[0]
    assert not plan.has_changes


def test_deleted_file_downs_owned_cluster_but_never_sdk_clusters():
    sdk = Cluster(name="adhoc")
    sdk_record = {**_record(sdk), "managed_by": "sdk"}
    foreign = {**_record(Cluster(name="theirs")), "owner": "other-team"}
    plan = _plan(_desired([]), [_record(TRAIN), sdk_record, foreign], [_job_record(JOB, "RUNNING")])
    assert _types(plan) == [("cancel-job", "Job/train/ft"), ("down", "Cluster/train")]
    assert plan.changes[1].depends_on == ["cancel-job Job/train/ft"]


def test_no_prune_keeps_removed_clusters():
    plan = _plan(_desired([]), [_record(TRAIN)], prune=False)
    assert not plan.has_changes and plan.warnings


def test_autostop_change_is_in_place():
    changed = TRAIN.model_copy(update={"autostop": TRAIN.autostop.model_copy(
        update={"idle_minutes": 5})})
    plan = _plan(_desired([changed]), [_record(TRAIN)])
    assert _types(plan) == [("set-autostop", "Cluster/train")]


def test_setup_change_is_an_update():
    changed = TRAIN.model_copy(update={"setup": "pip install x"})
    plan = _plan(_desired([changed]), [_record(TRAIN)])
    assert _types(plan) == [("update", "Cluster/train")]


def test_stopped_by_autostop_is_not_drift():
    plan = _plan(_desired([TRAIN]), [_record(TRAIN, "STOPPED", stopped_by_autostop=True)])
    assert not plan.has_changes
    assert "autostop" in plan.actions[0].reason


def test_stopped_by_autostop_starts_when_a_job_needs_it():
    plan = _plan(_desired([TRAIN], [JOB]), [_record(TRAIN, "STOPPED", stopped_by_autostop=True)])
    assert _types(plan) == [("start", "Cluster/train"), ("submit-job", "Job/train/ft")]


def test_externally_stopped_cluster_with_power_up_is_started():
    plan = _plan(_desired([TRAIN]), [_record(TRAIN, "STOPPED")])
    assert _types(plan) == [("start", "Cluster/train")]


def test_power_stopped_stops_an_up_cluster():
    plan = _plan(_desired([TRAIN.model_copy(update={"power": "stopped"})]), [_record(TRAIN)])
    assert _types(plan) == [("stop", "Cluster/train")]


def test_init_record_is_provisioned_again():
    plan = _plan(_desired([TRAIN]), [_record(TRAIN, "INIT")])
    assert _types(plan) == [("create", "Cluster/train")]


def test_cluster_of_another_owner_is_an_error():
    plan = _plan(_desired([TRAIN]), [{**_record(TRAIN), "owner": "x"}])
    assert plan.errors and "not owned" in plan.errors[0]


def test_infeasible_request_is_an_error():
    plan = make_plan(_desired([TRAIN]), ActualState(), rank_offers=lambda r, n: [], now=0)
    assert plan.errors and "no offer" in plan.errors[0]


def test_gpu_cluster_without_autostop_warns():
    plan = _plan(_desired([TRAIN.model_copy(update={"autostop": None})]))
    assert any("autostop" in w for w in plan.warnings)


def test_target_limits_to_resource_and_its_cluster():
    other = Cluster(name="other")
    plan = _plan(_desired([TRAIN, other], [JOB]), targets=["job/train/ft"])
    assert _types(plan) == [("create", "Cluster/train"), ("submit-job", "Job/train/ft")]


def test_plan_roundtrips_through_json():
    plan = _plan(_desired([TRAIN], [JOB]))
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert json.loads(plan.to_json())["actions"][0]["type"] == "create"


def test_plan_time_is_linear():
    """Not a benchmark: a guard that planning is not quadratic. It compares the CPU time of
    2,000 clusters with 500 (linear: 4x; quadratic: 16x), so load on the machine cannot break
    it the way a wall-clock bound would."""
    import time

    def cpu_seconds(count: int) -> tuple[float, object]:
        clusters = [Cluster(name=f"c{i}") for i in range(count)]
        desired, records = _desired(clusters), [_record(c) for c in clusters]
        best, plan = float("inf"), None
        for _ in range(3):
            started = time.process_time()
            plan = _plan(desired, records)
            best = min(best, time.process_time() - started)
        return max(best, 1e-3), plan

    small, _ = cpu_seconds(500)
    large, plan = cpu_seconds(2000)
    assert large / small < 9, (small, large)
    assert not plan.has_changes


def _offers_with_failover(resources, num_nodes):
    return [Offer("local", None, None, f"t{i}", {}, 2, 8, False, float(i)) for i in range(4)]


def test_rewritten_actions_keep_their_place_without_comparing_actions(monkeypatch):
    """A create's failover offers and a start for a job rewrite an action where it was
    added; finding it must not compare actions (list.index: quadratic in the plan)."""
    from skystate.reconcile.plan import Action

    compared = []
    monkeypatch.setattr(Action, "__eq__", lambda self, other: compared.append(1) or
                        self is other)
    new = [Cluster(name=f"n{i}", resources={"cpus": 1}) for i in range(30)]
    asleep = [Cluster(name=f"s{i}", resources={"cpus": 1}) for i in range(30)]
    jobs = [Job(name="j", cluster=c.name, run="true") for c in new + asleep]
    records = [_record(c, "STOPPED", stopped_by_autostop=True) for c in asleep]
    plan = make_plan(_desired(new + asleep, jobs),
                     ActualState(version=1, clusters={r["name"]: r for r in records}),
                     rank_offers=_offers_with_failover, now=0.0)
    assert not compared
    clusters = [a for a in plan.actions if a.kind == "Cluster"]
    assert [a.name for a in clusters] == [c.name for c in new + asleep]
    assert all(len(a.failover_offers) == 3 for a in clusters[:30])
    assert {a.type for a in clusters[30:]} == {ActionType.START}
    submits = [a for a in plan.actions if a.kind == "Job"]
    assert [a.depends_on for a in submits[30:]] == [[f"start Cluster/{c.name}"]
                                                    for c in asleep]
