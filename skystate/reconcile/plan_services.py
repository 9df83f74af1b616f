"""Planning ``kind: Service`` documents: serve-up, serve-update, serve-down. Pure; no I/O.

A service is kept up by the services controller; the plan only says what the files ask
of it. The rules (SPEC: "a changed service spec is an update, not a replace"):

- not recorded → ``serve-up``, with the optimizer's per-replica offer and the $/hour at
  the minimum and the maximum replica count;
- recorded, and its task changed (or someone updated it outside the files) →
  ``serve-update`` in the document's ``update_mode`` (rolling by default);
- recorded and unchanged → ``noop``. The replica count the autoscaler chose, the
  replicas' statuses and versions are the controller's, never drift;
- recorded, owned by this Project, and no longer in the files → ``serve-down``, unless
  it is protected (an error) or ``--no-prune`` (a warning). A service of another owner,
  or one made with ``sky.serve.up`` (no owner), is never touched; its name in the files
  is an error, as for clusters.

The service record is skystate.serve's; the handlers add ``declared`` to it (the hash,
version, offer and ``protect`` of the last apply), which is what this module compares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skystate.providers.base import Offer
from skystate.reconcile.actual import ActualState
from skystate.reconcile.desired_views import REDACTED, service_view
from skystate.reconcile.diff import field_changes
from skystate.reconcile.plan import Action, ActionType
from skystate.spec.desired import DesiredState, address, spec_hash
from skystate.spec.documents import Service
from skystate.spec.resources import Resources

OfferRanker = Callable[[Resources, int], list[Offer]]
Record = dict[str, Any]

_GONE_STATUSES = ("FAILED", "FAILED_CLEANUP")  # replica statuses that cost nothing


@dataclass
class ServicePlan:
    actions: list[Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def service_owned(record: Record, owner: str) -> bool:
    """Declarative services carry their Project's owner; ``sky.serve.up`` ones have none."""
    return record.get("owner") is not None and record.get("owner") == owner


def recorded_task(record: Record) -> Record | None:
    """The task of the service's current version (as skystate.serve recorded it)."""
    tasks = record.get("tasks") or {}
    return tasks.get(str(record.get("version")))


def in_sync(record: Record, desired_hash: str) -> bool:
    """The recorded service runs what the files ask (by the hash of the last apply).

    A version other than the one the last apply made means an update from outside the
    files (``sky.serve.update``): the files win. Without ``declared`` (an apply that died
    between the service's creation and its bookkeeping) the current task is hashed.
    """
    declared = record.get("declared") or {}
    if declared.get("spec_hash") is not None:
        return (declared["spec_hash"] == desired_hash
                and declared.get("version") == record.get("version"))
    task = recorded_task(record)
    return task is not None and spec_hash(task) == desired_hash


def current_replicas(record: Record) -> int:
    """How many replicas run (or are being made): the autoscaler's count, for the cost."""
    target = record.get("target_replicas")
    if isinstance(target, int):
        return target
    return sum(1 for r in record.get("replicas") or [] if r.get("status") not in _GONE_STATUSES)


def plan_services(
    desired: DesiredState,
    actual: ActualState,
    *,
    rank_offers: OfferRanker,
    explain_infeasible: Callable[[Resources], str] | None = None,
    prune: bool = True,
) -> ServicePlan:
    out = ServicePlan()
    planner = _ServicePlanner(desired, rank_offers, explain_infeasible, out)
    for service in desired.services.values():
        planner.plan(service, actual.services.get(service.name))
    for name, record in actual.services.items():
        if name not in desired.services and service_owned(record, desired.owner):
            planner.plan_removal(name, record, prune)
    return out


