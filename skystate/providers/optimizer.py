"""Pick where a cluster runs: enumerate offers for every candidate, rank them.

The ranked list is also the failover order: provisioning tries the first offer, then the
next, across zones, regions and clouds. Ranking:

- ``OptimizeTarget.COST``: cheapest $/hour per node first; equal prices keep zones of one
  region together (sorted by cloud, region, zone, instance type).
- ``OptimizeTarget.TIME``: shortest estimated run time first, i.e. the highest throughput
  (``estimated_throughput``); equal estimates are broken by price, then as above.
- ``any_of`` candidates are ranked together; ``ordered`` candidates keep the user's order
  and are ranked only within one candidate.

A request without ``infra`` is optimized over every *enabled* provider (as in SkyPilot:
``Providers.enabled()``, the rule in ``providers/enabled.py``; ``local`` always counts,
with what its inventory offers); ``infra: '*'`` (or ``'*/region'``) asks every provider
(``ANY_INFRA``), enabled or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from skystate.enums import OptimizeTarget
from skystate.exceptions import NotSupportedError
from skystate.providers.base import Offer, OfferQuery
from skystate.providers.registry import DEFAULT_PROVIDER, Providers
from skystate.spec.resources import Resources

ANY_INFRA = ("local", "ssh", "aws", "gcp")

# Relative training throughput of one accelerator (mixed precision), one T4 = 1.0.
# Rounded from public benchmark ratios (MLPerf Training, Lambda's GPU benchmarks); it only
# has to order accelerators sensibly, not predict run times. Unknown names count as 1.0.
RELATIVE_THROUGHPUT = {
    "T4": 1.0,
    "P100": 0.9,
    "A10G": 2.2,
    "L4": 2.0,
    "A10": 2.6,
    "V100": 2.6,
    "V100-32GB": 2.7,
    "A100": 5.0,
    "A100-80GB": 5.5,
    "H100": 9.0,
    "H200": 10.5,
}
# A CPU-only node: each vCPU counts this many T4s (so 50 vCPUs ~ one T4).
VCPU_THROUGHPUT = 0.02


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


def providers_of(resources: Resources, enabled: Sequence[str] = (DEFAULT_PROVIDER,)
                 ) -> list[str]:
    """The providers one candidate may run on: its cloud, all for ``infra: '*'``, the
    ``enabled`` ones without infra."""
    if (resources.infra or "").startswith("*"):
        return list(ANY_INFRA)
    if resources.location()[0] is None:
        return list(enabled)
    return [query_for(resources, 1)[0]]


def without_infra(resources: Resources) -> bool:
    """Whether some candidate names no provider (so it is optimized over the enabled ones)."""
    return any(c.location()[0] is None and not (c.infra or "").startswith("*")
               for c in resources.candidates())


def estimated_throughput(offer: Offer, num_nodes: int = 1) -> float:
    """Relative work per hour of a cluster of ``num_nodes`` such nodes (T4 = 1)."""
    if offer.accelerators:
        per_node = sum(RELATIVE_THROUGHPUT.get(name, 1.0) * float(count)
                       for name, count in offer.accelerators.items())
    else:
        per_node = float(offer.cpus) * VCPU_THROUGHPUT
    return per_node * num_nodes


def ranking_key(target: OptimizeTarget,
                num_nodes: int = 1) -> Callable[[Offer], tuple[object, ...]]:
    """The sort key of ``target``; smaller is better."""
    def place(offer: Offer) -> tuple[str, str, str, str]:
        return (offer.provider, offer.region or "", offer.zone or "", offer.instance_type)

    if target == OptimizeTarget.TIME:
        return lambda o: (-estimated_throughput(o, num_nodes), o.hourly_price, *place(o))
    return lambda o: (o.hourly_price, *place(o))


def candidate_offers(candidate: Resources, num_nodes: int, providers: Providers) -> list[Offer]:
    """Every offer of one concrete candidate, from each provider it may run on."""
    _, query = query_for(candidate, num_nodes)
    offers: list[Offer] = []
    for name in providers_of(candidate, providers.enabled().considered):
        try:
            offers.extend(providers.offers(name, query))
        except NotSupportedError:
            continue
    return offers


def rank_offers(resources: Resources, num_nodes: int, providers: Providers, *,
                target: OptimizeTarget = OptimizeTarget.COST) -> list[Offer]:
    """Every feasible offer, best first (the failover order); empty when none exists."""
    key = ranking_key(target, num_nodes)
    ranked: list[Offer] = []
    for candidate in resources.candidates():
        ranked.extend(sorted(candidate_offers(candidate, num_nodes, providers), key=key))
    if resources.ordered is None:
        ranked.sort(key=key)
    # Same place and machine is one offer; the local and ssh providers name every machine
    # alike ("local"), so what it hands out (accelerators) is part of the identity.
    seen: set[tuple[Any, ...]] = set()
    unique = []
    for offer in ranked:
        identity = (offer.provider, offer.region, offer.zone, offer.instance_type,
                    offer.use_spot, tuple(sorted(offer.accelerators.items())))
        if identity not in seen:
            seen.add(identity)
            unique.append(offer)
    return unique


def describe_failover(offers: Sequence[Offer], limit: int = 5) -> str:
    """``aws/us-east-1/us-east-1a g5.xlarge $1.01/h → ...`` for plans and logs."""
    shown = [f"{o.infra} {o.instance_type}{' [spot]' if o.use_spot else ''} "
             f"${o.hourly_price:.2f}/h" for o in offers[:limit]]
    more = len(offers) - limit
    return " → ".join(shown) + (f" → … ({more} more)" if more > 0 else "")


def explain_infeasible(resources: Resources, providers: Providers) -> str:
    """Why no offer exists, one clause per candidate and provider, with what is offered;
    without infra, also which providers were considered and why the others were not."""
    from skystate.providers.registry import IMPLEMENTED

    enabled = providers.enabled()
    reasons = []
    for candidate in resources.candidates():
        for name in providers_of(candidate, enabled.considered):
            if name not in IMPLEMENTED:
                try:
                    providers.get(name)
                except NotSupportedError as exc:
                    reasons.append(str(exc))
                continue
            section = providers.config.get(name) or {}
            reasons.append(explain_candidate(name, candidate, section.get("regions"), section))
    text = "; ".join(reasons) or "no offer satisfies the request"
    if without_infra(resources):
        text += f" (no infra given: {enabled.describe()})"
    return text


def explain_candidate(provider: str, candidate: Resources,
                      regions: Sequence[str] | None = None,
                      section: dict[str, Any] | None = None) -> str:
    """One provider's reason; for a cloud with a catalog, which constraint rules it out;
    for local and ssh, what their inventory holds."""
    _, query = query_for(candidate, 1)
    reason = (f"{provider} offers nothing with accelerators={candidate.accelerator_str()}, "
              f"cpus={candidate.cpus or '-'}, memory={candidate.memory or '-'}")
    where = "/".join(p for p in (query.region, query.zone) if p)
    if where:
        reason += f" in {where}"
    if query.use_spot:
        reason += " as spot"
    from skystate.providers import catalog

    if provider not in catalog.CLOUDS:
        inventory = _inventory(provider, section or {}) if candidate.accelerators else ""
        return f"{reason} ({inventory})" if inventory else reason
    hints = _catalog_hints(provider, query, regions)
    return f"{reason} ({'; '.join(hints)})" if hints else reason


def _inventory(provider: str, section: dict[str, Any]) -> str:
    """What accelerators local (the simulated inventory) or the ssh pools have."""
    def listed(accelerators: dict[str, Any]) -> str:
        return ", ".join(f"{k}:{v}" for k, v in accelerators.items()) or "none"

    if provider == "local":
        return f"its inventory (providers.local.accelerators): " \
               f"{listed(section.get('accelerators') or {})}"
    if provider == "ssh":
        pools = section.get("pools") or {}
        return "its pools have " + "; ".join(
            f"{name}: {listed(pool.get('accelerators') or {})}" for name, pool in pools.items())
    return ""


def _catalog_hints(cloud: str, query: OfferQuery, regions: Sequence[str] | None) -> list[str]:
    """Which single constraint, dropped, would make the request feasible."""
    from dataclasses import replace

    from skystate.providers import catalog
    from skystate.spec.suggest import did_you_mean

    if query.accelerators:
        ((name, count),) = query.accelerators.items()
        canonical = catalog.canonical_accelerator(name, cloud)
        if canonical is None:
            names = catalog.accelerator_names(cloud)
            return [f"{cloud} has no accelerator {name!r}{did_you_mean(name, names)}; "
                    f"it offers {', '.join(names)}"]
        counts = sorted({r.accelerator_count for r in catalog.entries(cloud)
                         if r.accelerator_name == canonical})
        if count not in counts:
            return [f"{canonical} comes in counts {', '.join(map(str, counts))} on {cloud}"]
    hints = []
    anywhere = catalog.offers(cloud, replace(query, region=None, zone=None))
    if (query.region or query.zone or regions is not None) and anywhere:
        places = sorted({o.region for o in anywhere if o.region})
        hints.append(f"offered in {', '.join(places[:8])}{' …' if len(places) > 8 else ''}"
                     + ("" if regions is None else f" (enabled regions: {', '.join(regions)})"))
    if query.use_spot and catalog.offers(cloud, replace(query, use_spot=False), regions):
        hints.append("only on-demand capacity there; set use_spot: false")
    if (query.cpus or query.memory) and not catalog.offers(cloud, query, regions):
        sized = catalog.offers(cloud, replace(query, cpus=None, memory=None), regions)
        if sized:
            cpus = sorted({o.cpus for o in sized})
            memory = sorted({o.memory_gib for o in sized})
            hints.append(f"its instances have {_span(cpus)} vCPUs and {_span(memory)} GiB")
    return hints


def _span(values: list[float]) -> str:
    low, high = f"{values[0]:g}", f"{values[-1]:g}"
    return low if low == high else f"{low}-{high}"
