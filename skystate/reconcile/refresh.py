"""Ask providers what really exists and fold it into the records.

Every cluster a provider reports is sorted into one of (SPEC §2):

- **tracked**: recorded and seen; its status, nodes and autostop flag are updated;
- **leaked**: tagged with one of our owners but not recorded; adopted into the store
  (``reconcile.adopt`` rebuilds the record from its tags);
- **vanished**: recorded, and the provider answered without it (or with every node
  terminated); a ``state`` record is marked (status None, ``vanished_at``) so the next
  plan re-creates it if the files still ask for it; an ``sdk`` record is dropped, as
  ``sky status --refresh`` does;
- **foreign**: not ours; reported, never touched;
- **unknown**: the provider failed or timed out; the record stays exactly as it was.

Unknown is not gone: only a fresh, successful observation can mark a cluster vanished.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from skystate.providers.base import ClusterObservation, NodeState, Provider
from skystate.providers.registry import DEFAULT_PROVIDER, Providers
from skystate.reconcile.actual import ActualState, job_is_active
from skystate.reconcile.handles import node_records, observation_of
from skystate.reconcile.job_outcomes import jobs_to_watch, read_job_statuses, record_job_statuses
from skystate.reconcile.store import Store

if TYPE_CHECKING:  # spec models load in ~100 ms; `skystate status` imports this module
    from skystate.spec.desired import DesiredState

Record = dict[str, Any]

OBSERVE_TIMEOUT = 60.0


class RefreshClass(str, enum.Enum):
    TRACKED = "tracked"
    LEAKED = "leaked"
    VANISHED = "vanished"
    FOREIGN = "foreign"
    UNKNOWN = "unknown"


class ClusterRefresh(BaseModel):
    """What a refresh found of one cluster and what it did to its record."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: str
    provider: str
    category: RefreshClass
    owner: str | None = None
    before: str | None = None  # recorded status before the refresh (None: not recorded)
    after: str | None = None  # recorded status after it (None: not recorded / vanished)
    nodes: int = 0
    action: str = ""  # what happened to the record: updated, adopted, marked, dropped, kept
    error: str | None = None


