"""``target(...)``: how many replicas a service wants, from recorded QPS. No I/O, no clock.

The QPS is the load balancer's ``recent`` (unix second, requests) over the last window
of complete seconds. A fixed service wants its count. An autoscaling one wants
``ceil(qps / target_qps_per_replica)`` within [min, max], but only once that wish has
held for ``upscale_delay_seconds`` (up) or ``downscale_delay_seconds`` (down): the
moment it started is returned and persisted in the service record, so a restarted
controller continues the same delay. Unknown QPS (no fresh stats) keeps the target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from skystate.serve.policy import Scaling


@dataclass(frozen=True)
class Decision:
    target: int
    upscale_since: float | None
    downscale_since: float | None
    reason: str


def qps(recent: Sequence[Sequence[float]] | None, now: float, window: float) -> float | None:
    """Requests per second over the ``window`` complete seconds before ``now``."""
    if recent is None:
        return None
    seconds = max(1, round(window))
    last = math.floor(now) - 1
    first = last - seconds + 1
    total = sum(float(count) for second, count in recent if first <= int(second) <= last)
    return total / seconds


def target(scaling: Scaling, load: float | None, current: int | None,
           upscale_since: float | None, downscale_since: float | None,
           now: float) -> Decision:
    if not scaling.autoscales:
        return Decision(scaling.min_replicas, None, None,
                        f"fixed at {scaling.min_replicas}")
    have = scaling.min_replicas if current is None else current
    have = min(max(have, scaling.min_replicas), scaling.max_replicas)
    if load is None:
        return Decision(have, upscale_since, downscale_since, "no load figures: keep")
    wish = math.ceil(load / scaling.target_qps) if scaling.target_qps else have
    wish = min(max(wish, scaling.min_replicas), scaling.max_replicas)
    if wish > have:
        since = upscale_since if upscale_since is not None else now
        if now - since >= scaling.upscale_delay:
            return Decision(wish, None, None, f"{load:.1f} qps held above "
                                              f"{have}x{scaling.target_qps:g}: scale to {wish}")
        return Decision(have, since, None, f"{load:.1f} qps wants {wish}; waiting "
                                           f"{scaling.upscale_delay - (now - since):.1f}s")
    if wish < have:
        since = downscale_since if downscale_since is not None else now
        if now - since >= scaling.downscale_delay:
            return Decision(wish, None, None, f"{load:.1f} qps held low: scale to {wish}")
        return Decision(have, None, since, f"{load:.1f} qps wants {wish}; waiting "
                                           f"{scaling.downscale_delay - (now - since):.1f}s")
    return Decision(have, None, None, f"{load:.1f} qps fits {have}")
