"""What each action does: provider calls, and a store record of every step.

Every handler records intent before it acts and the outcome after, so a crash at any
point leaves a record the next plan continues from (an INIT cluster is provisioned
again; providers are idempotent by tags, so that never makes a second cluster).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skystate.exceptions import NotSupportedError, ProviderError, ResourcesUnavailableError
from skystate.providers.base import (
    ClusterAgent,
    ClusterObservation,
    JobRequest,
    NodeState,
    Offer,
    ProvisionRequest,
)
from skystate.providers.phases import phase
from skystate.providers.registry import Providers
from skystate.reconcile import storage_mounts
from skystate.reconcile.adopt import ownership_labels
from skystate.reconcile.fitting import option_on
from skystate.reconcile.handles import node_records, observation_of
from skystate.reconcile.job_outcomes import jobs_to_watch, read_job_statuses, record_job_statuses
from skystate.reconcile.outcomes import Observation
from skystate.reconcile.plan import Action, ActionType
from skystate.reconcile.store import Store
from skystate.reconcile.users import current_user
from skystate.spec.resources import Resources, quantity_bounds

Record = dict[str, Any]


@dataclass
class HandlerContext:
    store: Store
    providers: Providers
    lock: threading.Lock
    observations: list[Observation] = field(default_factory=list)

    def observe_after(self, action: Action, wait: Callable[[], str]) -> None:
        """Leave a wait for after the state lock is released: a handler records its
        intent under the lock, and waiting for the world to act on it is an observation
        (``engine.observe_after_lock``), so other writers are not blocked meanwhile."""
        with self.lock:
            self.observations.append(Observation(action, wait))

    def write(self, change: Callable[[Store], None]) -> None:
        with self.lock, self.store.transaction():
            change(self.store)

    def cluster(self, name: str) -> Record | None:
        with self.lock:
            return self.store.cluster(name)

    def agent(self, name: str) -> ClusterAgent:
        with self.lock:
            record = self.store.cluster(name)
            nodes = self.store.nodes(name)
        if record is None:
            raise ProviderError(f"cluster {name!r} is not recorded")
        return self.providers.of_record(record).agent(observation_of(record, nodes))


def run_action(ctx: HandlerContext, action: Action) -> str:
    """Do one action; returns a short past-tense outcome for people."""
    if action.kind == "ManagedJob":
        from skystate.reconcile.managed_job_plan import apply_managed_job

        return apply_managed_job(ctx, action)
    handler = _HANDLERS.get(action.type) or _handler_of_layer_above(action.type)
    if handler is None:
        raise NotSupportedError(f"{action.type.value} is not supported by this version")
    return handler(ctx, action)


Handler = Callable[[HandlerContext, Action], str]

# Actions whose handlers belong to a layer above reconcile: the module named here
# registers them (``register_handler``) when it is imported, which happens the first time
# a plan has such an action, so reconcile never imports that layer itself.
_HANDLER_MODULES = {
    ActionType.SERVE_UP: "skystate.serve.declarative",
    ActionType.SERVE_UPDATE: "skystate.serve.declarative",
    ActionType.SERVE_DOWN: "skystate.serve.declarative",
}


def register_handler(action_type: ActionType, handler: Handler) -> None:
    _HANDLERS[action_type] = handler


def _handler_of_layer_above(action_type: ActionType) -> Handler | None:
    module = _HANDLER_MODULES.get(action_type)
    if module is None:
        return None
    import importlib

    importlib.import_module(module)
    return _HANDLERS.get(action_type)


# --- clusters ----------------------------------------------------------------------


def _create(ctx: HandlerContext, action: Action) -> str:
    """Provision on the plan's offer, else on its failover offers in order; then set up.

    Capacity, quota and access errors of ``provision`` move on to the next offer (the
    provider cleans up what a failed fresh provision made); a transient error does not,
    so the cluster is retried where the plan put it instead of wandering off on a blip.
    """
    if not action.offer:
        raise ResourcesUnavailableError(f"{action.address}: the plan chose no offer")
    spec = dict(action.after or {})
    history: list[Exception] = []
    for offer_dict in (action.offer, *action.failover_offers):
        offer = Offer.from_dict(offer_dict)
        try:
            provider, observation = _provision_on(ctx, spec, offer)
        except (ResourcesUnavailableError, ProviderError) as exc:
            if isinstance(exc, ProviderError) and exc.transient:
                raise
            history.append(exc)
            continue
        status = _set_up(ctx, spec, provider, observation)
        tried = (f" after {len(history)} failed offer(s): " + "; ".join(map(str, history))
                 if history else "")
        return f"created on {offer.infra} ({status}){tried}"
    if len(history) == 1:
        raise history[0]  # one offer (the SDK's failover loop hands them one by one)
    raise ResourcesUnavailableError(
        f"{action.address}: every offer failed ({len(history)}); last: {history[-1]}",
        failover_history=history)


def _provision_on(ctx: HandlerContext, spec: dict[str, Any], offer: Offer) -> tuple[Any, Any]:
    """Record the intent (INIT, with this offer), then provision; nodes recorded."""
    now = time.time()
    ctx.write(lambda s: s.put_cluster({
        **spec, "status": "INIT", "provider": offer.provider, "offer": offer.to_dict(),
        "launched_at": now, "status_updated_at": now, "stopped_by_autostop": False,
        "last_error": None, "user_name": current_user(),
        "provider_config": ctx.providers.config.get(offer.provider) or {},
    }))
    provider = ctx.providers.get(offer.provider)
    resources = spec.get("resources") or {}
    observation = provider.provision(ProvisionRequest(
        cluster_name=spec["name"], owner=spec["owner"], offer=offer,
        num_nodes=spec["num_nodes"], disk_size=resources.get("disk_size"),
        ports=tuple(resources.get("ports") or ()),
        labels={**(resources.get("labels") or {}),
                **ownership_labels(spec, current_user(), now)},  # rebuild reads them
        image_id=resources.get("image_id") if isinstance(resources.get("image_id"), str)
        else None,
    ))
    ctx.write(lambda s: s.set_nodes(spec["name"], node_records(observation)))
    return provider, observation


def _set_up(ctx: HandlerContext, spec: dict[str, Any], provider: Any, observation: Any) -> str:
    agent = provider.agent(observation)
    _apply_autostop(agent, spec.get("autostop"))
    _run_cluster_setup(ctx, agent, spec)
    status = "UP"
    if spec.get("power") == "stopped":
        observation = provider.stop(spec["name"], spec["owner"])
        status = "STOPPED"
    _record_status(ctx, spec["name"], status, observation_nodes=node_records(observation))
    return status


def _replace(ctx: HandlerContext, action: Action) -> str:
    _down(ctx, action)
    return "replaced: " + _create(ctx, action)


def _start(ctx: HandlerContext, action: Action) -> str:
    record = ctx.cluster(action.name) or action.before or {}
    provider = ctx.providers.of_record(record)
    observation = provider.start(action.name, record["owner"])
    _record_status(ctx, action.name, "UP", observation_nodes=node_records(observation))
    spec = {**record, **(action.after or {})}
    # what changed while the cluster was stopped is applied now
    agent = provider.agent(observation)
    _apply_autostop(agent, spec.get("autostop"))
    if spec.get("setup_pending") or (record.get("mutable_hash") != spec.get("mutable_hash")):
        _run_cluster_setup(ctx, agent, spec)
    _record_spec(ctx, action.name, {**(action.after or {}), "setup_pending": False})
    return "started"


def _stop(ctx: HandlerContext, action: Action) -> str:
    record = ctx.cluster(action.name) or action.before or {}
    provider = ctx.providers.of_record(record)
    _record_job_outcomes(ctx, action.name)  # a stopped cloud instance cannot be read
    observation = provider.stop(action.name, record["owner"])
    _record_status(ctx, action.name, "STOPPED", observation_nodes=node_records(observation))
    _record_job_outcomes(ctx, action.name, observation)  # local/ssh: what the stop ended
    if action.after:
        pending = record.get("mutable_hash") != action.after.get("mutable_hash")
        _record_spec(ctx, action.name, {**action.after, "setup_pending": pending or bool(
            record.get("setup_pending"))})
    return "stopped"


def _down(ctx: HandlerContext, action: Action) -> str:
    record = ctx.cluster(action.name) or action.before
    if record is None:
        return "already gone"
    provider = ctx.providers.of_record(record)
    provider.terminate(action.name, record["owner"])
    ctx.write(lambda s: s.delete_cluster(action.name))
    deleted = storage_mounts.release(action.name, store=ctx.store, lock=ctx.lock,
                                     providers_config=ctx.providers.config)
    return "torn down" + (f" (deleted bucket(s) {', '.join(deleted)})" if deleted else "")


def _update(ctx: HandlerContext, action: Action) -> str:
    spec = dict(action.after or {})
    record = ctx.cluster(action.name) or {}
    if record.get("status") != "UP":  # setup runs when the cluster starts again
        pending = record.get("mutable_hash") != spec.get("mutable_hash")
        _record_spec(ctx, action.name, {**spec, "setup_pending": pending or bool(
            record.get("setup_pending"))})
        return "recorded; setup runs when the cluster starts"
    agent = ctx.agent(action.name)
    done = []
    if record.get("autostop") != spec.get("autostop"):
        _apply_autostop(agent, spec.get("autostop"))
        done.append("autostop set")
    if record.get("mutable_hash") != spec.get("mutable_hash") and _has_node_work(spec):
        _run_cluster_setup(ctx, agent, spec)
        done.append("setup re-run")
    _record_spec(ctx, action.name, spec)
    return "updated in place" + (f" ({', '.join(done)})" if done else "")


def _set_autostop(ctx: HandlerContext, action: Action) -> str:
    spec = dict(action.after or {})
    record = ctx.cluster(action.name) or {}
    if record.get("status") == "UP":
        _apply_autostop(ctx.agent(action.name), spec.get("autostop"))
    _record_spec(ctx, action.name, spec)
    autostop = spec.get("autostop")
    return f"autostop {autostop['idle_minutes']} min" if autostop else "autostop cancelled"


def _apply_autostop(agent: ClusterAgent, autostop: Record | None) -> None:
    if autostop:
        agent.set_autostop(autostop["idle_minutes"], autostop["down"], autostop["wait_for"])
    else:
        agent.set_autostop(-1, False, "jobs_and_ssh")


def _has_node_work(spec: Record) -> bool:
    """A setup to run, or a workdir / file mounts to put on the nodes."""
    return bool(spec.get("setup") or spec.get("workdir") or spec.get("file_mounts"))


def _run_cluster_setup(ctx: HandlerContext, agent: ClusterAgent, spec: Record) -> None:
    """Sync the workdir and file mounts (storage mounts staged as a job's are), then run
    the setup, on every node."""
    if not _has_node_work(spec):
        return
    mounts = storage_mounts.stage(
        spec.get("file_mounts"), cluster=spec["name"],
        owner=str(spec.get("owner") or current_user()), store=ctx.store, lock=ctx.lock,
        providers_config=ctx.providers.config)
    name, nodes = spec["name"], spec.get("num_nodes") or 1
    what = "setup" if spec.get("setup") else "file sync"
    with phase(f"Cluster {name}: {what} on {nodes} node(s)",
               done=lambda: f"Cluster {name}: {what} done"):
        code = agent.run_setup(spec.get("setup") or "true", spec.get("envs") or {},
                               spec.get("workdir"), mounts)
        if code != 0:  # raised inside: no "done" line
            ctx.write(lambda s: s.put_cluster({**(s.cluster(name) or spec),
                                               "last_error": f"setup exited with {code}"}))
            raise ProviderError(f"Cluster/{name}: setup exited with code {code}")


def _record_status(ctx: HandlerContext, name: str, status: str,
                   observation_nodes: list[Record] | None = None) -> None:
    def change(store: Store) -> None:
        record = store.cluster(name)
        if record is None:
            return
        store.put_cluster({**record, "status": status, "status_updated_at": time.time(),
                           "stopped_by_autostop": False, "last_error": None})
        if observation_nodes is not None:
            store.set_nodes(name, observation_nodes)

    ctx.write(change)


def _record_job_outcomes(ctx: HandlerContext, name: str,
                         observation: ClusterObservation | None = None) -> None:
    """Best effort: the cluster's job table, read now, into its job records."""
    with ctx.lock:
        record = ctx.store.cluster(name)
        watched = jobs_to_watch(ctx.store.jobs(name))
        nodes = ctx.store.nodes(name)
    if record is None or name not in watched:
        return
    try:
        statuses = read_job_statuses(record, ctx.providers, observation, nodes)
    except Exception:  # noqa: BLE001 - unreadable: the last observed statuses stay
        return
    ctx.write(lambda s: record_job_statuses(s, name, statuses))


def _record_spec(ctx: HandlerContext, name: str, spec: Record) -> None:
    def change(store: Store) -> None:
        record = store.cluster(name) or {}
        store.put_cluster({**record, **spec})

    ctx.write(change)


# --- jobs --------------------------------------------------------------------------


def _submit_job(ctx: HandlerContext, action: Action) -> str:
    spec = dict(action.after or {})
    cluster = action.cluster or spec["cluster"]
    _ensure_cluster_running(ctx, cluster)
    ctx.write(lambda s: s.put_job({**spec, "status": "INIT", "job_id": None,
                                   "submitted_at": time.time()}))
    agent = ctx.agent(cluster)
    task = {**(spec.get("task") or {}), "secrets": _job_secrets(spec)}
    record = ctx.cluster(cluster) or {}
    owner = record.get("owner") or spec.get("owner") or current_user()
    task["file_mounts"] = storage_mounts.stage(
        task.get("file_mounts"), cluster=cluster, owner=str(owner), store=ctx.store,
        lock=ctx.lock, providers_config=ctx.providers.config)
    job_id = agent.submit(job_request(
        task, name=spec["name"], username=current_user(), cluster=record,
        submission_id=f"{spec.get('owner')}:{spec['name']}:{spec.get('spec_hash')}"))
    log_path = agent.log_path(job_id)
    ctx.write(lambda s: s.put_job({**spec, "status": "PENDING", "job_id": job_id,
                                   "submitted_at": time.time(), "log_path": log_path}))
    return f"submitted as job {job_id} on {cluster}"


def _job_secrets(spec: Record) -> dict[str, str]:
    """A declarative job's secrets, read from its state directory now (never recorded)."""
    names = list((spec.get("task") or {}).get("secrets") or {})
    if not names:
        return {}
    from skystate.reconcile.desired_views import job_task_view
    from skystate.reconcile.engine import load_desired

    where = f"Job/{spec['cluster']}/{spec['name']}"
    source = spec.get("secrets_from")
    if not source:
        raise ProviderError(f"{where}: its secrets ({', '.join(names)}) are not in the plan "
                            "and it names no state directory to read them from")
    job = load_desired(source).jobs.get((spec["cluster"], spec["name"]))
    secrets = (job_task_view(job).get("secrets") or {}) if job is not None else {}
    missing = [n for n in names if n not in secrets]
    if missing:
        raise ProviderError(f"{where}: secrets {', '.join(missing)} are no longer in {source}; "
                            "plan again")
    return {k: str(v) for k, v in secrets.items()}


def _cancel_job(ctx: HandlerContext, action: Action) -> str:
    record = action.before or {}
    cluster = action.cluster or record.get("cluster", "")
    cluster_record = ctx.cluster(cluster)
    cancelled: list[int] = []
    if cluster_record and cluster_record.get("status") == "UP" and record.get("job_id"):
        cancelled = ctx.agent(cluster).cancel([int(record["job_id"])])
    ctx.write(lambda s: s.delete_job(cluster, action.name))
    return f"cancelled job {record.get('job_id')}" if cancelled else "record dropped"


def _ensure_cluster_running(ctx: HandlerContext, name: str) -> None:
    """A cluster stopped by its autostop behind our back starts again for a job."""
    record = ctx.cluster(name)
    if record is None:
        raise ProviderError(f"cluster {name!r} is not recorded")
    provider = ctx.providers.of_record(record)
    seen = provider.observe([name])
    state = seen[0].state if seen else NodeState.TERMINATED
    if state is NodeState.RUNNING:
        return
    if state is NodeState.TERMINATED:
        raise ProviderError(f"cluster {name!r} no longer exists; run `skystate plan --refresh`")
    observation = provider.start(name, record["owner"])
    _record_status(ctx, name, "UP", observation_nodes=node_records(observation))


def job_request(task: Record, *, name: str | None, username: str,
                submission_id: str | None = None, cluster: Record | None = None) -> JobRequest:
    """A task in its JSON form (a job view's ``task``) as the runtime agent takes it; of a
    choice of resources, the one ``cluster`` (its record) serves (``fitting.option_on``)."""
    resources = task.get("resources") or {}
    if resources.get("any_of") or resources.get("ordered"):
        record = cluster or {}
        resources = option_on([Resources.model_validate(resources)], record.get("offer"),
                              int(record.get("num_nodes", 1)),
                              int(task.get("num_nodes") or 1)).canonical()
    cpus, _ = quantity_bounds(resources.get("cpus"))
    secrets = {str(k): str(v) for k, v in (task.get("secrets") or {}).items()}
    envs = {k: v for k, v in (task.get("envs") or {}).items() if k not in secrets}
    workdir = task.get("workdir") if isinstance(task.get("workdir"), str) else None
    mounts = dict(task.get("file_mounts") or {})
    if storage_mounts.mounts_of(mounts):  # never dropped: staged first (storage_mounts.stage)
        raise NotSupportedError(f"file_mounts {', '.join(sorted(mounts))}: storage mounts "
                                "and bucket URIs are not supported here")
    return JobRequest(
        name=name, run=task.get("run"), setup=task.get("setup"), envs=envs, secrets=secrets,
        workdir=workdir, file_mounts=mounts, num_nodes=int(task.get("num_nodes") or 1),
        cpus=cpus, accelerators={k: v if float(v) < 1 else int(v)  # {T4: 0.1}: a share
                                 for k, v in (resources.get("accelerators") or {}).items()},
        username=username, submission_id=submission_id,
    )


def _noop(ctx: HandlerContext, action: Action) -> str:
    return "unchanged"


_HANDLERS: dict[ActionType, Handler] = {
    ActionType.CREATE: _create,
    ActionType.REPLACE: _replace,
    ActionType.START: _start,
    ActionType.STOP: _stop,
    ActionType.DOWN: _down,
    ActionType.UPDATE: _update,
    ActionType.SET_AUTOSTOP: _set_autostop,
    ActionType.SUBMIT_JOB: _submit_job,
    ActionType.CANCEL_JOB: _cancel_job,
    ActionType.NOOP: _noop,
}
