"""Ask providers what really exists and fold it into the records.

Unknown is not gone: a provider error leaves a record as it was. Only a fresh,
positive observation that a cluster is gone removes its record (so the next plan
re-creates it if the files still ask for it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from skystate.providers.base import NodeState
from skystate.providers.registry import Providers
from skystate.reconcile.actual import ActualState, job_is_active
from skystate.reconcile.handles import node_records, observation_of
from skystate.reconcile.store import Store

Record = dict[str, Any]


@dataclass
class RefreshReport:
    tracked: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    unknown: dict[str, str] = field(default_factory=dict)  # name -> error


def refresh_clusters(store: Store, providers: Providers) -> RefreshReport:
    """Observe every recorded cluster; the caller holds the state lock."""
    report = RefreshReport()
    observed: dict[str, Any] = {}
    for record in store.clusters():
        name = record["name"]
        try:
            seen = providers.of_record(record).observe([name])
        except Exception as exc:  # unknown, not gone
            report.unknown[name] = f"{type(exc).__name__}: {exc}"
            continue
        observed[name] = seen[0] if seen else None
    with store.transaction():
        for name, observation in observed.items():
            record = store.cluster(name)
            if record is None:
                continue
            if observation is None or observation.state is NodeState.TERMINATED:
                store.delete_cluster(name)
                store.add_event(f"Cluster/{name}", "refresh", "vanished")
                report.vanished.append(name)
                continue
            status = _status_of(observation.state, record.get("status"))
            store.put_cluster({**record, "status": status, "status_updated_at": time.time(),
                               "stopped_by_autostop": observation.stopped_by_autostop
                               if status == "STOPPED" else False})
            store.set_nodes(name, node_records(observation))
            report.tracked.append(name)
    return report


def _status_of(state: NodeState, recorded: str | None) -> str:
    if state is NodeState.RUNNING:
        return "UP" if recorded != "INIT" else "INIT"
    if state is NodeState.STOPPED:
        return "STOPPED"
    return "INIT"


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
    return ActualState(version=actual.version, clusters=actual.clusters, jobs=jobs)


def live_job_statuses(record: Record, nodes: list[Record],
                      providers: Providers) -> dict[int, str]:
    try:
        agent = providers.of_record(record).agent(observation_of(record, nodes))
        return {int(j["job_id"]): str(j["status"]) for j in agent.queue()}
    except Exception:  # an unreachable agent leaves the recorded statuses
        return {}
