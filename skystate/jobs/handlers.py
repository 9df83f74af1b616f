"""What each job action does: records first, then the cluster, through reconcile.

A job's cluster is an ordinary recorded cluster (``managed_by: jobs``, the job's user as
owner, a safety autodown) made by ``imperative.provision_with_failover`` and torn down by
a DOWN action of the executor, so ``status``, refresh and leak detection see it.
Submitting carries an idempotency key per attempt, so a controller that died between
submit and record never runs an attempt twice.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skystate.exceptions import ResourcesUnavailableError, SpecError
from skystate.jobs import records as rec
from skystate.jobs.decide import Act, JobAction, Settings
from skystate.jobs.pipeline import task_env_id
from skystate.jobs.recovery import EAGER_NEXT_REGION, policy_of
from skystate.jobs.status import ManagedJobStatus as S
from skystate.providers.base import Offer
from skystate.providers.registry import Providers
from skystate.reconcile import imperative as imp
from skystate.reconcile.executor import retry_if_stale
from skystate.reconcile.store import Store

Record = dict[str, Any]
MANAGED_BY_JOBS = "jobs"


@dataclass
class JobContext:
    store: Store
    providers: Providers
    settings: Settings


def run(ctx: JobContext, job_id: int, action: JobAction) -> str:
    job = ctx.store.managed_job(job_id)
    if job is None:
        return "the job is no longer recorded"
    return _HANDLERS[action.type](ctx, job, action)


def _mark(ctx: JobContext, job: Record, action: JobAction) -> str:
    fields = dict(action.fields)
    ended = fields.pop("_attempt", None)
    if ended:
        attempts = [dict(a) for a in job.get("attempts") or []]
        if attempts:
            attempts[-1].update(ended)
        fields["attempts"] = attempts
    rec.update(ctx.store, job["job_id"], **fields)
    return "recorded"


def safety_autodown() -> Record:
    """Down the cluster by itself once idle this long, should the controller be gone."""
    minutes = int(os.environ.get("SKYSTATE_JOBS_SAFETY_AUTODOWN_MINUTES", "60") or 60)
    return {"idle_minutes": minutes, "down": True, "wait_for": "jobs_and_ssh"}


def ordered_offers(offers: list[Offer], strategy: str, last_region: str | None) -> list[Offer]:
    """EAGER_NEXT_REGION: other regions first; FAILOVER: the last region first."""
    if not last_region:
        return offers
    same = [o for o in offers if o.region == last_region]
    other = [o for o in offers if o.region != last_region]
    return [*other, *same] if strategy == EAGER_NEXT_REGION else [*same, *other]


def _launch(ctx: JobContext, job: Record, action: JobAction) -> str:
    from skystate.providers.optimizer import rank_offers
    from skystate.spec.task import Task

    job_id, attempt = job["job_id"], job["attempt"]
    name = job.get("cluster") or rec.cluster_name(job_id, attempt)
    first = not job.get("recovery_count")  # the task's first attempt (not a recovery)
    attempts = [dict(a) for a in job.get("attempts") or []]
    if not attempts or attempts[-1]["attempt"] != attempt:
        attempts.append({"attempt": attempt, "cluster": name, "launched_at": time.time(),
                         "task_index": int(job.get("task_index") or 0),
                         "log": str(rec.attempt_log(job_id, attempt))})
    job = rec.update(ctx.store, job_id, cluster=name, attempts=attempts,
                     status=(S.STARTING if first else S.RECOVERING).value)
    try:
        task = Task.from_yaml_config(job["task"])
        policy = policy_of(job["task"])
        resources = imp.task_resources(task)
        offers = rank_offers(resources, task.num_nodes, ctx.providers)
    except (SpecError, ValueError) as exc:
        return _precheck_failed(ctx, job, f"the task is invalid: {exc}")
    if not offers:
        return _end(ctx, job, S.FAILED_NO_RESOURCE, f"no offer can ever satisfy "
                                                    f"{resources.canonical()} "
                                                    f"x{task.num_nodes}")
    offers = ordered_offers(offers, policy.strategy, job.get("avoid_region"))
    try:
        retry_if_stale(lambda: _ensure_cluster(ctx, name, resources, task.num_nodes, offers))
    except ResourcesUnavailableError as exc:
        return _no_capacity(ctx, job, exc)
    record, agent = imp.up_cluster_agent(name, ctx.providers)
    head_ips = [n.get("ip", "127.0.0.1") for n in ctx.store.nodes(name)]
    mounts = imp.staged_file_mounts(task, record, ctx.store, ctx.providers.config)
    request = imp.job_request_for(task, with_setup=True, head_ips=head_ips,
                                  file_mounts=mounts, cluster=record)
    env_id = task_env_id(job)
    task_id = {"SKYPILOT_TASK_ID": env_id, "SKYSTATE_TASK_ID": env_id,
               "SKYPILOT_MANAGED_JOB_ID": str(job_id)}
    request = dataclasses.replace(request, envs={**request.envs, **task_id},
                                  submission_id=f"managed-{job_id}-{attempt}")
    cluster_job_id = agent.submit(request)
    offer = record.get("offer") or {}
    attempts[-1].update({"started_at": time.time(), "region": offer.get("region"),
                         "hourly_price": float(offer.get("hourly_price") or 0.0)
                         * int(record.get("num_nodes") or 1)})
    rec.update(ctx.store, job_id, phase=rec.PHASE_WATCH, status=S.RUNNING.value,
               cluster_job_id=cluster_job_id, start_at=job.get("start_at") or time.time(),
               region=offer.get("region"), cluster_resources=_resources_str(record),
               provider=record.get("provider"),
               launch_failures=0, next_attempt_at=None, failure_reason=None,
               attempts=attempts)
    return f"attempt {attempt} running as job {cluster_job_id} on {name}"


def _ensure_cluster(ctx: JobContext, name: str, resources: Any, num_nodes: int,
                    offers: list[Offer]) -> None:
    record = ctx.store.cluster(name)
    if record is not None and record.get("status") in ("UP", "STOPPED"):
        imp.ensure_cluster(name, resources, num_nodes, retry_until_up=False,
                           autostop=None, providers=ctx.providers)
        return
    spec = {**imp.sdk_cluster_spec(name, resources, num_nodes, safety_autodown()),
            "managed_by": MANAGED_BY_JOBS}
    if record is not None:  # INIT: a launch the controller did not finish
        spec["owner"] = record.get("owner") or spec["owner"]
    imp.provision_with_failover(ctx.store, spec, resources, ctx.providers,
                                retry_until_up=False, offers=offers)


def rerecord(store: Store, providers: Providers, job: Record) -> Record | None:
    """The job's cluster when its record is gone (a state restored from a backup, a
    record dropped while the controller was down) but its provider still runs it:
    recorded again from its tags (adopted), so the job is watched, not relaunched. None
    when the provider answers without it; raises when the provider does not answer."""
    from skystate.providers.base import NodeState
    from skystate.reconcile.adopt import adopted_record
    from skystate.reconcile.handles import node_records

    name, provider_name = job["cluster"], job.get("provider")
    if not provider_name:
        return None
    provider = providers.get(str(provider_name))
    found = [o for o in provider.observe([name]) if o.name == name]
    if not found or found[0].state is NodeState.TERMINATED:
        return None
    record = adopted_record(found[0], provider_config=providers.config.get(provider_name) or {},
                            desired_view=None, project_owner=None)
    record = {**record, "managed_by": MANAGED_BY_JOBS}
    with store.transaction():
        if store.cluster(name) is None:
            store.put_cluster(record)
            store.set_nodes(name, node_records(found[0]))
            store.add_event(f"Cluster/{name}", "managed-job", "adopted",
                            f"managed job {job['job_id']} still runs on it")
    return store.cluster(name)


def _resources_str(record: Record) -> str:
    from skystate.reconcile.status_rows import resources_str

    return str(resources_str(record))


def _precheck_failed(ctx: JobContext, job: Record, reason: str) -> str:
    return _end(ctx, job, S.FAILED_PRECHECKS, reason)


def _end(ctx: JobContext, job: Record, status: S, reason: str) -> str:
    rec.update(ctx.store, job["job_id"], phase=rec.PHASE_RETIRE, then="end",
               end_status=status.value, failure_reason=reason)
    return f"{status.value}: {reason}"


def launch_retries() -> int:
    """How many capacity failures end a task's first launch in FAILED_NO_RESOURCE
    (SkyPilot's ``max_retry`` of 3); a recovery retries until it gets capacity."""
    try:
        return max(1, int(os.environ.get("SKYSTATE_JOBS_LAUNCH_RETRIES", "") or 3))
    except ValueError:
        return 3


def _no_capacity(ctx: JobContext, job: Record, exc: Exception) -> str:
    failures = int(job.get("launch_failures") or 0) + 1
    recovering = bool(job.get("recovery_count"))
    if not recovering and failures >= launch_retries():
        rec.update(ctx.store, job["job_id"], cluster=None, launch_failures=failures)
        return _end(ctx, {**job, "cluster": None}, S.FAILED_NO_RESOURCE,
                    f"no capacity after {failures} launch tries: {exc}")
    delay = ctx.settings.backoff(failures)
    waiting = S.RECOVERING if recovering else S.PENDING
    reason = f"no capacity (try {failures}): {exc}; retrying in {delay:.0f}s"
    rec.update(ctx.store, job["job_id"], phase=rec.PHASE_LAUNCH, cluster=None,
               status=waiting.value, launch_failures=failures,
               next_attempt_at=time.time() + delay, failure_reason=reason)
    return reason


def _sync_log(ctx: JobContext, job: Record, action: JobAction) -> str:
    """Append what is new in the attempt's log on its cluster (best effort)."""
    name, cluster_job_id = job.get("cluster"), job.get("cluster_job_id")
    if not name or cluster_job_id is None:
        return "nothing to copy"
    try:
        _, agent = imp.up_cluster_agent(name, ctx.providers)
        data = agent.read_log(int(cluster_job_id)).encode()
    except Exception as exc:  # noqa: BLE001 - a gone cluster keeps what was copied
        return f"log not copied ({type(exc).__name__})"
    path = rec.attempt_log(job["job_id"], job["attempt"])
    path.parent.mkdir(parents=True, exist_ok=True)
    have = path.stat().st_size if path.exists() else 0
    if len(data) > have:
        with open(path, "ab") as handle:
            handle.write(data[have:])
    return f"log copied ({len(data)} bytes)"


def _teardown(ctx: JobContext, job: Record, action: JobAction) -> str:
    from skystate.reconcile.executor import apply_action
    from skystate.reconcile.plan import Action, ActionType
    from skystate.spec.desired import address

    name = str(action.fields["cluster"])
    record = ctx.store.cluster(name)
    if record is None:
        return f"{name} already gone"
    down = Action(type=ActionType.DOWN, kind="Cluster", address=address("Cluster", name),
                  name=name, before=record, reason=f"managed job {job['job_id']}: "
                                                   f"attempt {job['attempt']} is over")
    for outcome in retry_if_stale(lambda: apply_action(down, ctx.store, ctx.providers)).outcomes:
        if outcome.error is not None:
            raise outcome.error
    return f"{name} torn down"


_HANDLERS: dict[Act, Callable[[JobContext, Record, JobAction], str]] = {
    Act.MARK: _mark,
    Act.LAUNCH: _launch,
    Act.SYNC_LOG: _sync_log,
    Act.TEARDOWN: _teardown,
}
