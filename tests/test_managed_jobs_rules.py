"""The managed-job decision and recovery rule as tables: pure, no processes."""

from __future__ import annotations

from typing import Any

import pytest

from skystate.jobs import records as rec
from skystate.jobs.decide import Act, Settings, View, decide
from skystate.jobs.handlers import ordered_offers
from skystate.jobs.recovery import EAGER_NEXT_REGION, FAILOVER, Evidence, Policy, rule
from skystate.jobs.status import ManagedJobStatus as S
from skystate.jobs.status import Seen
from skystate.providers.base import Offer

WINDOW = 60.0
DEFAULT = Policy()


def _rule(evidence: Evidence, policy: Policy = DEFAULT, restarts: int = 0,
          unknown_since: float | None = None, now: float = 1000.0) -> Any:
    return rule(evidence, policy, restarts_on_error=restarts, unknown_since=unknown_since,
                now=now, unknown_window=WINDOW)


@pytest.mark.parametrize(("evidence", "unknown_since", "kind"), [
    (Evidence(Seen.UNKNOWN, detail="timeout"), None, "wait"),
    (Evidence(Seen.UNKNOWN, detail="timeout"), 1000.0 - WINDOW + 1, "wait"),
    (Evidence(Seen.UNKNOWN, detail="timeout"), 1000.0 - WINDOW, "recover"),
    (Evidence(Seen.UP, None, detail="agent timeout"), None, "wait"),
    (Evidence(Seen.GONE), None, "recover"),
    (Evidence(Seen.STOPPED), None, "recover"),
    (Evidence(Seen.UP, "RUNNING"), None, "keep"),
    (Evidence(Seen.UP, "PENDING"), None, "keep"),
    (Evidence(Seen.UP, "FAILED_DRIVER"), None, "recover"),
    (Evidence(Seen.UP, "SUCCEEDED", 0), None, "end"),
])
def test_rule_reads_unknown_as_unknown_and_gone_as_preempted(
        evidence: Evidence, unknown_since: float | None, kind: str) -> None:
    assert _rule(evidence, unknown_since=unknown_since).kind == kind


def test_user_failures_restart_until_the_limit_and_listed_exit_codes_recover() -> None:
    policy = Policy(max_restarts_on_errors=2, recover_on_exit_codes=(7,))
    failed = Evidence(Seen.UP, "FAILED", 1)
    assert _rule(failed, policy, restarts=0).kind == "restart"
    assert _rule(failed, policy, restarts=1).kind == "restart"
    verdict = _rule(failed, policy, restarts=2)
    assert verdict.kind == "end" and verdict.status is S.FAILED
    assert _rule(Evidence(Seen.UP, "FAILED", 7), policy, restarts=2).kind == "recover"
    setup = _rule(Evidence(Seen.UP, "FAILED_SETUP", 2))
    assert setup.kind == "end" and setup.status is S.FAILED_SETUP


def _job(**fields: Any) -> dict[str, Any]:
    base = {"job_id": 1, "attempt": 1, "phase": rec.PHASE_WATCH, "cluster": "mj-1-1",
            "cluster_job_id": 1, "status": "RUNNING", "recovery_count": 0,
            "restarts_on_error": 0, "unknown_since": None, "cancel_requested_at": None,
            "region": "us-east-1", "then": None, "next_attempt_at": None}
    return {**base, **fields}


SETTINGS = Settings(check_interval=2.0, unknown_window=WINDOW)


def _decide(job: dict[str, Any], evidence: Evidence | None = None,
            policy: Policy = DEFAULT) -> Any:
    return decide(View(job, policy, evidence), SETTINGS, 1000.0)


def test_a_preemption_retires_the_cluster_before_the_next_attempt() -> None:
    step = _decide(_job(), Evidence(Seen.GONE))
    mark = step.actions[-1]
    assert mark.type is Act.MARK and mark.fields["phase"] == rec.PHASE_RETIRE
    assert mark.fields["status"] == "RECOVERING" and mark.fields["recovery_count"] == 1
    assert mark.fields["avoid_region"] == "us-east-1"  # EAGER_NEXT_REGION
    retire = _decide(_job(phase=rec.PHASE_RETIRE, then="launch"))
    assert [a.type for a in retire.actions] == [Act.SYNC_LOG, Act.TEARDOWN, Act.MARK]
    assert retire.actions[-1].fields["attempt"] == 2
    assert retire.actions[-1].fields["phase"] == rec.PHASE_LAUNCH


def test_unknown_marks_the_condition_once_and_never_tears_down() -> None:
    first = _decide(_job(), Evidence(Seen.UNKNOWN, detail="timeout"))
    assert [a.type for a in first.actions] == [Act.MARK]
    assert first.actions[0].fields["unknown_since"] == 1000.0
    assert "unreachable since" in first.actions[0].fields["failure_reason"]
    again = _decide(_job(unknown_since=990.0), Evidence(Seen.UNKNOWN, detail="timeout"))
    assert again.actions == () and again.requeue_after == SETTINGS.check_interval
    healthy = _decide(_job(unknown_since=990.0), Evidence(Seen.UP, "RUNNING"))
    assert healthy.actions[-1].fields == {"unknown_since": None, "failure_reason": None}


def test_cancel_converges_from_every_phase() -> None:
    queued = _decide(_job(phase=rec.PHASE_LAUNCH, cluster=None, cancel_requested_at=1.0))
    assert queued.actions[0].fields["status"] == "CANCELLED"
    assert queued.actions[0].fields["phase"] == rec.PHASE_DONE
    running = _decide(_job(cancel_requested_at=1.0), Evidence(Seen.UP, "RUNNING"))
    assert running.actions[0].fields["status"] == "CANCELLING"
    assert running.actions[0].fields["end_status"] == "CANCELLED"
    recovering = _decide(_job(phase=rec.PHASE_RETIRE, then="launch", cancel_requested_at=1.0))
    assert recovering.actions[0].fields["then"] == "end"
    ending = _decide(_job(phase=rec.PHASE_RETIRE, then="end", end_status="CANCELLED"))
    assert ending.actions[-1].fields["status"] == "CANCELLED"
    assert ending.requeue_after is None


def test_launch_waits_for_its_backoff() -> None:
    step = _decide(_job(phase=rec.PHASE_LAUNCH, cluster=None, next_attempt_at=1030.0))
    assert step.actions == () and step.requeue_after == 30.0
    step = _decide(_job(phase=rec.PHASE_LAUNCH, cluster=None, next_attempt_at=999.0))
    assert [a.type for a in step.actions] == [Act.LAUNCH]


def _offer(region: str) -> Offer:
    return Offer("aws", region, None, "m5.large", {}, 2.0, 8.0, True, 0.1)


def test_eager_next_region_tries_other_regions_first_failover_the_same() -> None:
    offers = [_offer("us-east-1"), _offer("us-west-2"), _offer("eu-west-1")]
    eager = ordered_offers(offers, EAGER_NEXT_REGION, "us-east-1")
    assert [o.region for o in eager] == ["us-west-2", "eu-west-1", "us-east-1"]
    failover = ordered_offers(offers, FAILOVER, "us-west-2")
    assert [o.region for o in failover] == ["us-west-2", "us-east-1", "eu-west-1"]
    assert ordered_offers(offers, EAGER_NEXT_REGION, None) == offers
