"""Status that tells the truth: a budgeted look at the clusters whose record may be stale.

A cluster record says what the last call saw. Two things change behind our back while
a cluster is UP: its own agent stops or downs it (autostop), and its jobs finish. So
``sky.status()`` and ``skystate status`` first call ``check_clusters``, which looks at
exactly those clusters, all in parallel, within a time budget (``STATUS_BUDGET``, 2 s):

- every UP cluster with autostop set is observed by its provider (as SkyPilot's
  ``sky status`` refreshes clusters that have autostop set), so a cluster its agent
  stopped reads ``STOPPED (autostop)`` and one it downed is gone;
- every UP cluster with a job recorded as active has its job table read, also when
  the observation just found it stopped (local and ssh nodes keep their table), so a
  finished job keeps its final status (``job_outcomes``).

What was seen is recorded in the store by the caller's process (the API server: the one
writer), and only what changed is written. A cluster that could not be observed within
the budget, or whose provider failed, is *unknown*: its record stays as it was (unknown
is not gone) and ``check_clusters`` returns it with the reason, so it is shown as
unknown, never as a stale UP. A look that answers after the budget is still recorded
when it comes, so the next ``status`` shows it. No state lock is taken (an apply may hold it for
minutes); a record another writer changed while it was observed is left alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from skystate.providers.base import ClusterObservation, NodeState
from skystate.providers.registry import Providers
from skystate.reconcile.job_outcomes import jobs_to_watch, read_job_statuses, record_job_statuses
from skystate.reconcile.store import Store

Record = dict[str, Any]

STATUS_BUDGET = 2.0
"""Seconds ``status`` waits for its observations; what is slower is shown as unknown."""


@dataclass(frozen=True)
class _Look:
    """What one cluster showed: an observation (if asked for) and its job table."""

    observed: bool
    observation: ClusterObservation | None = None
    jobs: Mapping[int, str] | None = None


def autostop_enabled(record: Mapping[str, Any]) -> bool:
    autostop = record.get("autostop")
    return bool(autostop) and float(autostop.get("idle_minutes", -1)) >= 0


def to_check(clusters: Iterable[Record], jobs: Iterable[Record],
             names: Iterable[str] | None = None) -> list[str]:
    """Names of the UP clusters whose record may be stale (autostop set, or jobs active)."""
    wanted = set(names) if names else None
    watched = jobs_to_watch(jobs)
    return sorted(r["name"] for r in clusters
                  if r.get("status") == "UP" and (wanted is None or r["name"] in wanted)
                  and (autostop_enabled(r) or r["name"] in watched))


def check_clusters(store: Store, providers: Providers, names: Iterable[str] | None = None,
                   budget: float = STATUS_BUDGET) -> dict[str, str]:
    """Look at the clusters ``to_check`` names and record what they show.

    Returns the clusters that could not be observed, with the reason (unknown).
    """
    started = time.time()
    records = {r["name"]: r for r in store.clusters()}
    watched = jobs_to_watch(store.jobs())
    checked = to_check(records.values(), store.jobs(), names)
    if not checked:
        return {}
    pool = ThreadPoolExecutor(max_workers=min(32, len(checked)), thread_name_prefix="status")
    futures = {name: pool.submit(_look, records[name], store.nodes(name), providers,
                                 name in watched) for name in checked}
    done, _ = wait(futures.values(), timeout=budget)
    pool.shutdown(wait=False, cancel_futures=True)
    unknown: dict[str, str] = {}
    looks: dict[str, _Look] = {}
    for name, future in futures.items():
        if future not in done:
            unknown[name] = f"no answer within {budget:g}s"
            future.add_done_callback(partial(_record_late, store.path, name, started))
        elif future.exception() is not None:
            unknown[name] = _reason(future.exception())
        else:
            looks[name] = future.result()
    with store.transaction():
        for name, look in looks.items():
            problem = _record(store, name, look, started)
            if problem:
                unknown[name] = problem
    return unknown


def _record_late(path: Path, name: str, started: float, future: Future[_Look]) -> None:
    """A look that missed the budget is still recorded when it comes (the next status
    shows it); one that failed changes nothing."""
    if future.cancelled() or future.exception() is not None:
        return
    store = Store(path)
    with store.transaction():
        _record(store, name, future.result(), started)


def _look(record: Record, nodes: list[Record], providers: Providers, jobs: bool) -> _Look:
    observation = None
    observed = autostop_enabled(record)
    if observed:
        seen = providers.of_record(record).observe([record["name"]])
        observation = next((o for o in seen if o.name == record["name"]), None)
        if observation is None or observation.state is NodeState.TERMINATED:
            return _Look(observed=True)  # gone (autodown): its jobs went with it
    statuses = None
    if jobs:
        try:
            statuses = read_job_statuses(record, providers, observation, nodes)
        except Exception:
            if not observed:
                raise  # nothing was seen: unknown
            # seen, but its table is out of reach (a stopped cloud instance): the
            # observation is recorded, the jobs keep their last observed statuses
    return _Look(observed=observed, observation=observation, jobs=statuses)


def _record(store: Store, name: str, look: _Look, started: float) -> str | None:
    """Fold one look into the records; a reason when it must be shown as unknown."""
    from skystate.reconcile.refresh import record_observation

    record = store.cluster(name)
    if record is None:
        return None  # torn down meanwhile: nothing to show
    if float(record.get("status_updated_at") or 0) > started:
        return None  # another writer recorded it while we looked: that record is newer
    if look.observation is not None and look.observation.owner != record.get("owner"):
        return (f"a cluster of this name owned by {look.observation.owner!r} is there, not "
                f"{record.get('owner')!r}")
    if look.jobs is not None:
        record_job_statuses(store, name, look.jobs)
    if look.observed:
        record_observation(store, record, look.observation, time.time(), why="status")
    return None


def _reason(error: BaseException | None) -> str:
    if error is None:
        return "not observed"
    return f"{type(error).__name__}: {error}"
