"""``decide(view, now)``: a service's next step, as data. No I/O, no clock.

The loop reads the record, one probe of each replica that runs, one look at the cluster
of each replica whose probe failed, and the load balancer's stats into a ``View``;
``decide`` returns the actions to run in order and how long to wait. In order:

1. each replica's status from its evidence (``transition``): a probe that passes makes
   it READY; a failing one makes a READY replica NOT_READY (out of the ready set at
   once) and, ``PROBE_FAILURES`` in a row, FAILED_PROBING; a STARTING one past
   ``initial_delay_seconds`` is FAILED_INITIAL_DELAY; its program exited is FAILED;
   its cluster gone is PREEMPTED. An UNKNOWN look changes nothing;
2. rollback: the wanted version is the newest one not failed; a version that never had
   a READY replica fails after ``ROLLBACK_FAILURES`` failures (or one initial-delay
   failure) and, if an older version is stable, the service goes back to it;
3. the replica count (``autoscale.target``) and the rollout step (``rollout.rollout``):
   replicas to launch (new records, PENDING, after the replacement backoff) and to drain;
4. the ready set, if it changed; then launches and teardowns (a drained replica is torn
   down ``DRAIN_SECONDS`` after it left the ready set).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from skystate.serve import autoscale, fallback, spot_placer
from skystate.serve.policy import PROBE_FAILURES, Policy
from skystate.serve.rollout import Replica, Rollout, ready_ids, rollout
from skystate.serve.rollout import live as live_replicas
from skystate.serve.status import ReplicaStatus as R
from skystate.serve.status import ServiceStatus as S
from skystate.serve.status import UpdateMode

Record = dict[str, Any]
ROLLBACK_FAILURES = 2
DRAIN_SECONDS = 0.5  # real seconds: the load balancer re-reads the ready set every 50 ms
STATS_FRESH_SECONDS = 5.0
BACKOFF_BASE = 30.0  # scaled by the loop (Settings)
UNKNOWN_WINDOW = 600.0  # scaled: an UNKNOWN replica is waited for this long, never replaced


class Act(str, enum.Enum):
    MARK = "mark"  # merge ``fields`` into the record (intent before the act)
    START_LB = "start-lb"
    READY_SET = "ready-set"  # write the ready set (``ids``, ``generation``)
    LAUNCH = "launch"  # provision replica ``replica_id``'s cluster and start its program
    TEARDOWN = "teardown"  # down replica ``replica_id``'s cluster through the executor
    STOP_LB = "stop-lb"
    REMOVE = "remove"  # forget the service (after down)


@dataclass(frozen=True)
class ServeAction:
    type: Act
    fields: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class Step:
    actions: tuple[ServeAction, ...] = ()
    requeue_after: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Evidence:
    """What one look at a replica found: its probe (None: not probed) and, when the
    probe failed, whether its program exited or its cluster is gone."""

    probe_ok: bool | None = None
    exited: bool = False
    gone: bool = False
    unknown: bool = False  # the probe failed and the look at its cluster did not answer
    detail: str = ""


@dataclass(frozen=True)
class View:
    record: Record
    policies: Mapping[int, Policy]  # by version
    evidence: Mapping[int, Evidence] = field(default_factory=dict)  # by replica_id
    lb_running: bool = False
    recent: list[tuple[int, int]] | None = None  # the LB's QPS figures (fresh) or None
    in_flight: frozenset[int] = frozenset()  # replicas with a launch/teardown running
    backoff_base: float = BACKOFF_BASE
    unknown_window: float = UNKNOWN_WINDOW


def backoff(failures: int, base: float) -> float:
    """The first failure is replaced at once; later ones wait base·2^(n−2), capped."""
    if failures <= 1:
        return 0.0
    return min(base * 20, base * 2 ** (failures - 2))


def wanted_version(record: Record) -> int | None:
    failed = set(record.get("failed_versions") or [])
    versions = [int(v) for v in record.get("tasks") or {} if int(v) not in failed]
    return max(versions) if versions else None


def transition(replica: Record, ev: Evidence | None, policy: Policy,
               now: float) -> tuple[Record, str | None]:
    """A replica's record after its evidence, and why it changed (None: unchanged)."""
    status = R(replica["status"])
    if ev is None or status not in (R.STARTING, R.READY, R.NOT_READY, R.UNKNOWN):
        return replica, None
    if ev.probe_ok:
        if status is R.READY:
            return {**replica, "probe_failures": 0}, None
        return {**replica, "status": R.READY.value, "first_ready_at":
                replica.get("first_ready_at") or now, "failing_since": None,
                "unknown_since": None, "probe_failures": 0}, "readiness probe passed"
    if ev.gone:
        return _failed(replica, R.PREEMPTED, ev.detail or "its cluster is gone", now)
    if ev.exited:
        return _failed(replica, R.FAILED, ev.detail or "its program exited", now)
    if ev.probe_ok is None:
        return replica, None
    if ev.unknown:  # out of the ready set; never failed, torn down or re-created for it
        if status is R.UNKNOWN:
            return replica, None
        return {**replica, "status": R.UNKNOWN.value, "unknown_since": now,
                "failing_since": replica.get("failing_since") or now}, \
            f"UNKNOWN: {ev.detail}"
    if status is R.UNKNOWN:  # answered again: back to where the probe says it is
        status = R.NOT_READY if replica.get("first_ready_at") else R.STARTING
        replica = {**replica, "status": status.value, "unknown_since": None}
    failures = int(replica.get("probe_failures") or 0) + 1
    if status is R.STARTING:
        started = next((float(replica[k]) for k in ("started_at", "launched_at")
                        if replica.get(k) is not None), now)
        if now - started > policy.probe.initial_delay:
            return _failed(replica, R.FAILED_INITIAL_DELAY,
                           f"not ready within initial_delay_seconds "
                           f"({policy.probe.initial_delay:g}s scaled): {ev.detail}", now)
        return {**replica, "probe_failures": failures}, None
    if status is R.READY:
        return {**replica, "status": R.NOT_READY.value, "failing_since": now,
                "probe_failures": failures}, f"readiness probe failed: {ev.detail}"
    if failures >= PROBE_FAILURES:
        return _failed(replica, R.FAILED_PROBING,
                       f"{failures} probes failed in a row: {ev.detail}", now)
    return {**replica, "probe_failures": failures}, None


