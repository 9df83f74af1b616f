"""The SkyPilot-style imperative calls (launch, exec, queue, cancel, autostop, ...).

Cluster changes still go through plan actions and the executor, under the state lock,
so an SDK launch is recorded and crash-safe exactly like an apply. Clusters launched
here are recorded ``managed_by: sdk`` and are never pruned by a state directory.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

from skystate.enums import OptimizeTarget
from skystate.exceptions import (
    ClusterDoesNotExist,
    ClusterNotUpError,
    InvalidClusterNameError,
    NoCloudAccessError,
    NotSupportedError,
    ProviderError,
    ResourcesMismatchError,
    ResourcesUnavailableError,
)
from skystate.providers.base import ClusterAgent, JobRequest, Offer
from skystate.providers.registry import Providers
from skystate.reconcile import storage_mounts
from skystate.reconcile.desired_views import MANAGED_BY_SDK
from skystate.reconcile.executor import apply_action
from skystate.reconcile.fitting import fits, option_on
from skystate.reconcile.handlers import job_request
from skystate.reconcile.handles import ResourceHandle, observation_of
from skystate.reconcile.plan import Action, ActionType
from skystate.reconcile.store import Store, group_nodes, read_snapshot
from skystate.reconcile.users import (  # noqa: F401 - REQUEST_USER, user_hash: re-exported
    REQUEST_USER,
    check_cluster_owner,
    current_user,
    user_hash,
)
from skystate.spec.desired import address, spec_hash
from skystate.spec.documents import CLUSTER_NAME
from skystate.spec.home_config import home_providers_config
from skystate.spec.resources import Resources
from skystate.spec.task import Task

Record = dict[str, Any]


def check_cluster_name(name: str) -> None:
    if not CLUSTER_NAME.match(name):
        raise InvalidClusterNameError(
            f"cluster name {name!r} is invalid: use lowercase letters, digits and '-', "
            "starting with a letter, at most 63 characters")


def generate_cluster_name() -> str:
    user = re.sub(r"[^a-z0-9-]", "", current_user().lower())[:20] or "user"
    return f"sky-{hashlib.md5(str(time.time_ns()).encode()).hexdigest()[:4]}-{user}"


def task_resources(task: Task) -> Resources:
    """A task's resources as one request (several become ``any_of``/``ordered``)."""
    items = list(task.resources)
    if len(items) == 1:
        return items[0]
    key = "ordered" if isinstance(task.resources, list) else "any_of"
    return Resources.model_validate({key: [r.model_dump(exclude_none=True) for r in items]})


# --- reading the recorded state ---------------------------------------------------


def cluster_record(name: str) -> tuple[Record, list[Record]]:
    tables = read_snapshot()
    record = next((c for c in tables.get("clusters", []) if c["name"] == name), None)
    if record is None:
        raise ClusterDoesNotExist(f"cluster {name!r} does not exist")
    return record, group_nodes(tables.get("nodes", [])).get(name, [])


def owned_cluster_record(name: str) -> tuple[Record, list[Record]]:
    """``cluster_record`` of a cluster the requesting user may change (or raise
    ``ClusterOwnerIdentityMismatchError``)."""
    record, nodes = cluster_record(name)
    check_cluster_owner(record)
    return record, nodes


def up_cluster_agent(name: str, providers: Providers | None = None, *,
                     owned: bool = False) -> tuple[Record, ClusterAgent]:
    """The agent of an UP cluster; ``owned``: only if the requesting user may change it."""
    record, nodes = owned_cluster_record(name) if owned else cluster_record(name)
    return record, _agent_of_up(record, nodes, providers)


def _agent_of_up(record: Record, nodes: list[Record],
                 providers: Providers | None = None) -> ClusterAgent:
    if record.get("status") != "UP":
        raise ClusterNotUpError(f"cluster {record['name']!r} is {record.get('status')}, not UP",
                                cluster_status=record.get("status"))
    return (providers or Providers()).of_record(record).agent(observation_of(record, nodes))


def is_up(name: str) -> bool:
    try:
        return cluster_record(name)[0].get("status") == "UP"
    except ClusterDoesNotExist:
        return False


def handle_of(name: str) -> ResourceHandle:
    record, nodes = cluster_record(name)
    return ResourceHandle.from_records(record, nodes)


# --- launch -----------------------------------------------------------------------