@dataclass
class _ServicePlanner:
    desired: DesiredState
    rank_offers: OfferRanker
    explain: Callable[[Resources], str] | None
    out: ServicePlan

    def where(self, addr: str) -> str:
        source = self.desired.source_of(addr)
        return f"{source}: " if source else ""

    def plan(self, service: Service, record: Record | None) -> None:
        addr = address("Service", service.name)
        owner = self.desired.owner
        if record is not None and not service_owned(record, owner):
            made_by = (f"owner {record.get('owner')!r}" if record.get("owner") is not None
                       else f"made with sky.serve.up by {record.get('user_name')!r}")
            self.out.errors.append(f"{self.where(addr)}{addr} already exists and is not owned "
                                   f"by {owner!r} ({made_by}); rename it or take the other "
                                   "one down")
            return
        view = service_view(service, owner, self.desired.root)
        resources = service.resources or Resources()
        offers = self.rank_offers(resources, view["num_nodes"])
        if not offers:
            reason = self.explain(resources) if self.explain else "no feasible offer"
            self.out.errors.append(f"{self.where(addr)}{addr}: no offer satisfies a replica's "
                                   f"request: {reason}")
            return
        offer = offers[0].to_dict()
        per_replica = offers[0].hourly_price * view["num_nodes"]
        after = {**view, "offer": offer, "hourly_per_replica": per_replica,
                 "hourly_at_min": per_replica * view["min_replicas"],
                 "hourly_at_max": per_replica * view["max_replicas"]}
        mixed = self._spot_mix(service, resources, view, per_replica)
        if mixed is False:
            self.out.errors.append(f"{self.where(addr)}{addr}: no on-demand offer for its "
                                   "on-demand fallback replicas")
            return
        after.update(mixed or {})
        if record is None:
            self._up(addr, service, after)
        else:
            self._existing(addr, service, record, after)

    def _spot_mix(self, service: Service, resources: Resources, view: Record,
                  spot_price: float) -> Record | bool | None:
        """With ``use_spot`` and an on-demand fallback: the on-demand offer, the split at
        the minimum and maximum counts and their $/h (None: no mix; False: no offer)."""
        spec = service.service
        alternatives = [resources, *(resources.any_of or []), *(resources.ordered or [])]
        if spec is None or not spec.use_ondemand_fallback or not any(
                r.use_spot for r in alternatives):
            return None
        on_demand = resources.model_copy(update={
            "use_spot": False,
            **{key: [r.model_copy(update={"use_spot": False}) for r in getattr(resources, key)]
               for key in ("any_of", "ordered") if getattr(resources, key)}})
        offers = self.rank_offers(on_demand, view["num_nodes"])
        if not offers:
            return False
        od_price = offers[0].hourly_price * view["num_nodes"]
        base = spec.base_ondemand_fallback_replicas

        def split(count: int) -> tuple[int, int]:
            return max(0, count - base), min(base, count)

        low, high = split(view["min_replicas"]), split(view["max_replicas"])
        return {"ondemand_offer": offers[0].to_dict(), "hourly_ondemand": od_price,
                "split_at_min": list(low), "split_at_max": list(high),
                "dynamic_ondemand_fallback": spec.dynamic_ondemand_fallback,
                "hourly_at_min": low[0] * spot_price + low[1] * od_price,
                "hourly_at_max": high[0] * spot_price + high[1] * od_price}

    def _up(self, addr: str, service: Service, after: Record) -> None:
        self.out.actions.append(Action(
            type=ActionType.SERVE_UP, kind="Service", address=addr, name=service.name,
            reason="not yet served", after=after, offer=after["offer"],
            changes=field_changes(None, after["task"]),
            hourly_after=after["hourly_at_min"],
        ))

    def _existing(self, addr: str, service: Service, record: Record, after: Record) -> None:
        before = _summary(record)
        running = current_replicas(record)
        declared = record.get("declared") or {}
        old_price = float(declared.get("hourly_per_replica") or 0.0)
        cost_before = old_price * running
        common = dict(kind="Service", address=addr, name=service.name, before=before,
                      offer=after["offer"], hourly_before=cost_before)
        if record.get("down_requested_at"):
            self.out.actions.append(Action(
                type=ActionType.NOOP, reason="being taken down (a down was requested); apply "
                "again once it is gone to serve it again", after=after,
                hourly_after=cost_before, **common))
            return
        task_changed = not in_sync(record, after["spec_hash"])
        protect_changed = bool(declared.get("protect", False)) != service.protect
        if not task_changed and not protect_changed:
            self.out.actions.append(Action(
                type=ActionType.NOOP, after=after, hourly_after=cost_before,
                reason=f"spec unchanged (version {record.get('version')}, {running} "
                       "replica(s) as the controller keeps them)", **common))
            return
        count = min(max(running, after["min_replicas"]), after["max_replicas"])
        if task_changed:
            outside = declared.get("version") not in (None, record.get("version"))
            reason = (f"updated outside the files (version {record.get('version')}): back to "
                      f"the files, {service.update_mode}" if outside
                      else f"spec changed: {service.update_mode} update")
            changes = field_changes(before.get("task"), after["task"])
        else:
            reason = "protect changed (recorded only; the replicas are not touched)"
            changes = field_changes({"protect": declared.get("protect", False)},
                                    {"protect": service.protect})
        self.out.actions.append(Action(
            type=ActionType.SERVE_UPDATE, reason=reason, changes=changes,
            after={**after, "task_changed": task_changed},
            hourly_after=after["hourly_per_replica"] * count, **common))

    def plan_removal(self, name: str, record: Record, prune: bool) -> None:
        addr = address("Service", name)
        declared = record.get("declared") or {}
        if declared.get("protect"):
            self.out.errors.append(
                f"{addr} is protected (protect: true) but no longer in the files; restore "
                "its file, or set protect: false and apply before deleting it")
            return
        if not prune:
            self.out.warnings.append(f"{addr} is no longer in the files; kept (--no-prune)")
            return
        if record.get("down_requested_at"):
            return  # already going
        price = float(declared.get("hourly_per_replica") or 0.0)
        self.out.actions.append(Action(
            type=ActionType.SERVE_DOWN, kind="Service", address=addr, name=name,
            before=_summary(record), reason="removed from files",
            offer=declared.get("offer"), hourly_before=price * current_replicas(record),
        ))


def _summary(record: Record) -> Record:
    """The recorded service as a plan shows it: no secrets, no replica details."""
    task = dict(recorded_task(record) or {})
    if task.get("secrets"):
        task["secrets"] = {k: REDACTED for k in task["secrets"]}
    declared = record.get("declared") or {}
    return {
        "name": record.get("name"), "owner": record.get("owner"),
        "status": record.get("status"), "version": record.get("version"),
        "update_mode": record.get("update_mode"), "task": task,
        "replicas": current_replicas(record), "protect": bool(declared.get("protect")),
        "endpoint_port": record.get("lb_port"),
    }
