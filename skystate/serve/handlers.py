"""What each service action does: records first, then the world.

A replica is an ordinary recorded cluster (``managed_by: serve``, the service's user as
owner, or its Project owner for a declarative service) made by
``imperative.provision_with_failover`` and torn down by a DOWN action of the executor,
so ``status``, refresh and leak detection see it. Its program is a job of that cluster,
submitted with an idempotency key per replica, so a controller that died between submit
and record never starts a replica's program twice.

Ports: each local replica gets a free port of its own, given as ``SKYPILOT_SERVE_PORT``
and ``PORT``; a run command that hard-codes the service's declared port has that number
replaced by the replica's port (docs/serve.md says why). Elsewhere a replica listens on
the declared port.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skystate.exceptions import ResourcesUnavailableError, SpecError
from skystate.providers.registry import Providers
from skystate.reconcile import imperative as imp
from skystate.reconcile.executor import retry_if_stale
from skystate.reconcile.store import Store
from skystate.serve import records as rec
from skystate.serve.decide import Act, ServeAction
from skystate.serve.fallback import is_spot, with_spot
from skystate.serve.spot_placer import as_location, location_of, place
from skystate.serve.status import ReplicaStatus as R

Record = dict[str, Any]
MANAGED_BY_SERVE = "serve"
DEFAULT_PORT = 8080
LB_START_SECONDS = 15.0


@dataclass
class ServeContext:
    store: Store
    providers: Providers


def run(ctx: ServeContext, name: str, action: ServeAction) -> str:
    service = ctx.store.service(name)
    if service is None:
        return "the service is no longer recorded"
    return _HANDLERS[action.type](ctx, service, action)


def merge_replicas(stored: list[Record], before: list[Record],
                   after: list[Record]) -> list[Record]:
    """Three-way merge: apply to ``stored`` only the fields the step changed from
    ``before`` to ``after``; replicas the step dropped are dropped, new ones added."""
    old = {r["replica_id"]: r for r in before}
    new_ids = {r["replica_id"] for r in after}
    merged = {r["replica_id"]: dict(r) for r in stored
              if r["replica_id"] in new_ids or r["replica_id"] not in old}
    for replica in after:
        rid, was = replica["replica_id"], old.get(replica["replica_id"])
        if was is None:
            merged.setdefault(rid, dict(replica))
        elif rid in merged:
            merged[rid].update({k: v for k, v in replica.items() if was.get(k) != v})
    return sorted(merged.values(), key=lambda r: r["replica_id"])


def _mark(ctx: ServeContext, service: Record, action: ServeAction) -> str:
    fields = dict(action.fields)
    before = fields.pop("_replicas_before", [])
    done = set(fields.pop("_terminate_done", []) or [])
    after = fields.pop("replicas", None)
    with ctx.store.transaction():
        stored = ctx.store.service(service["name"])
        if stored is None:
            return "the service is no longer recorded"
        if after is not None:
            fields["replicas"] = merge_replicas(stored.get("replicas") or [], before, after)
        if done:
            fields["terminate_requested"] = [i for i in stored.get("terminate_requested")
                                             or [] if i not in done]
        merged = {**stored, **fields}
        if merged == stored:  # steady state: no write, so the state version stays
            return "unchanged"
        ctx.store.put_service(merged)
    return "recorded"


def _start_lb(ctx: ServeContext, service: Record, action: ServeAction) -> str:
    from skystate.serve.lb_process import load_balancer_scheme, start_load_balancer
    from skystate.serve.lb_tls import tls_files

    directory = rec.service_dir(service["name"])
    tasks = service.get("tasks") or {}
    task = tasks.get(str(service.get("serving_version") or service.get("version") or 1))
    pid, port = start_load_balancer(directory, int(service.get("lb_port") or 0),
                                    timeout=LB_START_SECONDS, tls=tls_files(task or {}))
    scheme = load_balancer_scheme(directory)
    rec.update(ctx.store, service["name"], lb_port=port, lb_pid=pid, lb_scheme=scheme)
    return f"load balancer {pid} listens on {scheme}://127.0.0.1:{port}"


def _stop_lb(ctx: ServeContext, service: Record, action: ServeAction) -> str:
    from skystate.serve.lb_process import stop_load_balancer

    stop_load_balancer(rec.serve_root() / service["name"])
    rec.update(ctx.store, service["name"], lb_pid=None)
    return "load balancer stopped"


def _ready_set(ctx: ServeContext, service: Record, action: ServeAction) -> str:
    from skystate.serve.lb_process import ReadyReplica, write_ready_set
    from skystate.serve.policy import policy_of

    ids = list(action.fields["ids"])
    generation = int(action.fields["generation"])
    by_id = {r["replica_id"]: r for r in service.get("replicas") or []}
    ready = [ReadyReplica(replica_id=i, url=by_id[i]["url"], version=int(by_id[i]["version"]),
                          accelerator=_accelerator(ctx, by_id[i].get("cluster")))
             for i in ids if i in by_id and by_id[i].get("url")]
    version = str(service.get("serving_version") or service.get("version") or 1)
    task = (service.get("tasks") or {}).get(version) or {}
    try:
        policy = policy_of(task)
        balancing, weights = policy.load_balancing, policy.qps_per_accelerator
    except ValueError:
        balancing, weights = "least_load", None
    directory = rec.serve_root() / service["name"]
    if not directory.is_dir():  # never re-made here: down removes it
        return "the service folder is gone"
    write_ready_set(directory, balancing, ready, generation, target_qps=weights)
    rec.update(ctx.store, service["name"], ready_ids=[r.replica_id for r in ready],
               generation=generation)
    return f"ready set {generation}: {[r.replica_id for r in ready]}"


def _accelerator(ctx: ServeContext, cluster: str | None) -> str | None:
    """The accelerator a replica's cluster was launched with (``A100:8``), or None."""
    record = ctx.store.cluster(cluster) if cluster else None
    accelerators = ((record or {}).get("offer") or {}).get("accelerators") or {}
    if not isinstance(accelerators, dict) or not accelerators:
        return None
    name, count = next(iter(accelerators.items()))
    return f"{name}:{count:g}" if isinstance(count, (int, float)) else str(name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_run(run: str | None, declared: int | None, port: int) -> str | None:
    """A local replica's run command: the declared port, where it is hard-coded as a
    number of its own, becomes the replica's port."""
    if run is None or declared is None or declared == port:
        return run
    return re.sub(rf"(?<![\w.]){declared}(?![\w.])", str(port), run)


def _launch(ctx: ServeContext, service: Record, action: ServeAction) -> str:
    from skystate.providers.optimizer import rank_offers
    from skystate.serve.policy import policy_of
    from skystate.spec.task import Task

    rid = int(action.fields["replica_id"])
    replica = rec.replica(service, rid)
    if replica is None or replica["status"] not in (R.PENDING.value, R.PROVISIONING.value):
        return f"replica {rid} is no longer waiting to launch"
    config = service["tasks"][str(replica["version"])]
    name = replica.get("cluster") or rec.cluster_name(service["name"], rid)
    replica = rec.update_replica(ctx.store, service["name"], rid, status=R.PROVISIONING.value,
                                 cluster=name, launched_at=time.time()) or replica
    try:
        task = Task.from_yaml_config(config)
        policy = policy_of(config)
        resources = imp.task_resources(task)
        if policy.mix.use_spot:  # this replica's kind (serve/fallback.py)
            resources = with_spot(resources, is_spot(replica, policy.mix))
        offers = rank_offers(resources, task.num_nodes, ctx.providers)
        if not offers:
            raise ValueError(f"no offer can ever satisfy {resources.canonical()}")
        if policy.mix.spot_placer and is_spot(replica, policy.mix):
            offers = _placed(service, rid, offers)
        retry_if_stale(lambda: _ensure_cluster(ctx, service, name, resources, task.num_nodes,
                                       offers))
    except (SpecError, ValueError, ResourcesUnavailableError) as exc:
        return _provision_failed(ctx, service, rid, f"{type(exc).__name__}: {exc}")
    record, agent = imp.up_cluster_agent(name, ctx.providers)
    local = record.get("provider", "local") == "local"
    port = int(replica.get("port") or (free_port() if local else
                                       policy.port or DEFAULT_PORT))
    rec.update_replica(ctx.store, service["name"], rid, port=port)
    head_ips = [n.get("ip", "127.0.0.1") for n in ctx.store.nodes(name)]
    request = imp.job_request_for(task, with_setup=True, head_ips=head_ips,
                                  cluster=record)
    envs = {"SKYPILOT_SERVE_PORT": str(port), "PORT": str(port),
            "SKYPILOT_SERVE_REPLICA_ID": str(rid), "SKYSTATE_SERVICE": service["name"],
            "SKYSTATE_SERVICE_VERSION": str(replica["version"])}
    request = dataclasses.replace(
        request, envs={**request.envs, **envs}, name=f"{service['name']}-replica-{rid}",
        run=local_run(request.run, policy.port, port) if local else request.run,
        submission_id=f"serve-{service['service_id']}-{rid}")
    job_id = agent.submit(request)
    url = f"http://{head_ips[0] if head_ips else '127.0.0.1'}:{port}"
    with ctx.store.transaction():  # compare-and-set: a drain meanwhile wins
        stored = ctx.store.service(service["name"])
        current = rec.replica(stored or {}, rid)
        if current is None:
            return f"replica {rid} was forgotten while it launched"
        fields = {"job_id": job_id, "url": url, "started_at": time.time(),
                  "location": list(location_of(record["offer"])) if record.get("offer")
                  else None}
        if current["status"] == R.PROVISIONING.value:
            fields["status"] = R.STARTING.value
        replicas = [dict(r, **fields) if r["replica_id"] == rid else r
                    for r in stored["replicas"]]  # type: ignore[index]
        ctx.store.put_service({**stored, "replicas": replicas})
    return f"replica {rid} starting on {name} ({url}, job {job_id})"


def _placed(service: Record, rid: int, offers: list[Any]) -> list[Any]:
    """The offers with the spot placer's location first (serve/spot_placer.py)."""
    preempted = [loc for loc in (as_location(p) for p in service.get("preempted_locations")
                                 or []) if loc is not None]
    in_use = [loc for loc in (as_location(r.get("location")) for r in service.get("replicas")
                              or [] if r["replica_id"] != rid and r.get("is_spot")
                              and not R(r["status"]).is_terminal()) if loc is not None]
    return place(offers, preempted, in_use)


def _ensure_cluster(ctx: ServeContext, service: Record, name: str, resources: Any,
                    num_nodes: int, offers: list[Any]) -> None:
    record = ctx.store.cluster(name)
    if record is not None and record.get("status") in ("UP", "STOPPED"):
        imp.ensure_cluster(name, resources, num_nodes, retry_until_up=False,
                           autostop=None, providers=ctx.providers)
        return
    spec = {**imp.sdk_cluster_spec(name, resources, num_nodes, None),
            "managed_by": MANAGED_BY_SERVE, "owner": service.get("owner")
            or service.get("user_name") or imp.current_user()}
    if record is not None:  # INIT: a launch the controller did not finish
        spec["owner"] = record.get("owner") or spec["owner"]
    imp.provision_with_failover(ctx.store, spec, resources, ctx.providers,
                                retry_until_up=False, offers=offers)


def _provision_failed(ctx: ServeContext, service: Record, rid: int, reason: str) -> str:
    from skystate.serve.decide import BACKOFF_BASE, backoff
    from skystate.serve.loop import Settings

    with ctx.store.transaction():
        stored = ctx.store.service(service["name"]) or service
        failures = int(stored.get("launch_failures") or 0) + 1
        delay = backoff(failures, Settings.from_env().backoff_base or BACKOFF_BASE)
        replicas = [dict(r, status=R.FAILED_PROVISION.value, failure_reason=reason,
                         ended_at=time.time()) if r["replica_id"] == rid else r
                    for r in stored.get("replicas") or []]
        ctx.store.put_service({**stored, "replicas": replicas, "launch_failures": failures,
                               "next_launch_at": time.time() + delay})
    return f"replica {rid}: provisioning failed ({reason}); next launch in {delay:.1f}s"


def _teardown(ctx: ServeContext, service: Record, action: ServeAction) -> str:
    from skystate.reconcile.executor import apply_action
    from skystate.reconcile.plan import Action, ActionType
    from skystate.spec.desired import address

    rid = int(action.fields["replica_id"])
    replica = rec.replica(service, rid)
    if replica is None:
        return f"replica {rid} is no longer recorded"
    name = replica.get("cluster")
    record = ctx.store.cluster(name) if name else None
    if record is not None:
        down = Action(type=ActionType.DOWN, kind="Cluster", address=address("Cluster", name),
                      name=name, before=record,
                      reason=f"service {service['name']}: replica {rid} is retired")
        try:
            for outcome in retry_if_stale(lambda: apply_action(down, ctx.store,
                                                       ctx.providers)).outcomes:
                if outcome.error is not None:
                    raise outcome.error
        except Exception as exc:  # noqa: BLE001 - recorded; the next step retries
            rec.update_replica(ctx.store, service["name"], rid,
                               status=R.FAILED_CLEANUP.value,
                               failure_reason=f"teardown failed: {exc}")
            raise
    status = replica["status"]
    final = status if R(status).is_terminal() and status != R.FAILED_CLEANUP.value else None
    if final is None:
        with ctx.store.transaction():
            stored = ctx.store.service(service["name"])
            if stored is not None:
                replicas = [r for r in stored.get("replicas") or [] if r["replica_id"] != rid]
                ctx.store.put_service({**stored, "replicas": replicas})
        return f"replica {rid} torn down ({name or 'no cluster'})"
    rec.update_replica(ctx.store, service["name"], rid, cluster=None)
    return f"replica {rid} ({final}) torn down"


def _remove(ctx: ServeContext, service: Record, action: ServeAction) -> str:
    shutil.rmtree(rec.serve_root() / service["name"], ignore_errors=True)  # first: a
    with ctx.store.transaction():  # down() returns once the record is gone
        ctx.store.delete_service(service["name"])
    return f"service {service['name']} removed"


_HANDLERS: dict[Act, Callable[[ServeContext, Record, ServeAction], str]] = {
    Act.MARK: _mark,
    Act.START_LB: _start_lb,
    Act.STOP_LB: _stop_lb,
    Act.READY_SET: _ready_set,
    Act.LAUNCH: _launch,
    Act.TEARDOWN: _teardown,
}
_HANDLERS[Act.REMOVE] = _remove