def sdk_cluster_spec(name: str, resources: Resources, num_nodes: int,
                     autostop: Record | None) -> Record:
    immutable = {"resources": resources.canonical(), "num_nodes": num_nodes}
    mutable = {"setup": None, "workdir": None, "file_mounts": None, "envs": None}
    return {"name": name, "owner": current_user(), "managed_by": MANAGED_BY_SDK,
            "resources": immutable["resources"], "num_nodes": num_nodes, "power": "up",
            "autostop": autostop, "protect": False, **mutable,
            "immutable_hash": spec_hash(immutable), "mutable_hash": spec_hash(mutable)}


def _run_one(store: Store, action: Action, providers: Providers) -> None:
    """Apply one action and re-raise its own exception on failure."""
    for outcome in apply_action(action, store, providers).outcomes:
        if outcome.error is not None:
            raise outcome.error


def provision_with_failover(store: Store, spec: Record, resources: Resources,
                            providers: Providers, retry_until_up: bool,
                            target: OptimizeTarget = OptimizeTarget.COST,
                            offers: Sequence[Offer] | None = None) -> Record:
    """Create the cluster on the first offer that works (``offers``: in this order,
    instead of the optimizer's ranking)."""
    from skystate.providers.optimizer import (
        describe_failover,
        rank_offers,
        without_infra,
    )

    if offers is None:
        offers = rank_offers(resources, spec["num_nodes"], providers, target=target)
    if not offers:
        raise no_offer_error(spec["name"], resources, providers)
    if without_infra(resources):
        print(f"No infra given: {providers.enabled().describe()}; best offers: "
              f"{describe_failover(offers, limit=3)}", flush=True)
    delay = 1.0
    while True:
        history: list[Exception] = []
        for offer in offers:
            try:
                _create(store, spec, offer, providers)
                return store.cluster(spec["name"]) or spec
            except (ResourcesUnavailableError, ProviderError) as exc:  # next offer
                history.append(exc)
        if not retry_until_up:
            _forget_failed(store, spec["name"], providers)
            raise ResourcesUnavailableError(
                f"failed to provision {spec['name']!r} on any of {len(offers)} offer(s): "
                f"{history[-1]}", failover_history=history)
        time.sleep(delay)
        delay = min(delay * 2, 60.0)


def no_offer_error(name: str, resources: Resources,
                   providers: Providers) -> ResourcesUnavailableError:
    """No offer exists (the same words as a plan's error). ``NoCloudAccessError`` when
    only a cloud could run it (no infra given) and no cloud provider is enabled."""
    from skystate.providers.catalog import CLOUDS
    from skystate.providers.optimizer import explain_infeasible, without_infra

    reason = f"cluster {name!r}: no offer satisfies the request: " + explain_infeasible(
        resources, providers)
    if without_infra(resources) and not set(providers.enabled().considered) & set(CLOUDS):
        return NoCloudAccessError(f"{reason}. No cloud is enabled (skystate check); give "
                                  "AWS or GCP credentials, or ask for what local/ssh have.",
                                  failover_history=[])
    return ResourcesUnavailableError(reason, failover_history=[])


def _create(store: Store, spec: Record, offer: Offer, providers: Providers) -> None:
    action = Action(type=ActionType.CREATE, kind="Cluster", address=address("Cluster",
                    spec["name"]), name=spec["name"], after=spec, offer=offer.to_dict(),
                    reason="sdk launch")
    _run_one(store, action, providers)


def _forget_failed(store: Store, name: str, providers: Providers) -> None:
    """A launch that failed everywhere leaves nothing behind (no INIT record, no nodes)."""
    record = store.cluster(name)
    if record is None or record.get("status") != "INIT":
        return
    try:
        providers.of_record(record).terminate(name, record["owner"])
    except Exception:  # keep the INIT record: a later plan/launch retries the cleanup
        return
    with store.transaction():
        store.delete_cluster(name)


def ensure_cluster(name: str, resources: Resources, num_nodes: int, *, retry_until_up: bool,
                   autostop: Record | None, providers: Providers,
                   target: OptimizeTarget = OptimizeTarget.COST) -> None:
    """Create the cluster, start it if stopped, or check an UP one fits the task.

    No state lock: the API server runs requests on the same cluster one at a time, and
    store transactions are atomic across its worker processes.
    """
    store = Store()
    record = store.cluster(name)
    if record is not None:
        check_cluster_owner(record)  # launching onto another user's cluster
    if record is not None and record.get("status") in ("UP", "STOPPED"):
        check_fits(record, resources, num_nodes)
        if record["status"] == "STOPPED":
            _run_one(store, Action(type=ActionType.START, kind="Cluster",
                                   address=address("Cluster", name), name=name,
                                   before=record, reason="sdk launch"), providers)
        if autostop is not None:
            set_autostop_locked(store, name, autostop, providers)
        return
    spec = sdk_cluster_spec(name, resources, num_nodes, autostop)
    if record is not None:  # INIT: an earlier launch did not finish; keep its owner
        spec = {**spec, "owner": record.get("owner"), "managed_by": record.get(
            "managed_by", MANAGED_BY_SDK)}
    provision_with_failover(store, spec, resources, providers, retry_until_up, target)


