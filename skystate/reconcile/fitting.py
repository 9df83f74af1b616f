"""Which of a task's resource options a cluster serves.

A task may ask for a choice (``accelerators: {A100: 1, T4: 1}``, ``any_of``, ``ordered``);
the cluster was launched for one of them. A job on it takes that option's demand (its
accelerators become the job's devices), as SkyPilot runs a task with the cluster's launched
resources, never the whole choice (a job asking A100 *and* T4 could never start).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from skystate.spec.resources import Resources, quantity_bounds


def fits(candidate: Resources, offer: Mapping[str, Any], cluster_nodes: int,
         num_nodes: int) -> bool:
    """The cluster (its recorded ``offer``, ``cluster_nodes`` nodes) can run ``candidate``."""
    have = offer.get("accelerators") or {}
    cpus, _ = quantity_bounds(candidate.cpus)
    have_cpus = float(offer.get("cpus") or 0)
    return (num_nodes <= cluster_nodes
            and all(float(have.get(k, 0)) >= float(v)
                    for k, v in (candidate.accelerators or {}).items())
            and (not cpus or cpus <= have_cpus))


def candidates_of(options: Iterable[Resources]) -> list[Resources]:
    """Every concrete request of a task's resources (its set, each with any_of/ordered)."""
    return [c for option in options for c in option.candidates()]


def option_on(options: Iterable[Resources], offer: Mapping[str, Any] | None,
              cluster_nodes: int = 1, num_nodes: int = 1) -> Resources:
    """The first concrete request the cluster's offer serves; without an offer (or when none
    fits: the agent then says why), the first one."""
    concrete = candidates_of(options) or [Resources()]
    if offer:
        for candidate in concrete:
            if fits(candidate, offer, cluster_nodes, num_nodes):
                return candidate
    return concrete[0]
