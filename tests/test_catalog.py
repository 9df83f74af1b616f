"""The shipped AWS/GCP catalogs and the offer query over them."""

from __future__ import annotations

import os
import shutil

import pytest

from skystate.exceptions import NotSupportedError
from skystate.providers import catalog
from skystate.providers.base import OfferQuery

GPUS = ("T4", "L4", "A10G", "V100", "A100", "A100-80GB", "H100")


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("SKYSTATE_HOME", str(tmp_path / "home"))


def test_catalogs_cover_the_common_gpus_in_several_regions():
    for gpu in GPUS:
        regions = {
            (o.provider, o.region)
            for cloud in catalog.CLOUDS
            for count in (1, 2, 4, 8)
            for o in catalog.offers(cloud, OfferQuery(accelerators={gpu: count}))
        }
        assert len(regions) >= 3, (gpu, regions)
    assert {"A10G"} <= set(catalog.accelerator_names("aws"))
    assert {"T4", "V100", "L4", "A100", "A100-80GB", "H100"} <= set(
        catalog.accelerator_names("gcp"))


def test_rows_are_well_formed_and_zones_belong_to_their_region():
    for cloud in catalog.CLOUDS:
        rows = catalog.entries(cloud)
        assert len(rows) > 500
        for row in rows:
            assert row.zone.startswith(row.region), row
            assert row.price > 0 and row.vcpus > 0 and row.memory_gib > 0
            assert row.spot_price is None or 0 < row.spot_price < row.price, row
            assert (row.accelerator_name is None) == (row.accelerator_count == 0), row
        keys = [(r.instance_type, r.zone, r.accelerator_name, r.accelerator_count) for r in rows]
        assert len(keys) == len(set(keys)), f"duplicate rows in {cloud}"


def test_aws_types_are_real_names_moto_knows_except_p3():
    names = {r.instance_type for r in catalog.entries("aws")}
    assert {"g4dn.xlarge", "g5.xlarge", "p4d.24xlarge", "p5.48xlarge", "m5.large"} <= names


def test_accelerator_query_matches_name_case_insensitively_and_count_exactly():
    offers = catalog.offers("aws", OfferQuery(accelerators={"a10g": 4}))
    assert offers and {o.instance_type for o in offers} == {"g5.12xlarge", "g5.24xlarge"}
    assert all(o.accelerators == {"A10G": 4} for o in offers)
    assert catalog.offers("aws", OfferQuery(accelerators={"A10G": 3})) == []
    assert catalog.offers("aws", OfferQuery(accelerators={"Z9000": 1})) == []


def test_cpus_and_memory_exact_or_at_least():
    exact = catalog.offers("gcp", OfferQuery(cpus="8", memory="32"))
    assert exact and all(o.cpus == 8 and o.memory_gib == 32 for o in exact)
    assert all(not o.accelerators for o in exact), "CPU requests get CPU-only instances"
    at_least = catalog.offers("gcp", OfferQuery(cpus="60+", memory="300+"))
    assert at_least and all(o.cpus >= 60 and o.memory_gib >= 300 for o in at_least)
    assert len(at_least) > len({o.instance_type for o in at_least})  # several zones each


def test_spot_uses_the_spot_column_and_drops_rows_without_one():
    rows = [r for r in catalog.entries("aws") if r.instance_type == "p5.48xlarge"]
    with_spot = {r.zone: r.spot_price for r in rows if r.spot_price is not None}
    assert 0 < len(with_spot) < len(rows), "the snapshot has zones without p5 spot capacity"
    spot = catalog.offers("aws", OfferQuery(accelerators={"H100": 8}, use_spot=True))
    assert {o.zone: o.hourly_price for o in spot} == with_spot
    assert all(o.use_spot for o in spot)
    on_demand = catalog.offers("aws", OfferQuery(accelerators={"H100": 8}))
    assert {o.zone for o in on_demand} == {r.zone for r in rows}


def test_region_zone_instance_type_and_enabled_regions_constrain():
    query = OfferQuery(accelerators={"T4": 1}, region="us-east-1")
    assert {o.region for o in catalog.offers("aws", query)} == {"us-east-1"}
    zoned = catalog.offers("aws", OfferQuery(accelerators={"T4": 1}, zone="us-west-2b"))
    assert zoned and {o.zone for o in zoned} == {"us-west-2b"}
    typed = catalog.offers("gcp", OfferQuery(instance_type="a2-highgpu-1g"))
    assert typed and {o.accelerators["A100"] for o in typed} == {1}
    enabled = catalog.offers("gcp", OfferQuery(accelerators={"L4": 1}), regions=["us-east1"])
    assert enabled and {o.region for o in enabled} == {"us-east1"}
    assert catalog.offers("gcp", OfferQuery(accelerators={"L4": 1}), regions=[]) == []


def test_a_refreshed_catalog_in_skystate_home_takes_precedence(tmp_path):
    refreshed = tmp_path / "home" / "catalogs" / "aws.csv"
    refreshed.parent.mkdir(parents=True)
    shutil.copy(catalog.SHIPPED_DIR / "aws.csv", refreshed)
    assert catalog.catalog_path("aws") == refreshed
    with refreshed.open("a") as handle:
        handle.write("x9.huge,8,64,T4,1,mars-1,mars-1a,0.0100,\n")
    os.utime(refreshed, ns=(1, 1))  # a new mtime invalidates the cache
    cheapest = min(catalog.offers("aws", OfferQuery(accelerators={"T4": 1})),
                   key=lambda o: o.hourly_price)
    assert (cheapest.instance_type, cheapest.zone) == ("x9.huge", "mars-1a")


def test_a_broken_catalog_names_file_and_line(tmp_path):
    from skystate.exceptions import SkyStateError

    refreshed = tmp_path / "home" / "catalogs" / "gcp.csv"
    refreshed.parent.mkdir(parents=True)
    refreshed.write_text(",".join(catalog.COLUMNS) + "\nn2-standard-2,two,8,,0,r,r-a,1,\n")
    with pytest.raises(SkyStateError, match=r"gcp.csv, line 2: .*two"):
        catalog.entries("gcp")


def test_unknown_cloud_is_not_supported():
    with pytest.raises(NotSupportedError, match="azure"):
        catalog.offers("azure", OfferQuery())