class RefreshReport(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    at: float = Field(default_factory=time.time)
    rebuild: bool = False
    clusters: list[ClusterRefresh] = Field(default_factory=list)
    provider_errors: dict[str, str] = Field(default_factory=dict)  # provider -> error

    def names(self, category: RefreshClass) -> list[str]:
        return [c.name for c in self.clusters if c.category is category]

    @property
    def tracked(self) -> list[str]:
        return self.names(RefreshClass.TRACKED)

    @property
    def leaked(self) -> list[str]:
        return self.names(RefreshClass.LEAKED)

    @property
    def vanished(self) -> list[str]:
        return self.names(RefreshClass.VANISHED)

    @property
    def foreign(self) -> list[str]:
        return self.names(RefreshClass.FOREIGN)

    @property
    def unknown(self) -> dict[str, str]:
        return {c.name: c.error or "" for c in self.clusters
                if c.category is RefreshClass.UNKNOWN}


@dataclass(frozen=True)
class _Source:
    """One provider instance to observe, with the config section that builds it."""

    provider: str
    section: Record

    @property
    def key(self) -> str:
        return f"{self.provider}:{json.dumps(self.section, sort_keys=True)}"


@dataclass
class _Seen:
    clusters: dict[str, dict[str, ClusterObservation]]  # source key -> name -> observation
    errors: dict[str, str]  # source key -> error
    jobs: dict[str, dict[int, str]] = field(default_factory=dict)  # cluster -> job statuses


def refresh_clusters(store: Store, providers: Providers, *,
                     desired_views: Mapping[str, Record] | None = None,
                     owners: Iterable[str] = (), project_owner: str | None = None,
                     rebuild: bool = False, also_config: Mapping[str, Any] | None = None,
                     observe_timeout: float = OBSERVE_TIMEOUT,
                     now: float | None = None) -> RefreshReport:
    """Observe every provider in use or configured; the caller holds the state lock.

    ``owners`` (plus the project owner and every recorded owner) decide what a leaked
    cluster must carry to be adopted; ``rebuild`` adopts every cluster skystate made.
    ``desired_views`` (the state directory's cluster views) complete adopted records;
    ``also_config`` names more provider sections to look in (``config.yaml``'s).
    """
    from skystate.reconcile.adopt import made_by_skystate

    started = time.time()
    now = started if now is None else now
    sources = _sources(store.clusters(), providers, also_config or {})
    seen = _observe_all(sources, providers, observe_timeout)
    seen.jobs = _read_jobs(store, sources, seen, providers, observe_timeout)
    report = RefreshReport(at=now, rebuild=rebuild)
    for key, error in seen.errors.items():
        label = sources[key].provider
        while label in report.provider_errors:
            label += "'"  # another config section of the same provider
        report.provider_errors[label] = error
    with store.transaction():  # re-reads what other writers did while we observed
        records = {r["name"]: r for r in store.clusters()}
        ours = {*owners, *(r.get("owner") for r in records.values())} - {None}
        if project_owner:
            ours.add(project_owner)
        for record in records.values():
            report.clusters.append(
                _refresh_recorded(store, record, seen, providers, now, started))
        handled = set(records)
        for key, observations in seen.clusters.items():
            for observation in observations.values():
                if observation.name in handled or observation.state is NodeState.TERMINATED:
                    continue  # tracked above, or seen through another source
                handled.add(observation.name)
                entry = _refresh_unrecorded(
                    store, observation, sources[key].section,
                    adopt=observation.owner in ours or (rebuild and made_by_skystate(
                        observation)),
                    desired_view=(desired_views or {}).get(observation.name),
                    project_owner=project_owner, now=now)
                report.clusters.append(entry)
    return report


def refresh_desired(store: Store, providers: Providers, desired: DesiredState,
                    **options: Any) -> RefreshReport:
    """Refresh for a state directory: its owner's leaks are adopted, with its specs."""
    from skystate.reconcile.desired_views import cluster_view

    views = {name: cluster_view(c, desired.owner) for name, c in desired.clusters.items()}
    return refresh_clusters(store, providers, desired_views=views,
                            project_owner=desired.owner, **options)


def unknown_warnings(report: RefreshReport) -> list[str]:
    """Plan warnings for what a refresh could not observe (kept as recorded)."""
    return [f"Cluster/{c.name}: refresh could not observe it, kept as recorded "
            f"(unknown is not gone): {c.error}"
            for c in report.clusters if c.category is RefreshClass.UNKNOWN]


def configured_sections(providers: Providers) -> dict[str, Record]:
    """Provider sections that ask for something (``local`` is always available)."""
    from skystate.spec.documents import ProvidersConfig

    defaults = ProvidersConfig().model_dump(mode="json")
    sections = {DEFAULT_PROVIDER: dict(providers.config.get(DEFAULT_PROVIDER) or {})}
    for name, section in providers.config.items():
        if isinstance(section, Mapping) and section and section != defaults.get(name):
            sections[name] = dict(section)
    return sections


def _section_of(record: Record, providers: Providers) -> _Source:
    name = str(record.get("provider") or DEFAULT_PROVIDER)
    section = record.get("provider_config")
    if section is None:
        section = providers.config.get(name) or {}
    return _Source(name, dict(section))


def _sources(records: Iterable[Record], providers: Providers,
             also_config: Mapping[str, Any]) -> dict[str, _Source]:
    sources = [_Source(n, s) for n, s in configured_sections(providers).items()]
    sources += [_Source(n, s) for n, s in configured_sections(Providers(also_config)).items()]
    sources += [_section_of(r, providers) for r in records]
    return {s.key: s for s in sources}


def _observe_all(sources: Mapping[str, _Source], providers: Providers,
                 timeout: float) -> _Seen:
    """``observe()`` every source in parallel; an error or a timeout is that source's."""
    seen = _Seen(clusters={}, errors={})
    built: dict[str, Provider] = {}
    for key, source in sources.items():
        try:
            built[key] = providers.of_record({"provider": source.provider,
                                              "provider_config": source.section})
        except Exception as exc:  # e.g. a provider this version lacks
            seen.errors[key] = f"{type(exc).__name__}: {exc}"
    pool = ThreadPoolExecutor(max_workers=max(1, min(8, len(built))),
                              thread_name_prefix="observe")
    futures = {key: pool.submit(provider.observe) for key, provider in built.items()}
    deadline = time.monotonic() + timeout
    try:
        for key, future in futures.items():
            try:
                found = future.result(timeout=max(0.0, deadline - time.monotonic()))
                seen.clusters[key] = {o.name: o for o in found}
            except FutureTimeout:
                seen.errors[key] = f"TimeoutError: no answer within {timeout:g}s"
            except Exception as exc:  # unknown, not gone
                seen.errors[key] = f"{type(exc).__name__}: {exc}"
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return seen


def _read_jobs(store: Store, sources: Mapping[str, _Source], seen: _Seen,
               providers: Providers, timeout: float) -> dict[str, dict[int, str]]:
    """The job tables of observed clusters with jobs recorded as active, in parallel.

    Read also when the cluster is stopped: local and ssh nodes keep their table."""
    watched = jobs_to_watch(store.jobs())
    wanted = []
    for record in store.clusters():
        key = _section_of(record, providers).key
        observation = seen.clusters.get(key, {}).get(record["name"])
        if record["name"] in watched and observation is not None and (
                observation.state is not NodeState.TERMINATED):
            wanted.append((record, observation))
    if not wanted:
        return {}
    pool = ThreadPoolExecutor(max_workers=min(8, len(wanted)), thread_name_prefix="jobs")
    futures = {r["name"]: pool.submit(read_job_statuses, r, providers, o) for r, o in wanted}
    deadline = time.monotonic() + timeout
    found: dict[str, dict[int, str]] = {}
    try:
        for name, future in futures.items():
            try:
                found[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - unreadable: the last observed statuses stay
                continue
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return found


def _refresh_recorded(store: Store, record: Record, seen: _Seen, providers: Providers,
                      now: float, started: float) -> ClusterRefresh:
    name = record["name"]
    source = _section_of(record, providers)
    entry = dict(name=name, provider=source.provider, owner=record.get("owner"),
                 before=record.get("status"), after=record.get("status"),
                 nodes=len(store.nodes(name)))
    if source.key not in seen.clusters:
        return ClusterRefresh(**entry, category=RefreshClass.UNKNOWN, action="kept",
                              error=seen.errors.get(source.key, "not observed"))
    if float(record.get("status_updated_at") or 0) > started:
        return ClusterRefresh(**entry, category=RefreshClass.UNKNOWN, action="kept",
                              error="changed by another request while it was observed")
    observation = seen.clusters[source.key].get(name)
    if observation is not None and observation.owner != record.get("owner"):
        return ClusterRefresh(**entry, category=RefreshClass.UNKNOWN, action="kept", error=(
            f"a cluster of this name owned by {observation.owner!r} is there, not "
            f"{record.get('owner')!r}"))
    if name in seen.jobs:
        record_job_statuses(store, name, seen.jobs[name], now)
    after, action, nodes = record_observation(store, record, observation, now)
    category = RefreshClass.TRACKED if after is not None else RefreshClass.VANISHED
    return ClusterRefresh(**{**entry, "after": after, "nodes": nodes}, category=category,
                          action=action)


def record_observation(store: Store, record: Record, observation: ClusterObservation | None,
                       now: float, why: str = "refresh") -> tuple[str | None, str, int]:
    """Fold one successful observation of a recorded cluster into its record (inside a
    transaction); None: the provider answered without it. ``(status after, what was done
    to the record, node count)``; nothing is written when nothing changed."""
    name = record["name"]
    if observation is None or observation.state is NodeState.TERMINATED:
        return None, _vanish(store, record, now, why), 0
    from skystate.reconcile.adopt import tracked_update

    updated = tracked_update(record, observation, now)
    nodes = node_records(observation)
    changed = updated != record
    if changed:
        store.put_cluster(updated)
    if nodes != [{k: v for k, v in n.items() if k != "cluster"} for n in store.nodes(name)]:
        store.set_nodes(name, nodes)
        changed = True
    if updated.get("status") != record.get("status"):
        store.add_event(f"Cluster/{name}", why,
                        f"{record.get('status')} -> {updated.get('status')}")
    return updated.get("status"), "updated" if changed else "unchanged", len(nodes)


def _vanish(store: Store, record: Record, now: float, why: str) -> str:
    name = record["name"]
    if record.get("status") is None and record.get("vanished_at"):
        return "kept"
    if record.get("managed_by") == "sdk":  # MANAGED_BY_SDK
        store.delete_cluster(name)
        action = "dropped"
    else:
        store.put_cluster({**record, "status": None, "vanished_at": now,
                           "status_updated_at": now, "stopped_by_autostop": False})
        store.set_nodes(name, [])
        action = "marked"
    store.add_event(f"Cluster/{name}", why, "vanished", f"record {action}")
    return action


def _refresh_unrecorded(store: Store, observation: ClusterObservation, section: Record, *,
                        adopt: bool, desired_view: Record | None, project_owner: str | None,
                        now: float) -> ClusterRefresh:
    name = observation.name
    entry = dict(name=name, provider=observation.provider, owner=observation.owner,
                 nodes=len(observation.nodes))
    if not adopt:
        return ClusterRefresh(**entry, category=RefreshClass.FOREIGN, action="left alone")
    from skystate.reconcile.adopt import adopted_record

    record = adopted_record(observation, provider_config=section, desired_view=desired_view,
                            project_owner=project_owner, now=now)
    store.put_cluster(record)
    store.set_nodes(name, node_records(observation))
    store.add_event(f"Cluster/{name}", "refresh", "adopted",
                    f"owner {observation.owner}, {record.get('managed_by')}")
    return ClusterRefresh(**entry, after=record["status"], category=RefreshClass.LEAKED,
                          action="adopted")


def with_live_job_statuses(actual: ActualState, providers: Providers,
                           nodes: dict[str, list[Record]]) -> ActualState:
    """Job statuses read from the clusters' agents (recorded ones go stale fast)."""
    jobs = dict(actual.jobs)
    by_cluster: dict[str, list[tuple[str, str]]] = {}
    for key, job in jobs.items():  # a finished job's recorded status is final
        if job.get("job_id") is not None and job_is_active(job):
            by_cluster.setdefault(key[0], []).append(key)
    for cluster, keys in by_cluster.items():
        record = actual.clusters.get(cluster)
        if not record or record.get("status") != "UP":
            continue
        statuses = live_job_statuses(record, nodes.get(cluster, []), providers)
        for key in keys:
            status = statuses.get(int(jobs[key]["job_id"]))
            if status:
                jobs[key] = {**jobs[key], "status": status}
    return replace(actual, jobs=jobs)  # everything else (services too) as recorded


def live_job_statuses(record: Record, nodes: list[Record],
                      providers: Providers) -> dict[int, str]:
    try:
        agent = providers.of_record(record).agent(observation_of(record, nodes))
        return {int(j["job_id"]): str(j["status"]) for j in agent.queue()}
    except Exception:  # an unreachable agent leaves the recorded statuses
        return {}
