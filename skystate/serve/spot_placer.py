"""``spot_placer: dynamic_fallback``: where the next spot replica goes. Pure.

SkyPilot's ``DynamicFallbackSpotPlacer`` rules, written afresh. A location is an offer's
(provider, region, zone). A location where a spot replica was preempted is *preempted*
until a spot replica becomes READY there again; when every location is preempted, all of
them count as active again. The next spot replica goes to the cheapest active location
that no live spot replica uses, or to the cheapest active one if all are used. The other
offers stay behind it in the failover order: active ones first, preempted ones last.

The service record keeps ``preempted_locations`` (the controller's field); each replica
records the ``location`` its cluster was launched in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from skystate.providers.base import Offer

Location = tuple[str, str | None, str | None]


def location_of(offer: Offer | Mapping[str, Any]) -> Location:
    if isinstance(offer, Offer):
        return (offer.provider, offer.region, offer.zone)
    return (str(offer.get("provider")), offer.get("region"), offer.get("zone"))


def as_location(value: Sequence[Any] | None) -> Location | None:
    """A location as stored in JSON (a list of three), or None."""
    if not value or len(value) != 3:
        return None
    return (str(value[0]), value[1], value[2])


def place(offers: Sequence[Offer], preempted: Iterable[Location],
          in_use: Iterable[Location]) -> list[Offer]:
    """``offers`` (best first) reordered so the chosen location's come first."""
    if not offers:
        return []
    locations = list(dict.fromkeys(location_of(o) for o in offers))
    gone = set(preempted)
    active = [loc for loc in locations if loc not in gone] or locations
    used = set(in_use)
    candidates = [loc for loc in active if loc not in used] or active
    cost = {loc: min(o.hourly_price for o in offers if location_of(o) == loc)
            for loc in candidates}
    chosen = min(candidates, key=lambda loc: (cost[loc], locations.index(loc)))
    rank = {loc: (0 if loc == chosen else 1 if loc in active else 2) for loc in locations}
    return sorted(offers, key=lambda o: rank[location_of(o)])  # stable: keeps the order


def after_transitions(preempted: Iterable[Sequence[Any]], before: Sequence[Mapping[str, Any]],
                      after: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """The preempted locations once this step's replica transitions are counted: a spot
    replica PREEMPTED adds its location, one READY there again removes it."""
    gone = [loc for loc in (as_location(p) for p in preempted) if loc is not None]
    was = {r["replica_id"]: r.get("status") for r in before}
    for replica in after:
        loc = as_location(replica.get("location"))
        status = replica.get("status")
        if loc is None or not replica.get("is_spot") or was.get(replica["replica_id"]) == status:
            continue
        if status == "PREEMPTED" and loc not in gone:
            gone.append(loc)
        elif status == "READY" and loc in gone:
            gone.remove(loc)
    return [list(loc) for loc in gone]