def _failed(replica: Record, status: R, reason: str, now: float) -> tuple[Record, str]:
    return {**replica, "status": status.value, "failure_reason": reason,
            "ended_at": now}, f"{status.value}: {reason}"


def _rollback(record: Record, replicas: list[Record], notes: list[str]) -> Record:
    """Fail the wanted version if it never became ready; the record after."""
    version = wanted_version(record)
    if version is None or version == record.get("stable_version"):
        return record
    mine = [r for r in replicas if r["version"] == version]
    if any(r.get("first_ready_at") for r in mine):
        return record
    failed = [r for r in mine if R(r["status"]).is_failed()
              and r["status"] != R.PREEMPTED.value]
    initial = any(r["status"] == R.FAILED_INITIAL_DELAY.value for r in failed)
    if len(failed) < ROLLBACK_FAILURES and not initial:
        return record
    reason = failed[-1].get("failure_reason") or failed[-1]["status"]
    failed_versions = sorted({*(record.get("failed_versions") or []), version})
    record = {**record, "failed_versions": failed_versions}
    stable = record.get("stable_version")
    if stable is not None:
        record["reason"] = (f"version {version} never became ready ({reason}); rolled "
                            f"back to version {stable}")
    else:
        record["reason"] = f"version {version} never became ready: {reason}"
    notes.append(record["reason"])
    return record


def _status(record: Record, replicas: list[Record], lb_running: bool) -> S:
    if record.get("down_requested_at"):
        return S.SHUTTING_DOWN
    if not lb_running or not record.get("lb_port"):
        return S.CONTROLLER_INIT
    if any(r["status"] == R.READY.value for r in replicas):
        return S.READY
    if wanted_version(record) is None:
        return S.FAILED
    if any(r["status"] == R.FAILED_CLEANUP.value for r in replicas):
        return S.FAILED_CLEANUP
    live = [r for r in replicas if not R(r["status"]).is_terminal()]
    if not live:
        return S.NO_REPLICA
    return S.REPLICA_INIT


def _prune(replicas: list[Record]) -> list[Record]:
    """Failed replicas whose cluster is gone: only the last few stay listed."""
    from skystate.serve.records import KEPT_FAILED_REPLICAS

    done = [r for r in replicas if R(r["status"]).is_terminal() and not r.get("cluster")]
    keep = {r["replica_id"] for r in done[-KEPT_FAILED_REPLICAS:]}
    return [r for r in replicas if r not in done or r["replica_id"] in keep]


