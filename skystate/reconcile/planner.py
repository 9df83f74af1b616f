"""The planner: a pure function of (desired, actual) → Plan. No I/O; ``now`` passed in.

Rules (SPEC §2): only owned resources are pruned; clusters before the jobs on them,
cancels before downs; resources/num_nodes changes replace, other changes are in place;
``protect`` blocks destroy and replace, even after the file is gone; a cluster stopped
by its own autostop is not drift; a job runs once per spec hash, and one recorded INIT
with no job id (an apply died mid-submit) is submitted again, never forgotten. Services
are planned by plan_services.py (an update, never a replace; the autoscaler's count is not
drift).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from skystate.exceptions import NotSupportedError
from skystate.providers.base import Offer
from skystate.providers.enabled import Enabled
from skystate.providers.optimizer import without_infra
from skystate.reconcile import storage_mounts
from skystate.reconcile.actual import ActualState, job_is_active
from skystate.reconcile.desired_views import (
    MANAGED_BY_STATE,
    cluster_request,
    cluster_view,
    job_view,
)
from skystate.reconcile.diff import field_changes
from skystate.reconcile.managed_job_plan import plan_managed_jobs
from skystate.reconcile.plan import Action, ActionType, Plan
from skystate.reconcile.plan_services import plan_services
from skystate.spec.desired import DesiredState, address, spec_hash
from skystate.spec.documents import Cluster
from skystate.spec.resources import Resources

FAILOVER_OFFERS = 8  # how many next-best offers a create may fall back to

OfferRanker = Callable[[Resources, int], list[Offer]]
Record = dict[str, Any]

_CLUSTER_COMPARED = ("power", "autostop", "protect", "setup", "workdir", "file_mounts", "envs")


def make_plan(
    desired: DesiredState,
    actual: ActualState,
    *,
    rank_offers: OfferRanker,
    explain_infeasible: Callable[[Resources], str] | None = None,
    now: float | None = None,
    targets: Iterable[str] = (),
    prune: bool = True,
    refreshed: bool = False,
    state_dir: str | None = None,
    enabled: Enabled | None = None,
) -> Plan:
    """``enabled``: the providers ``rank_offers`` optimizes a request without infra over,
    recorded in the plan when some cluster has no infra."""
    builder = _PlanBuilder(desired, actual, rank_offers, explain_infeasible, prune)
    for cluster in desired.clusters.values():
        builder.plan_cluster(cluster)
    for job in desired.jobs.values():
        builder.plan_job(job_view(job, desired.owner, desired.root))
    builder.plan_removed()
    services = plan_services(desired, actual, rank_offers=rank_offers,
                             explain_infeasible=explain_infeasible, prune=prune)
    builder.actions.extend(services.actions)
    builder.errors.extend(services.errors)
    builder.warnings.extend(services.warnings)
    builder.actions += plan_managed_jobs(
        desired, actual.managed_jobs, rank_offers=rank_offers, where=builder.where,
        prune=prune, errors=builder.errors, warnings=builder.warnings)
    actions = builder.ordered_actions(_target_set(targets, desired))
    no_infra = enabled is not None and any(
        builder.request_flags(c)[1] for c in desired.clusters.values())
    return Plan(
        created_at=time.time() if now is None else now,
        state_dir=state_dir,
        owner=desired.owner,
        state_version=actual.version,
        refreshed=refreshed,
        targets=list(targets),
        prune=prune,
        providers=desired.project.providers.model_dump(mode="json"),
        actions=actions,
        considered_providers=list(enabled.considered) if enabled and no_infra else [],
        skipped_providers=dict(enabled.skipped) if enabled and no_infra else {},
        errors=builder.errors,
        warnings=builder.warnings,
    )


def normalise_target(target: str) -> str:
    """``cluster/train`` or ``Cluster/train`` → ``Cluster/train``."""
    kind, _, rest = target.partition("/")
    kinds = {k.lower(): k for k in ("Cluster", "Job", "ManagedJob", "Service")}
    if kind.lower() not in kinds or not rest:
        raise ValueError(
            f"invalid target {target!r}: use Cluster/NAME, Job/CLUSTER/NAME, "
            "ManagedJob/NAME or Service/NAME"
        )
    return f"{kinds[kind.lower()]}/{rest}"


def _target_set(targets: Iterable[str], desired: DesiredState) -> set[str] | None:
    """The targeted addresses plus what they depend on (a job's cluster)."""
    chosen = {normalise_target(t) for t in targets}
    if not chosen:
        return None
    for addr in list(chosen):
        parts = addr.split("/")
        if parts[0] == "Job" and len(parts) == 3:
            chosen.add(address("Cluster", parts[1]))
    return chosen


@dataclass
class _PlanBuilder:
    desired: DesiredState
    actual: ActualState
    rank_offers: OfferRanker
    explain: Callable[[Resources], str] | None
    prune: bool
    actions: list[Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cluster_actions: dict[str, Action] = field(default_factory=dict)
    job_cancels: dict[str, list[str]] = field(default_factory=dict)  # cluster -> action ids
    _offer_cache: dict[str, tuple[Offer, dict[str, Any], list[dict[str, Any]]] | None] = (
        field(default_factory=dict))
    # per cluster, the hash of its request (resources, num_nodes): what is derived from
    # the request alone is computed once per distinct request, not once per cluster
    _request_key: dict[str, str] = field(default_factory=dict)
    _flags: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    # (canonical resources, request hash) per (resources, num_nodes): clusters that wrote
    # the same resources block share one validated Resources (spec.block_cache)
    _requests: dict[tuple[int, int], tuple[dict[str, Any], str]] = field(default_factory=dict)
    # id(action) -> its index in ``actions``: an action rewritten later (failover offers, a
    # start for a job) is replaced in place without a scan (list.index compares models)
    _positions: dict[int, int] = field(default_factory=dict)

    # --- helpers -------------------------------------------------------------------

    def where(self, addr: str) -> str:
        source = self.desired.source_of(addr)
        return f"{source}: " if source else ""

    def _key(self, cluster: Cluster) -> str:
        key = self._request_key.get(cluster.name)
        if key is None:
            key = self._request_key[cluster.name] = spec_hash(cluster.immutable_view())
        return key

    def request_flags(self, cluster: Cluster) -> tuple[bool, bool]:
        """(some candidate has accelerators, some candidate names no provider)."""
        key = self._key(cluster)
        flags = self._flags.get(key)
        if flags is None:
            flags = self._flags[key] = (
                any(c.accelerators for c in cluster.resources.candidates()),
                without_infra(cluster.resources))
        return flags

    def offer_for(self, cluster: Cluster
                  ) -> tuple[Offer, dict[str, Any], list[dict[str, Any]]] | None:
        """The best offer, its JSON form and the failover offers after it; computed once
        per distinct request."""
        key = self._key(cluster)
        if key not in self._offer_cache:
            offers = self.rank_offers(cluster.resources, cluster.num_nodes)
            self._offer_cache[key] = (
                (offers[0], offers[0].to_dict(),
                 [o.to_dict() for o in offers[1:1 + FAILOVER_OFFERS]]) if offers else None)
        return self._offer_cache[key]

    def add(self, action: Action) -> Action:
        self._positions[id(action)] = len(self.actions)
        self.actions.append(action)
        return action

    def _swap(self, old: Action, new: Action) -> Action:
        """``new`` where ``old`` was added (same place in the plan's order)."""
        index = self._positions.pop(id(old))
        self.actions[index] = new
        self._positions[id(new)] = index
        return new

    # --- clusters ------------------------------------------------------------------

    def _request(self, cluster: Cluster) -> tuple[dict[str, Any], str]:
        key = (id(cluster.resources), cluster.num_nodes)  # the clusters outlive the plan
        found = self._requests.get(key)
        if found is None:
            found = self._requests[key] = cluster_request(cluster)
        return found

    def plan_cluster(self, cluster: Cluster) -> None:
        addr = address("Cluster", cluster.name)
        after = cluster_view(cluster, self.desired.owner, self._request(cluster))
        self._request_key[cluster.name] = after["immutable_hash"]
        record = self.actual.clusters.get(cluster.name)
        if record is not None and not self._owned(record):
            self.errors.append(
                f"{self.where(addr)}{addr} already exists and is not owned by "
                f"{self.desired.owner!r} (owner {record.get('owner')!r}, launched by "
                f"{record.get('managed_by', 'unknown')}); rename it or down the other one"
            )
            return
        try:  # before anything is provisioned for it
            storage_mounts.check(after.get("file_mounts"))
        except NotSupportedError as exc:
            self.errors.append(f"{self.where(addr)}{addr}: {exc}")
            return
        chosen = self.offer_for(cluster)
        offer, offer_dict, failover = chosen if chosen else (None, None, [])
        needs_offer = record is None or record["immutable_hash"] != after["immutable_hash"]
        if offer is None and needs_offer:
            reason = self.explain(cluster.resources) if self.explain else "no feasible offer"
            self.errors.append(f"{self.where(addr)}{addr}: no offer satisfies the request: "
                               f"{reason}")
            return
        self._warn_gpu_without_autostop(addr, cluster, after)
        price = (offer.hourly_price * cluster.num_nodes) if offer else 0.0
        after_cost = price if cluster.power == "up" else 0.0
        if record is None or record.get("status") is None:
            action = self._create(addr, cluster, after, offer_dict, after_cost,
                                  "vanished (a refresh found it gone): re-create"
                                  if record and record.get("vanished_at") else "not yet created")
        elif record.get("status") == "INIT":
            action = self._create(addr, cluster, after, offer_dict, after_cost,
                                  "an earlier provisioning did not finish", record)
        elif record["immutable_hash"] != after["immutable_hash"]:
            action = self._replace(addr, cluster, record, after, offer_dict, after_cost)
        else:
            action = self._update_in_place(addr, cluster, record, after)
        if action.type in (ActionType.CREATE, ActionType.REPLACE) and failover:
            action = self._with_failover(action, failover)
        self.cluster_actions[cluster.name] = action

    def _owned(self, record: Record) -> bool:
        return (record.get("owner") == self.desired.owner
                and record.get("managed_by") == MANAGED_BY_STATE)

    def _warn_gpu_without_autostop(self, addr: str, cluster: Cluster, after: Record) -> None:
        gpu = self.request_flags(cluster)[0]
        if gpu and after["autostop"] is None and cluster.power == "up":
            self.warnings.append(
                f"{addr} has accelerators but no autostop: it bills until stopped "
                "(set autostop: {idle_minutes: N})"
            )

    def _with_failover(self, action: Action, failover: list[Record]) -> Action:
        return self._swap(action, action.model_copy(update={"failover_offers": failover}))

    def _create(self, addr: str, cluster: Cluster, after: Record, offer: Record | None,
                cost: float, reason: str, record: Record | None = None) -> Action:
        return self.add(Action(
            type=ActionType.CREATE, kind="Cluster", address=addr, name=cluster.name,
            reason=reason, before=record, after=after,
            changes=field_changes(None, _compared(after)), offer=offer, hourly_after=cost,
        ))

    def _replace(self, addr: str, cluster: Cluster, record: Record, after: Record,
                 offer: Record | None, cost: float) -> Action:
        changes = field_changes(
            {"resources": record.get("resources"), "num_nodes": record.get("num_nodes")},
            {"resources": after["resources"], "num_nodes": after["num_nodes"]},
        )
        if record.get("protect") or cluster.protect:
            self.errors.append(
                f"{self.where(addr)}{addr} is protected (protect: true) and its "
                f"{', '.join(c.path for c in changes)} changed, which needs a replace; "
                "set protect: false to allow it"
            )
        return self.add(Action(
            type=ActionType.REPLACE, kind="Cluster", address=addr, name=cluster.name,
            reason="resources/num_nodes cannot change in place", before=record, after=after,
            changes=changes, offer=offer,
            hourly_before=_record_cost(record), hourly_after=cost,
        ))

    def _update_in_place(self, addr: str, cluster: Cluster, record: Record,
                         after: Record) -> Action:
        status = record.get("status")
        changes = field_changes(_compared(record), _compared(after))
        common = dict(kind="Cluster", address=addr, name=cluster.name, before=record,
                      after=after, offer=record.get("offer"), changes=changes,
                      hourly_before=_record_cost(record))
        up_cost = _record_price(record)
        if cluster.power == "up" and status == "STOPPED":
            if record.get("stopped_by_autostop"):
                return self._in_place_or_noop(common, changes, "stopped by its own autostop "
                                              "(not drift); starts again when a job needs it")
            return self.add(Action(type=ActionType.START, reason="power: up but stopped",
                                   hourly_after=up_cost, **common))
        if cluster.power == "stopped" and status == "UP":
            return self.add(Action(type=ActionType.STOP, reason="power: stopped",
                                   hourly_after=0.0, **common))
        return self._in_place_or_noop(common, changes, "")

    def _in_place_or_noop(self, common: dict[str, Any], changes: list[Any], note: str) -> Action:
        cost = common["hourly_before"]
        paths = {c.path.split(".")[0].split("[")[0] for c in changes}
        if paths and paths <= {"autostop"}:
            return self.add(Action(type=ActionType.SET_AUTOSTOP, reason="autostop changed",
                                   hourly_after=cost, **common))
        if paths:
            return self.add(Action(type=ActionType.UPDATE,
                                   reason=f"{', '.join(sorted(paths))} changed in place",
                                   hourly_after=cost, **common))
        return self.add(Action(type=ActionType.NOOP, reason=note or "unchanged",
                               hourly_after=cost, **{**common, "changes": []}))

    # --- jobs ----------------------------------------------------------------------

    def plan_job(self, after: Record) -> None:
        cluster, name = after["cluster"], after["name"]
        addr = address("Job", name, cluster)
        record = self.actual.jobs.get((cluster, name))
        cluster_action = self.cluster_actions.get(cluster)
        if cluster_action is None:  # the cluster itself errored
            return
        try:  # before anything is provisioned for it
            storage_mounts.check((after.get("task") or {}).get("file_mounts"))
        except NotSupportedError as exc:
            self.errors.append(f"{self.where(addr)}{addr}: {exc}")
            return
        depends = [cluster_action.id] if cluster_action.is_change else []
        fresh_cluster = cluster_action.type in (ActionType.CREATE, ActionType.REPLACE)
        unfinished = record is not None and _submit_unfinished(record)
        if (record is not None and record["spec_hash"] == after["spec_hash"]
                and not fresh_cluster and not unfinished):
            self.add(Action(type=ActionType.NOOP, kind="Job", address=addr, name=name,
                            cluster=cluster, before=record, after=after,
                            reason=f"spec unchanged (last run {record.get('status')})"))
            return
        if cluster_action.after and cluster_action.after.get("power") == "stopped":
            self.errors.append(f"{self.where(addr)}{addr} needs cluster {cluster!r}, "
                               "which has power: stopped")
            return
        depends += self._start_for_job(cluster, cluster_action)
        if record is not None and not fresh_cluster and not unfinished and job_is_active(record):
            cancel = self.add(Action(type=ActionType.CANCEL_JOB, kind="Job", address=addr,
                                     name=name, cluster=cluster, before=record,
                                     reason="spec changed: cancel the active run first"))
            depends.append(cancel.id)
        reason = ("cluster is new" if fresh_cluster and record is not None else
                  "an earlier submit did not finish (no job id recorded): submit again; "
                  "the cluster's agent runs it once" if unfinished
                  and record["spec_hash"] == after["spec_hash"] else
                  "spec changed" if record is not None else "not yet submitted")
        self.add(Action(
            type=ActionType.SUBMIT_JOB, kind="Job", address=addr, name=name, cluster=cluster,
            before=record, after=after, reason=reason, depends_on=depends,
            changes=field_changes(record.get("task") if record else None, after["task"]),
        ))

    def _start_for_job(self, cluster: str, cluster_action: Action) -> list[str]:
        """A cluster stopped by autostop starts again when a job needs it."""
        if cluster_action.type is ActionType.NOOP and (cluster_action.before or {}).get(
                "status") == "STOPPED":
            start = cluster_action.model_copy(update={
                "type": ActionType.START, "reason": "a job needs it (was stopped by autostop)",
                "hourly_after": _record_price(cluster_action.before or {})})
            self._swap(cluster_action, start)
            self.cluster_actions[cluster] = start
            return [start.id]
        return []

    # --- what the files no longer ask for -----------------------------------------

    def plan_removed(self) -> None:
        for (cluster, name), record in self.actual.jobs.items():
            if (cluster, name) in self.desired.jobs or not self._owned(record):
                continue
            done = "" if job_is_active(record) else (
                f" (already {record.get('status')}; record dropped)")
            action = self.add(Action(
                type=ActionType.CANCEL_JOB, kind="Job", address=address("Job", name, cluster),
                name=name, cluster=cluster, before=record, reason="removed from files" + done,
            ))
            self.job_cancels.setdefault(cluster, []).append(action.id)
        for name, record in self.actual.clusters.items():
            if name in self.desired.clusters or not self._owned(record):
                continue
            self._plan_cluster_removal(name, record)

    def _plan_cluster_removal(self, name: str, record: Record) -> None:
        addr = address("Cluster", name)
        if record.get("protect"):
            self.errors.append(
                f"{addr} is protected (protect: true) but no longer in the files; restore "
                "its file, or set protect: false and apply before deleting it"
            )
            return
        if not self.prune:
            self.warnings.append(f"{addr} is no longer in the files; kept (--no-prune)")
            return
        self.add(Action(
            type=ActionType.DOWN, kind="Cluster", address=addr, name=name, before=record,
            reason="removed from files", depends_on=self.job_cancels.get(name, []),
            hourly_before=_record_cost(record), offer=record.get("offer"),
        ))

    def ordered_actions(self, targets: set[str] | None) -> list[Action]:
        """Cancels first, then clusters, then job submits; stable within each group."""
        def rank(action: Action) -> int:
            if action.type is ActionType.CANCEL_JOB:
                return 0
            return 1 if action.kind == "Cluster" else 2
        chosen = [a for a in self.actions if targets is None or a.address in targets]
        return sorted(chosen, key=rank)


def _submit_unfinished(record: Record) -> bool:
    """Recorded INIT with no job id: the apply died between recording and the agent's
    answer. Submitting again is safe (the agent de-duplicates by submission id)."""
    return record.get("status") == "INIT" and record.get("job_id") is None


def _compared(view: Record) -> Record:
    return {key: view.get(key) for key in _CLUSTER_COMPARED}


def _record_price(record: Record) -> float:
    offer = record.get("offer") or {}
    return float(offer.get("hourly_price", 0.0)) * int(record.get("num_nodes", 1))


def _record_cost(record: Record) -> float:
    return _record_price(record) if record.get("status") == "UP" else 0.0
