"""Pick where a cluster runs: enumerate offers for every candidate, rank them.

``any_of`` candidates are ranked by price (cheapest first); ``ordered`` candidates keep
the user's order and rank by price only within one candidate. The first offer is the
one a plan shows; the rest are the failover order.
"""

from __future__ import annotations

from skystate.exceptions import NotSupportedError
from skystate.providers.base import Offer, OfferQuery
from skystate.providers.registry import DEFAULT_PROVIDER, Providers
from skystate.spec.resources import Resources


def query_for(resources: Resources, num_nodes: int) -> tuple[str, OfferQuery]:
    provider, region, zone = resources.location()
    accelerators = {
        name: int(count) if float(count).is_integer() else count
        for name, count in (resources.accelerators or {}).items()
    }
    return provider or DEFAULT_PROVIDER, OfferQuery(
        accelerators=accelerators,  # type: ignore[arg-type]
        cpus=resources.cpus,
        memory=resources.memory,
        use_spot=bool(resources.use_spot),
        region=region,
        zone=zone,
        instance_type=resources.instance_type,
        num_nodes=num_nodes,
    )


def rank_offers(resources: Resources, num_nodes: int, providers: Providers) -> list[Offer]:
    """Every feasible offer, best first; empty when nothing can satisfy the request."""
    ranked: list[Offer] = []
    ordered = resources.ordered is not None
    for candidate in resources.candidates():
        name, query = query_for(candidate, num_nodes)
        try:
            offers = providers.get(name).offers(query)
        except NotSupportedError:
            offers = []
        offers = sorted(offers, key=lambda o: (o.hourly_price, o.infra, o.instance_type))
        ranked.extend(offers)
    if not ordered:
        ranked.sort(key=lambda o: o.hourly_price)
    seen: set[tuple[str, str | None, str | None, str, bool]] = set()
    unique = []
    for offer in ranked:
        key = (offer.provider, offer.region, offer.zone, offer.instance_type, offer.use_spot)
        if key not in seen:
            seen.add(key)
            unique.append(offer)
    return unique


def explain_infeasible(resources: Resources, providers: Providers) -> str:
    """Why no offer exists, in one sentence for the plan."""
    reasons = []
    for candidate in resources.candidates():
        name, _ = query_for(candidate, 1)
        try:
            providers.get(name)
        except NotSupportedError as exc:
            reasons.append(str(exc))
            continue
        wanted = candidate.accelerator_str()
        reasons.append(
            f"{name} offers nothing with accelerators={wanted}, cpus={candidate.cpus or '-'}, "
            f"memory={candidate.memory or '-'}"
        )
    return "; ".join(reasons) or "no offer satisfies the request"