def decide(view: View, now: float) -> Step:
    record = view.record
    notes: list[str] = []
    replicas = []
    failures = int(record.get("launch_failures") or 0)
    next_launch_at = record.get("next_launch_at")
    terminate = set(record.get("terminate_requested") or [])
    for replica in record.get("replicas") or []:
        policy = view.policies.get(int(replica["version"])) or next(iter(
            view.policies.values()))
        after, why = transition(replica, view.evidence.get(replica["replica_id"]), policy,
                                now)
        if why:
            notes.append(f"replica {replica['replica_id']}: {why}")
            if after["status"] == R.READY.value:
                failures = 0
            elif R(after["status"]).is_failed() and after["status"] != R.PREEMPTED.value:
                failures += 1
                next_launch_at = now + backoff(failures, view.backoff_base)
        if replica["replica_id"] in terminate and after["status"] != R.SHUTTING_DOWN.value:
            after = {**after, "status": R.SHUTTING_DOWN.value, "draining_since": now,
                     "failure_reason": "terminated on request"}
            notes.append(f"replica {replica['replica_id']}: terminate requested")
        replicas.append(after)
    before = list(record.get("replicas") or [])
    record = {**record, "launch_failures": failures, "next_launch_at": next_launch_at,
              "_replicas_before": before,
              "preempted_locations": spot_placer.after_transitions(
                  record.get("preempted_locations") or [], before, replicas)}
    if record.get("down_requested_at"):
        return _down(view, record, replicas, notes, now)
    record = _rollback(record, replicas, notes)
    return _converge(view, record, replicas, notes, now)


def _down(view: View, record: Record, replicas: list[Record], notes: list[str],
          now: float) -> Step:
    actions: list[ServeAction] = []
    going = []
    for r in replicas:
        if r.get("cluster") or not R(r["status"]).is_terminal():
            if r["status"] != R.SHUTTING_DOWN.value and not R(r["status"]).is_terminal():
                r = {**r, "status": R.SHUTTING_DOWN.value, "draining_since": now}
            going.append(r)
    mark = _mark(record, replicas, S.SHUTTING_DOWN, notes, terminate_done=True)
    if going and record.get("ready_ids"):
        actions.append(ServeAction(Act.READY_SET, {"ids": [], "generation":
                                                   int(record.get("generation") or 0) + 1}))
    if going:
        stuck = [r for r in going if r["status"] == R.FAILED_CLEANUP.value]
        if stuck and record.get("purge") and len(stuck) == len(going):
            return Step((mark, ServeAction(Act.STOP_LB), ServeAction(
                Act.REMOVE, reason="purge: forget replicas that could not be torn down")),
                None)
        for r in going:
            if r["replica_id"] not in view.in_flight:
                actions.append(ServeAction(Act.TEARDOWN, {"replica_id": r["replica_id"]},
                                           "service down"))
        return Step((mark, *actions), 0.2)
    return Step((mark, ServeAction(Act.STOP_LB), ServeAction(Act.REMOVE, reason="down")),
                None)


#: The service fields the controller owns (requests own tasks, version, update_mode,
#: down_requested_at, purge, terminate_requested).
CONTROLLER_FIELDS = ("launch_failures", "next_launch_at", "failed_versions", "reason",
                     "stable_version", "serving_version", "target_replicas",
                     "upscale_since", "downscale_since", "uptime_since", "next_replica_id",
                     "preempted_locations")


def _mark(record: Record, replicas: list[Record], status: S, notes: list[str],
          terminate_done: bool = False, **extra: Any) -> ServeAction:
    """``replicas`` as decided; the handler merges only what changed since ``before``
    (a launch finishing meanwhile keeps its fields)."""
    fields = {"replicas": replicas, "status": status.value, **extra}
    for key in CONTROLLER_FIELDS:
        if key in record and key not in fields:
            fields[key] = record[key]
    fields["_replicas_before"] = list(record.get("_replicas_before") or [])
    if terminate_done:
        fields["_terminate_done"] = sorted(record.get("terminate_requested") or [])
    return ServeAction(Act.MARK, fields, "; ".join(notes))