def check_fits(record: Record, resources: Resources, num_nodes: int) -> None:
    """Launching onto an existing cluster: the task must fit what it has."""
    offer = record.get("offer") or {}
    nodes = int(record.get("num_nodes", 1))
    if any(fits(c, offer, nodes, num_nodes) for c in resources.candidates()):
        return
    raise ResourcesMismatchError(
        f"cluster {record['name']!r} has {nodes}x{offer.get('accelerators') or 'CPU'} "
        f"(cpus {offer.get('cpus')}); the task asks "
        f"{num_nodes}x{resources.canonical()}. Launch it on a new cluster instead.")


def set_autostop_locked(store: Store, name: str, autostop: Record | None,
                        providers: Providers) -> None:
    record = store.cluster(name) or {}
    spec = {**record, "autostop": autostop}
    _run_one(store, Action(type=ActionType.SET_AUTOSTOP, kind="Cluster",
                           address=address("Cluster", name), name=name, before=record,
                           after=spec, reason="sdk autostop"), providers)


def autostop_spec(idle_minutes: int | None, down: bool) -> Record | None:
    if idle_minutes is None or idle_minutes < 0:
        return None
    return {"idle_minutes": int(idle_minutes), "down": bool(down), "wait_for": "jobs_and_ssh"}


# --- jobs -------------------------------------------------------------------------


def job_request_for(task: Task, *, with_setup: bool, head_ips: Sequence[str],
                    file_mounts: dict[str, str] | None = None,
                    cluster: Record | None = None) -> JobRequest:
    """``file_mounts``: the task's, with its storage mounts staged (``submit``); without
    it, a task with storage mounts is refused (never silently dropped). ``cluster``: the
    record of the cluster it runs on; of a choice of resources the job takes the one that
    cluster serves (``fitting.option_on``)."""
    run = task.run
    if callable(run):
        if task.num_nodes > 1:
            raise NotSupportedError("a callable run with num_nodes > 1 is not supported yet; "
                                    "use a shell command and $SKYPILOT_NODE_RANK")
        run = run(0, list(head_ips))
    record = cluster or {}
    resources = option_on(task.resources, record.get("offer"),
                          int(record.get("num_nodes", 1)), task.num_nodes)
    return job_request({
        "run": run, "setup": task.setup if with_setup else None, "envs": task.envs,
        "secrets": task.secrets, "workdir": task.workdir,
        "file_mounts": file_mounts if file_mounts is not None else task_file_mounts(task),
        "num_nodes": task.num_nodes, "resources": resources.canonical(),
    }, name=task.name, username=current_user())


def record_last_use(name: str, command: str) -> None:
    """The cluster's ``last_use``: the last command that ran something on it (SkyPilot
    records it before every launch's or exec's job)."""
    store = Store()
    with store.transaction():
        record = store.cluster(name)
        if record is not None and record.get("last_use") != command:
            store.put_cluster({**record, "last_use": command})


def submit(name: str, task: Task, *, with_setup: bool) -> int | None:
    if task.run is None and not (with_setup and task.setup):
        return None
    record, nodes = cluster_record(name)
    agent = _agent_of_up(record, nodes)
    head_ips = [n.get("ip", "127.0.0.1") for n in nodes]
    mounts = staged_file_mounts(task, record)
    return agent.submit(job_request_for(task, with_setup=with_setup, head_ips=head_ips,
                                        file_mounts=mounts, cluster=record))


def staged_file_mounts(task: Task, record: Record, store: Store | None = None,
                       providers_config: Record | None = None) -> dict[str, str]:
    """The task's file mounts with its storage mounts staged for the cluster ``record``
    (``storage_mounts.stage``): what ``job_request_for(file_mounts=...)`` takes."""
    return storage_mounts.stage(
        task_file_mounts(task), cluster=str(record["name"]),
        owner=str(record.get("owner") or current_user()), store=store or Store(),
        lock=threading.Lock(),
        providers_config=home_providers_config() if providers_config is None
        else providers_config)


def task_file_mounts(task: Task) -> dict[str, Any]:
    """A task's file mounts with its storage mounts (as mappings) among them."""
    return {**(task.file_mounts or {}),
            **{dst: s.to_yaml_config() for dst, s in task.storage_mounts.items()}}
