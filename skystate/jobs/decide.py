"""``decide(view, settings, now)``: a job's next step, as data. No I/O, no clock.

The loop reads the record (and, while the job runs, one observation of its cluster)
into a ``View``; ``decide`` returns the actions to run in order and how long to wait
before looking again. Every branch states its reason; the handlers do the acting.

Phases (the record's ``phase``): ``launch`` → ``watch`` → ``retire`` → ``launch``
(a recovery or a restart, next attempt) or ``done``. A cancel is a field
(``cancel_requested_at``) that every phase converges on.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from skystate.jobs import records as rec
from skystate.jobs.pipeline import finish_task
from skystate.jobs.recovery import EAGER_NEXT_REGION, Evidence, Policy, rule
from skystate.jobs.status import ManagedJobStatus as S
from skystate.jobs.status import Seen
from skystate.runtime.layout import env_seconds

Record = dict[str, Any]


class Act(str, enum.Enum):
    MARK = "mark"  # merge ``fields`` into the record (intent before the act)
    LAUNCH = "launch"  # provision the attempt's cluster and submit the job to it
    SYNC_LOG = "sync-log"  # copy the attempt's log off its cluster (what is new)
    TEARDOWN = "teardown"  # down the attempt's cluster through the executor


@dataclass(frozen=True)
class JobAction:
    type: Act
    fields: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""  # for people only


@dataclass(frozen=True)
class Step:
    actions: tuple[JobAction, ...] = ()
    requeue_after: float | None = None  # None: nothing to do until the record changes
    note: str = ""


@dataclass(frozen=True)
class Settings:
    """The controller's timings, in seconds (already divided by SKYSTATE_TIME_SCALE)."""

    check_interval: float = 3.0
    unknown_window: float = 300.0
    backoff_base: float = 30.0
    backoff_cap: float = 600.0
    observe_timeout: float = 30.0  # real seconds (not scaled): a provider call's bound

    @classmethod
    def from_env(cls) -> Settings:
        """``SKYSTATE_JOBS_CHECK_SECONDS`` (3), ``SKYSTATE_JOBS_UNKNOWN_WINDOW_SECONDS``
        (300), ``SKYSTATE_JOBS_BACKOFF_SECONDS`` (30, doubling up to 600), each divided
        by ``SKYSTATE_TIME_SCALE``; ``SKYSTATE_JOBS_OBSERVE_TIMEOUT_SECONDS`` (30, real)."""
        from skystate.runtime.layout import time_scale

        scale = time_scale()
        return cls(
            check_interval=max(0.1, env_seconds("SKYSTATE_JOBS_CHECK_SECONDS", 3.0) / scale),
            unknown_window=env_seconds("SKYSTATE_JOBS_UNKNOWN_WINDOW_SECONDS", 300.0) / scale,
            backoff_base=env_seconds("SKYSTATE_JOBS_BACKOFF_SECONDS", 30.0) / scale,
            backoff_cap=600.0 / scale,
            observe_timeout=env_seconds("SKYSTATE_JOBS_OBSERVE_TIMEOUT_SECONDS", 30.0))

    def backoff(self, failures: int) -> float:
        return min(self.backoff_cap, self.backoff_base * 2 ** max(0, failures - 1))


@dataclass(frozen=True)
class View:
    record: Record
    policy: Policy
    evidence: Evidence | None = None  # one look at the cluster, in phase ``watch`` only


def _mark(reason: str = "", **fields: Any) -> JobAction:
    return JobAction(Act.MARK, fields, reason)


def decide(view: View, settings: Settings, now: float) -> Step:
    job = view.record
    phase = job["phase"]
    if phase == rec.PHASE_DONE:
        return Step(note="finished")
    if phase == rec.PHASE_RETIRE:
        return _retire(job, now)
    if job.get("cancel_requested_at"):
        if job.get("cluster"):
            return Step((_mark("cancel requested: tear its cluster down",
                               phase=rec.PHASE_RETIRE, then="end",
                               end_status=S.CANCELLED.value, status=S.CANCELLING.value),),
                        0.0)
        return Step((_mark("cancel requested before any cluster was launched",
                           **finish_task(job, S.CANCELLED.value, now)),))
    if phase == rec.PHASE_LAUNCH:
        wait = (job.get("next_attempt_at") or 0.0) - now
        if wait > 0:
            return Step(requeue_after=wait, note=f"next launch attempt in {wait:.0f}s")
        return Step((JobAction(Act.LAUNCH, {}, f"launch attempt {job['attempt']}"),), 0.0)
    return _watch(view, settings, now)