def _converge(view: View, record: Record, replicas: list[Record], notes: list[str],
              now: float) -> Step:
    version = wanted_version(record)
    mode = UpdateMode.of(record.get("update_mode"))
    if version is not None:
        policy = view.policies[version]
        load = autoscale.qps(view.recent, now, policy.qps_window)
        scaled = autoscale.target(policy.scaling, load, record.get("target_replicas"),
                                  record.get("upscale_since"), record.get("downscale_since"),
                                  now)
        if scaled.target != record.get("target_replicas") and record.get(
                "target_replicas") is not None:
            notes.append(f"autoscaler: {scaled.reason}")
        record = {**record, "target_replicas": scaled.target,
                  "upscale_since": scaled.upscale_since,
                  "downscale_since": scaled.downscale_since}
        count = scaled.target + policy.scaling.num_overprovision + _unknown_too_long(
            replicas, version, view.unknown_window, now)
        views = [Replica(r["replica_id"], int(r["version"]), R(r["status"])) for r in replicas]
        plan = rollout(views, version, count, mode, record.get("serving_version"))
        members = fallback.members(replicas, version, policy.mix)
        kinds = fallback.kinds(members, policy.mix, plan.launch)
        if policy.mix.falls_back and not any(r.version != version for r in live_replicas(views)):
            mixed = fallback.split(members, scaled.target, count, policy.mix)
            plan = Rollout(launch=len(mixed.launches), drain=mixed.drain,
                           serving_version=version, reason=mixed.reason)
            kinds = mixed.launches
        if plan.serving_version is not None:
            record["serving_version"] = plan.serving_version
        for rid in plan.drain:
            replicas = [{**r, "status": R.SHUTTING_DOWN.value, "draining_since": now}
                        if r["replica_id"] == rid else r for r in replicas]
            notes.append(f"replica {rid}: drain ({plan.reason})")
        if plan.launch and (record.get("next_launch_at") or 0) <= now:
            next_id = int(record.get("next_replica_id") or 1)
            for n in range(plan.launch):
                replicas.append({"replica_id": next_id + n, "version": version,
                                 "is_spot": kinds[n], "status": R.PENDING.value,
                                 "created_at": now,
                                 "cluster": None, "port": None, "url": None,
                                 "launched_at": None, "first_ready_at": None,
                                 "failing_since": None, "probe_failures": 0})
            record["next_replica_id"] = next_id + plan.launch
            notes.append(f"{plan.reason} (version {version})")
        live = [r for r in replicas if not R(r["status"]).is_terminal()
                and r["status"] != R.SHUTTING_DOWN.value]
        if (not plan.drain and not plan.launch and live
                and all(int(r["version"]) == version and r["status"] == R.READY.value
                        for r in live) and record.get("stable_version") != version):
            record["stable_version"] = version
            notes.append(f"version {version} is ready on every replica")
    return _act(view, record, _prune(replicas), mode, notes, now)


def _unknown_too_long(replicas: list[Record], version: int, window: float,
                      now: float) -> int:
    """UNKNOWN replicas past the window: one more replica each is launched beside them
    (they are still never torn down; one that answers again makes a surplus, drained)."""
    return sum(1 for r in replicas if r["status"] == R.UNKNOWN.value
               and int(r["version"]) == version
               and now - float(r.get("unknown_since") or now) > window)


def _act(view: View, record: Record, replicas: list[Record], mode: UpdateMode,
         notes: list[str], now: float) -> Step:
    actions: list[ServeAction] = []
    status = _status(record, replicas, view.lb_running)
    uptime = record.get("uptime_since") if status is S.READY else None
    record = {**record, "uptime_since": uptime or (now if status is S.READY else None)}
    views = [Replica(r["replica_id"], int(r["version"]), R(r["status"])) for r in replicas]
    ids = ready_ids(views, mode, record.get("serving_version"))
    if ids != list(record.get("ready_ids") or []) or not record.get("generation"):
        actions.append(ServeAction(Act.READY_SET, {"ids": ids, "generation":
                                                   int(record.get("generation") or 0) + 1}))
    waits = [r.probe_period for r in view.policies.values()]
    for r in replicas:
        rid = r["replica_id"]
        if rid in view.in_flight:
            continue
        if r["status"] in (R.PENDING.value, R.PROVISIONING.value):
            actions.append(ServeAction(Act.LAUNCH, {"replica_id": rid},
                                       f"launch replica {rid}"))
        elif r["status"] == R.SHUTTING_DOWN.value or (R(r["status"]).is_terminal()
                                                      and r.get("cluster")):
            wait = float(r.get("draining_since") or 0) + DRAIN_SECONDS - now
            if r["status"] == R.SHUTTING_DOWN.value and wait > 0:
                waits.append(wait)
                continue
            actions.append(ServeAction(Act.TEARDOWN, {"replica_id": rid},
                                       f"tear replica {rid} down"))
    if not view.lb_running:  # last: launches (on their own pool) go first
        actions.append(ServeAction(Act.START_LB, reason="no load balancer runs"))
    if record.get("next_launch_at") and record["next_launch_at"] > now:
        waits.append(record["next_launch_at"] - now)
    mark = _mark(record, replicas, status, notes, terminate_done=True)
    return Step((mark, *actions), max(0.0, min(waits)) if waits else 1.0,
                note="; ".join(notes))
