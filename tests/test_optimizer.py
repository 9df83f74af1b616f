"""The optimizer: offers enumerated from the catalogs, ranked by cost or time, in failover order.

The aws/gcp offers come from a small provider object that answers ``offers`` straight from
the shipped catalog (what the aws/gcp providers do too); nothing here provisions, so no
cloud endpoint is needed. Local offers come from the real local provider.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from skystate.enums import OptimizeTarget
from skystate.exceptions import ProviderError, ResourcesUnavailableError
from skystate.providers import catalog
from skystate.providers.base import Offer, OfferQuery
from skystate.providers.optimizer import (
    describe_failover,
    estimated_throughput,
    explain_infeasible,
    rank_offers,
)
from skystate.providers.registry import Providers
from skystate.spec.resources import Resources


class CatalogOffers:
    """Answers ``offers`` from the catalog of one cloud, within its enabled regions."""

    def __init__(self, name: str, regions: Sequence[str] | None) -> None:
        self.name = name
        self.regions = regions

    def offers(self, query: OfferQuery) -> list[Offer]:
        return catalog.offers(self.name, query, self.regions)


class CatalogProviders(Providers):
    def _build(self, name: str) -> Any:
        if name in catalog.CLOUDS:
            return CatalogOffers(name, (self.config.get(name) or {}).get("regions"))
        return super()._build(name)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("SKYSTATE_HOME", str(tmp_path / "home"))


def rank(resources: dict[str, Any], num_nodes: int = 1, config: dict[str, Any] | None = None,
         **kw: Any) -> list[Offer]:
    return rank_offers(Resources.model_validate(resources), num_nodes,
                       CatalogProviders(config or {}), **kw)


def rows(cloud: str, accelerator: str | None, count: int = 0) -> list[catalog.CatalogEntry]:
    return [r for r in catalog.entries(cloud)
            if r.accelerator_name == accelerator and r.accelerator_count == count]


def test_cheapest_offer_first_and_every_zone_in_price_order():
    offers = rank({"infra": "aws", "accelerators": "A10G:1"})
    cheapest = min(rows("aws", "A10G", 1), key=lambda r: r.price)
    assert (offers[0].instance_type, offers[0].hourly_price) == ("g5.xlarge", cheapest.price)
    assert [o.hourly_price for o in offers] == sorted(o.hourly_price for o in offers)
    assert len(offers) == len(rows("aws", "A10G", 1)), "one offer per instance type and zone"


def test_equal_prices_keep_the_zones_of_a_region_together():
    offers = [o for o in rank({"infra": "aws", "accelerators": "T4"})
              if o.instance_type == "g4dn.xlarge"]
    regions = [o.region for o in offers]
    blocks = [r for i, r in enumerate(regions) if i == 0 or regions[i - 1] != r]
    assert len(blocks) == len(set(regions)), regions
    assert offers[0].infra == "aws/us-east-1/us-east-1a"


def test_spot_ranks_by_spot_price_and_is_cheaper_than_on_demand():
    spot = rank({"infra": "gcp", "accelerators": "L4:1", "use_spot": True})
    on_demand = rank({"infra": "gcp", "accelerators": "L4:1"})
    assert all(o.use_spot for o in spot) and not any(o.use_spot for o in on_demand)
    best = min((r for r in rows("gcp", "L4", 1) if r.spot_price), key=lambda r: r.spot_price)
    assert (spot[0].zone, spot[0].hourly_price) == (best.zone, best.spot_price)
    assert spot[0].hourly_price < on_demand[0].hourly_price / 2


def test_any_of_ranks_every_candidate_together_across_clouds():
    offers = rank({"any_of": [{"infra": "aws", "accelerators": "A100:8"},
                              {"infra": "gcp", "accelerators": "A100:8"}]})
    assert {o.provider for o in offers} == {"aws", "gcp"}
    assert offers[0].instance_type == "p4d.24xlarge"  # AWS's A100:8 is the cheaper snapshot
    assert [o.hourly_price for o in offers] == sorted(o.hourly_price for o in offers)


def test_ordered_keeps_the_users_preference_over_price():
    offers = rank({"infra": "gcp", "ordered": [{"accelerators": "H100:8"},
                                               {"accelerators": "A100:8"}]})
    names = [next(iter(o.accelerators)) for o in offers]
    first_a100 = names.index("A100")
    assert set(names[:first_a100]) == {"H100"} and set(names[first_a100:]) == {"A100"}
    assert offers[0].hourly_price > offers[first_a100].hourly_price  # preference, not price


def test_region_and_zone_constraints():
    in_region = rank({"infra": "gcp/europe-west4", "accelerators": "T4:1"})
    assert in_region and {o.region for o in in_region} == {"europe-west4"}
    in_zone = rank({"infra": "aws/us-west-2/us-west-2b", "accelerators": "A100:8"})
    assert [o.infra for o in in_zone] == ["aws/us-west-2/us-west-2b"]
    enabled = rank({"infra": "aws", "accelerators": "H100:8"},
                   config={"aws": {"regions": ["us-east-2"]}})
    assert {o.region for o in enabled} == {"us-east-2"}


def test_cpu_and_memory_bounds_pick_cpu_instances():
    offers = rank({"infra": "aws/us-east-1", "cpus": "8+", "memory": "60+"})
    assert offers[0].instance_type == "r5.2xlarge"  # 8 vCPU / 64 GiB is the cheapest fit
    assert all(o.cpus >= 8 and o.memory_gib >= 60 and not o.accelerators for o in offers)


def test_time_target_prefers_the_fastest_accelerator_then_the_price():
    request = {"any_of": [{"infra": "aws", "accelerators": "T4:1"},
                          {"infra": "aws", "accelerators": "A10G:1"},
                          {"infra": "gcp", "accelerators": "H100:8"}]}
    by_cost = rank(request)
    by_time = rank(request, target=OptimizeTarget.TIME)
    assert by_cost[0].accelerators == {"T4": 1}
    assert by_time[0].accelerators == {"H100": 8}
    assert sorted(map(repr, by_cost)) == sorted(map(repr, by_time))
    throughputs = [estimated_throughput(o) for o in by_time]
    assert throughputs == sorted(throughputs, reverse=True)
    a10g = [o for o in by_time if o.accelerators == {"A10G": 1}]
    assert [o.hourly_price for o in a10g] == sorted(o.hourly_price for o in a10g)
    assert a10g[0].instance_type == "g5.xlarge"


def test_time_target_for_cpus_prefers_more_vcpus_and_counts_nodes():
    offers = rank({"infra": "gcp/us-central1", "cpus": "32+"}, target=OptimizeTarget.TIME)
    assert offers[0].cpus == max(o.cpus for o in offers)
    one = offers[0]
    assert estimated_throughput(one, num_nodes=4) == 4 * estimated_throughput(one)


def test_any_infra_fails_over_across_clouds():
    offers = rank({"infra": "*", "accelerators": "V100:8"})
    assert {o.provider for o in offers} == {"aws", "gcp"}
    assert len({o.region for o in offers}) > 3
    text = describe_failover(offers, limit=2)
    assert text.count("→") == 2 and text.endswith(f"({len(offers) - 2} more)")


def test_default_provider_is_local():
    offers = rank({"cpus": "1+"}, config={"local": {"cpus": 4, "memory": 8}})
    assert [(o.provider, o.hourly_price) for o in offers] == [("local", 0.0)]


def test_infeasible_request_is_empty_with_a_reason_naming_what_exists():
    request = Resources.model_validate({"infra": "aws", "accelerators": "H100:3"})
    providers = CatalogProviders({})
    assert rank_offers(request, 1, providers) == []
    assert "H100 comes in counts 8 on aws" in explain_infeasible(request, providers)
    typo = Resources.model_validate({"infra": "gcp", "accelerators": "A100-80G:8"})
    assert "did you mean 'A100-80GB'" in explain_infeasible(typo, providers)
    wrong_region = Resources.model_validate({"infra": "aws/eu-west-1", "accelerators": "H100:8"})
    assert rank_offers(wrong_region, 1, providers) == []
    why = explain_infeasible(wrong_region, providers)
    assert "in eu-west-1" in why and "offered in ap-northeast-1, eu-central-1, us-east-1" in why
    too_big = Resources.model_validate({"infra": "aws", "accelerators": "T4:1", "cpus": "100+"})
    assert "its instances have 4-64 vCPUs" in explain_infeasible(too_big, providers)


def test_spot_only_infeasible_says_on_demand_exists():
    request = Resources.model_validate({"infra": "aws", "accelerators": "A100-80GB:8",
                                        "use_spot": True})
    providers = CatalogProviders({})
    assert rank_offers(request, 1, providers) == []
    assert "set use_spot: false" in explain_infeasible(request, providers)


def test_unavailable_provider_is_named_in_the_reason():
    request = Resources.model_validate({"infra": "azure", "accelerators": "A100:8"})
    assert rank_offers(request, 1, CatalogProviders({})) == []
    assert "'azure' is not available" in explain_infeasible(request, CatalogProviders({}))


class FailingProvider(CatalogOffers):
    """Offers from the catalog; every provision fails (capacity), recording the attempts."""

    def __init__(self, name: str) -> None:
        super().__init__(name, None)
        self.tried: list[str] = []
        self.types: list[str] = []

    def provision(self, request: Any) -> Any:
        self.tried.append(request.offer.infra)
        self.types.append(request.offer.instance_type)
        raise ProviderError(f"InsufficientInstanceCapacity in {request.offer.zone}")

    def terminate(self, name: str, owner: str) -> None:
        return None


def test_provision_failover_history_follows_the_ranked_order(tmp_path):
    """sdk launch → provision_with_failover over the ranked offers; every zone fails."""
    from skystate.reconcile.imperative import provision_with_failover, sdk_cluster_spec
    from skystate.reconcile.store import Store

    failing = FailingProvider("aws")

    class Failing(Providers):
        def _build(self, name: str) -> Any:
            return failing if name == "aws" else super()._build(name)

    resources = Resources.model_validate({"infra": "aws/us-east-2", "accelerators": "H100:8"})
    providers = Failing({})
    ranked = rank_offers(resources, 1, providers)
    spec = sdk_cluster_spec("fo", resources, 1, None)
    with pytest.raises(ResourcesUnavailableError) as info:
        provision_with_failover(Store(), spec, resources, providers, retry_until_up=False)
    assert failing.tried == [o.infra for o in ranked] == [
        "aws/us-east-2/us-east-2a", "aws/us-east-2/us-east-2b", "aws/us-east-2/us-east-2c"]
    assert len(info.value.failover_history) == 3
    assert "us-east-2c" in str(info.value.failover_history[-1])

    infeasible = Resources.model_validate({"infra": "aws", "accelerators": "H100:3"})
    with pytest.raises(ResourcesUnavailableError) as none:
        provision_with_failover(Store(), sdk_cluster_spec("fo2", infeasible, 1, None),
                                infeasible, providers, retry_until_up=False)
    assert none.value.failover_history == []


def test_provision_failover_follows_the_time_target_when_asked():
    from skystate.reconcile.imperative import provision_with_failover, sdk_cluster_spec
    from skystate.reconcile.store import Store

    failing = FailingProvider("gcp")

    class Failing(Providers):
        def _build(self, name: str) -> Any:
            return failing if name == "gcp" else super()._build(name)

    resources = Resources.model_validate({"infra": "gcp/us-central1/us-central1-a", "any_of": [
        {"accelerators": "T4:1"}, {"accelerators": "H100:8"}]})
    with pytest.raises(ResourcesUnavailableError) as info:
        provision_with_failover(Store(), sdk_cluster_spec("fast", resources, 1, None), resources,
                                Failing({}), retry_until_up=False, target=OptimizeTarget.TIME)
    ranked = rank_offers(resources, 1, Failing({}), target=OptimizeTarget.TIME)
    assert failing.types == [o.instance_type for o in ranked]
    assert failing.types[0] == "a3-highgpu-8g" and len(failing.types) > 3
    assert len(info.value.failover_history) == len(ranked)
    cheapest_first = rank_offers(resources, 1, Failing({}))
    assert cheapest_first[0].accelerators == {"T4": 1}