def _retire(job: Record, now: float) -> Step:
    if job.get("cancel_requested_at") and job.get("then") == "launch":
        return Step((_mark("cancel requested during a recovery: end instead of relaunching",
                           then="end", end_status=S.CANCELLED.value,
                           status=S.CANCELLING.value),), 0.0)
    actions: list[JobAction] = []
    if job.get("cluster"):
        actions += [JobAction(Act.SYNC_LOG, {"final": True}, "keep the attempt's log"),
                    JobAction(Act.TEARDOWN, {"cluster": job["cluster"]},
                              f"attempt {job['attempt']} is over")]
    if job.get("then") == "end":
        status = job.get("end_status") or S.FAILED_CONTROLLER.value
        fields = finish_task(job, status, now)
        if fields["phase"] == rec.PHASE_DONE:
            actions.append(_mark(f"finished: {status}", **fields))
            return Step(tuple(actions))
        actions.append(_mark(f"task {job.get('task_index') or 0} {status}: next task "
                             f"{fields['task_index']}", **fields))
        return Step(tuple(actions), 0.0)
    actions.append(_mark(f"next: attempt {job['attempt'] + 1}", phase=rec.PHASE_LAUNCH,
                         attempt=job["attempt"] + 1, cluster=None, cluster_job_id=None,
                         then=None, next_attempt_at=None, unknown_since=None))
    return Step(tuple(actions), 0.0)


def _watch(view: View, settings: Settings, now: float) -> Step:
    job, evidence = view.record, view.evidence
    if evidence is None:
        return Step(requeue_after=settings.check_interval, note="no observation")
    verdict = rule(evidence, view.policy, restarts_on_error=job.get("restarts_on_error", 0),
                   unknown_since=job.get("unknown_since"), now=now,
                   unknown_window=settings.unknown_window)
    sync = JobAction(Act.SYNC_LOG, {}, "")
    limit, started = job.get("max_duration_seconds"), job.get("start_at")
    if limit and started and now - started >= limit and verdict.kind in ("keep", "wait"):
        reason = f"ran {now - started:.0f}s, past its max_duration of {limit:.0f}s"
        return Step((sync, _mark(reason, phase=rec.PHASE_RETIRE, then="end",
                                 end_status=S.CANCELLED.value, status=S.CANCELLING.value,
                                 failure_reason=reason)), 0.0)
    if verdict.kind == "keep":
        actions = [sync]
        if job.get("unknown_since") is not None:
            actions.append(_mark("reachable again", unknown_since=None, failure_reason=None))
        if job.get("resumed_after_downtime"):
            actions.append(_mark("still running after the downtime",
                                 resumed_after_downtime=None))
        return Step(tuple(actions), settings.check_interval)
    if verdict.kind == "recover" and evidence.seen in (Seen.GONE, Seen.STOPPED) \
            and job.get("resumed_after_downtime"):
        reason = (f"its cluster is gone after the controller was down "
                  f"{job['resumed_after_downtime']}s, longer than the cluster's safety "
                  "autodown: the job may have finished and the cluster downed itself; not "
                  "relaunched, so it never runs twice")
        return Step((sync, _mark(reason, phase=rec.PHASE_RETIRE, then="end",
                                 end_status=S.FAILED_CONTROLLER.value, failure_reason=reason,
                                 resumed_after_downtime=None,
                                 _attempt={"outcome": reason, "ended_at": now})), 0.0)
    if verdict.kind == "wait":
        if job.get("unknown_since") is not None:
            return Step(requeue_after=settings.check_interval, note=verdict.reason)
        since = time.strftime("%H:%M:%S", time.localtime(now))
        return Step((_mark(verdict.reason, unknown_since=now,
                           failure_reason=f"unreachable since {since}: {evidence.detail}"),),
                    settings.check_interval)
    ended = {"outcome": verdict.reason, "ended_at": now}
    if verdict.kind == "end":
        assert verdict.status is not None
        failed = verdict.status.is_failed()
        return Step((sync, _mark(verdict.reason, phase=rec.PHASE_RETIRE, then="end",
                                 end_status=verdict.status.value, unknown_since=None,
                                 failure_reason=verdict.reason if failed else None,
                                 _attempt=ended)), 0.0)
    counters = {"recovery_count": job.get("recovery_count", 0) + 1}
    if verdict.kind == "restart":
        counters["restarts_on_error"] = job.get("restarts_on_error", 0) + 1
    avoid = job.get("region") if view.policy.strategy == EAGER_NEXT_REGION else None
    return Step((sync, _mark(verdict.reason, phase=rec.PHASE_RETIRE, then="launch",
                             status=S.RECOVERING.value, unknown_since=None, avoid_region=avoid,
                             last_recovery_reason=verdict.reason, failure_reason=None,
                             _attempt=ended, **counters)), 0.0)
