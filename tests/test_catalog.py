"""The shipped AWS/GCP catalogs and the offer query over them."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import moto_fixture
import pytest
import typer
from typer.testing import CliRunner

from skystate.exceptions import NotSupportedError
from skystate.providers import catalog, catalog_refresh
from skystate.providers.base import OfferQuery
from skystate.providers.check import ProviderCheck, check_providers
from skystate.providers.registry import IMPLEMENTED

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


# --- show-gpus ------------------------------------------------------------------------


def _cli() -> typer.Typer:
    """The two commands as cli.py registers them."""
    from skystate.cli_catalog import check, show_gpus

    app = typer.Typer()
    app.command("show-gpus")(show_gpus)
    app.command("check")(check)
    return app


def test_show_gpus_json_lists_instance_types_regions_and_both_prices():
    result = CliRunner().invoke(_cli(), ["show-gpus", "A100:8", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["cloud"], r["instance_type"]) for r in rows] == [
        ("aws", "p4d.24xlarge"), ("gcp", "a2-highgpu-8g")]
    p4d = [e for e in catalog.entries("aws") if e.instance_type == "p4d.24xlarge"]
    assert rows[0]["price"] == min(e.price for e in p4d)
    assert rows[0]["spot_price"] == min(e.spot_price for e in p4d if e.spot_price)
    assert rows[0]["regions"] == sorted({e.region for e in p4d})


def test_show_gpus_plain_table_when_piped_and_cloud_filter():
    result = CliRunner().invoke(_cli(), ["show-gpus", "l4", "--cloud", "gcp", "-o", "wide"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ACCELERATOR", "COUNT", "CLOUD", "INSTANCE_TYPE", "vCPUs",
                                "MEM(GiB)", "$/h", "SPOT", "$/h", "REGIONS"]
    assert "┃" not in result.output and "\x1b[" not in result.output
    assert all(line.split()[:3] in (["L4", "1", "gcp"], ["L4", "2", "gcp"], ["L4", "4", "gcp"],
                                    ["L4", "8", "gcp"]) for line in lines[1:])
    assert lines[1].split()[3] == "g2-standard-4"  # cheapest first within a count


def test_show_gpus_without_name_covers_every_gpu_and_the_local_inventory(tmp_path):
    config = tmp_path / "home" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("providers:\n  local: {accelerators: {H100: 2}}\n")
    rows = json.loads(CliRunner().invoke(_cli(), ["show-gpus", "--json"]).stdout)
    assert set(GPUS) <= {r["accelerator"] for r in rows}
    assert {"accelerator": "H100", "count": 2, "cloud": "local"}.items() <= next(
        r for r in rows if r["cloud"] == "local").items()


def test_show_gpus_unknown_name_or_cloud_fails_clearly():
    missing = CliRunner().invoke(_cli(), ["show-gpus", "Z9000"])
    assert missing.exit_code == 1 and "No 'Z9000' offered" in missing.output
    bad = CliRunner().invoke(_cli(), ["show-gpus", "--cloud", "azure"])
    assert bad.exit_code == 2 and "unknown cloud 'azure'" in bad.output


def test_importing_the_cli_commands_imports_nothing_heavy():
    code = ("import sys, skystate.cli_catalog; heavy = [m for m in ('boto3', 'google.auth', "
            "'google.cloud', 'rich', 'skystate.providers.catalog', 'pydantic') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# --- check ----------------------------------------------------------------------------


@pytest.fixture
def no_cloud_credentials(tmp_path, monkeypatch):
    """No credentials anywhere boto3/google.auth look (IMDS off: this box is no EC2 VM)."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "GOOGLE_APPLICATION_CREDENTIALS",
                "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none" / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none" / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "none" / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    return monkeypatch


def _verdicts(config=None) -> dict[str, ProviderCheck]:
    return {c.name: c for c in check_providers(config or {})}


def test_check_without_credentials_says_why(no_cloud_credentials):
    verdicts = _verdicts()
    assert verdicts["local"].usable
    assert not verdicts["ssh"].usable and "no pools configured" in verdicts["ssh"].reason
    assert not verdicts["aws"].usable and "AWS_ACCESS_KEY_ID" in verdicts["aws"].reason
    assert not verdicts["gcp"].usable
    assert "gcloud auth application-default login" in verdicts["gcp"].reason


def test_check_with_credentials_in_the_environment(no_cloud_credentials, tmp_path):
    no_cloud_credentials.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    no_cloud_credentials.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "id",
                               "client_secret": "s", "refresh_token": "t"}))
    no_cloud_credentials.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    no_cloud_credentials.setenv("GOOGLE_CLOUD_PROJECT", "my-proj")
    key = tmp_path / "id_ed25519"
    key.write_text("key")
    verdicts = _verdicts({"ssh": {"pools": {"lab": {"hosts": ["10.0.0.5", "10.0.0.6"],
                                                    "identity_file": str(key)}}}})
    assert verdicts["aws"].usable == ("aws" in IMPLEMENTED)
    assert "credentials from env" in verdicts["aws"].reason
    assert verdicts["gcp"].usable == ("gcp" in IMPLEMENTED)
    assert "project my-proj" in verdicts["gcp"].reason
    assert verdicts["ssh"].usable and "lab (2 host(s))" in verdicts["ssh"].reason
    no_project = _verdicts({"ssh": {"pools": {"lab": {"hosts": ["h"],
                                                      "identity_file": str(tmp_path / "x")}}}})
    assert not no_project["ssh"].usable and "identity_file" in no_project["ssh"].reason


def test_check_probes_a_configured_aws_endpoint(no_cloud_credentials, moto_url, tmp_path):
    no_cloud_credentials.setenv("AWS_ACCESS_KEY_ID", "testing")
    no_cloud_credentials.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    config = tmp_path / "home" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(f"providers:\n  aws: {{endpoint_url: '{moto_url}'}}\n"
                      "  gcp: {api_endpoint: 'http://127.0.0.1:9', project: p}\n")
    result = CliRunner().invoke(_cli(), ["check", "--json"])
    verdicts = {v["name"]: v for v in json.loads(result.stdout)}
    assert f"endpoint {moto_url} answers" in verdicts["aws"]["reason"]
    assert verdicts["aws"]["usable"] == ("aws" in IMPLEMENTED)
    assert "api_endpoint http://127.0.0.1:9" in verdicts["gcp"]["reason"]
    assert "project p" in verdicts["gcp"]["reason"]
    projectless = _verdicts({"gcp": {"api_endpoint": "http://127.0.0.1:9"}})["gcp"]
    assert not projectless.usable and "no project" in projectless.reason
    down = _verdicts({"aws": {"endpoint_url": "http://127.0.0.1:9"}})["aws"]
    assert not down.usable and "endpoint http://127.0.0.1:9" in down.reason


# --- refresh --------------------------------------------------------------------------


moto_url = moto_fixture.moto_url  # moto's EC2 API in server mode (real HTTP), warmed up


def test_refresh_aws_from_moto_writes_a_catalog_the_optimizer_uses(moto_url, monkeypatch):
    """Shapes, zones and spot prices come from moto's EC2 API; on-demand prices are kept
    from the current catalog (moto has no Pricing API)."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    ec2 = boto3.client("ec2", region_name="us-west-2", endpoint_url=moto_url)
    offered = {(o["InstanceType"], o["Location"]) for page in ec2.get_paginator(
        "describe_instance_type_offerings").paginate(LocationType="availability-zone")
        for o in page["InstanceTypeOfferings"]}
    spot = {(s["InstanceType"], s["AvailabilityZone"]): float(s["SpotPrice"]) for s in
            ec2.describe_spot_price_history(InstanceTypes=["p4d.24xlarge"])["SpotPriceHistory"]}
    shipped = {(e.instance_type, e.region): e.price for e in catalog.entries("aws")}

    assert catalog_refresh.main(["aws", "--regions", "us-west-2", "--families", "g5,p4d,p4de",
                                 "--endpoint-url", moto_url, "--on-demand", "catalog"]) == 0
    assert catalog.catalog_path("aws").parent == Path(os.environ["SKYSTATE_HOME"]) / "catalogs"
    rows = catalog.entries("aws")
    fresh = [r for r in rows if r.region == "us-west-2"]
    assert {r.instance_type.split(".")[0] for r in fresh} == {"g5", "p4d", "p4de"}
    assert all((r.instance_type, r.zone) in offered for r in fresh)
    assert all(r.price == shipped[(r.instance_type, r.region)] for r in fresh)
    p4d = [r for r in fresh if r.instance_type == "p4d.24xlarge"]
    assert p4d and all(r.spot_price == spot[(r.instance_type, r.zone)] for r in p4d)
    assert (p4d[0].vcpus, p4d[0].memory_gib, p4d[0].accelerator_name,
            p4d[0].accelerator_count) == (96, 1152, "A100", 8)
    assert {r.accelerator_name for r in fresh if r.instance_type == "p4de.24xlarge"} == {
        "A100-80GB"}
    assert {r.region for r in rows} == {e.region for e in _shipped_rows("aws")}, \
        "regions not refreshed are kept"
    cheapest = catalog.offers("aws", OfferQuery(accelerators={"A100": 8}, use_spot=True))
    assert min(cheapest, key=lambda o: o.hourly_price).region == "us-west-2"


def _shipped_rows(cloud: str) -> list[catalog.CatalogEntry]:
    with (catalog.SHIPPED_DIR / f"{cloud}.csv").open(newline="") as handle:
        return [catalog._entry(r) for r in csv.DictReader(handle)]


def test_aws_pricing_api_item_parses_the_hourly_on_demand_price():
    item = {"product": {"attributes": {"instanceType": "g5.xlarge", "regionCode": "us-east-1"}},
            "terms": {"OnDemand": {"X.JRTCKXETXF": {"priceDimensions": {
                "X.JRTCKXETXF.6YS6EN2CT7": {"unit": "Hrs",
                                            "pricePerUnit": {"USD": "1.0060000000"}}}}}}}
    assert catalog_refresh.aws_price_item(json.dumps(item)) == ("g5.xlarge", 1.006)
    item["terms"]["OnDemand"]["X.JRTCKXETXF"]["priceDimensions"]["X.JRTCKXETXF.6YS6EN2CT7"][
        "pricePerUnit"]["USD"] = "0.0000000000"  # reserved-capacity placeholder rows
    assert catalog_refresh.aws_price_item(item) is None


def test_gcp_billing_skus_price_a_machine_by_core_ram_and_gpu():
    """Hand-written SKUs in the Cloud Billing catalog's documented shape (no GCP here)."""
    def sku(description, units, nanos, regions=("us-central1",)):
        return {"description": description, "serviceRegions": list(regions),
                "pricingInfo": [{"pricingExpression": {"tieredRates": [
                    {"unitPrice": {"currencyCode": "USD", "units": str(units),
                                   "nanos": nanos}}]}}]}

    unit = catalog_refresh.gcp_unit_prices([
        sku("N1 Predefined Instance Core running in Americas", 0, 31611000),
        sku("N1 Predefined Instance Ram running in Americas", 0, 4237000),
        sku("Nvidia Tesla T4 GPU running in Americas", 0, 350000000),
        sku("Spot Preemptible Nvidia Tesla T4 GPU running in Americas", 0, 110000000),
        sku("Spot Preemptible N1 Predefined Instance Core running in Americas", 0, 6655000),
        sku("Spot Preemptible N1 Predefined Instance Ram running in Americas", 0, 892000),
        sku("Nvidia Tesla A100 80GB GPU running in Americas", 3, 930000000),
        sku("Licensing fee for Windows", 1, 0),
    ])
    shape = catalog_refresh.Shape("n1-standard-8", 8, 30, "T4", 1, "us-central1",
                                  "us-central1-a")
    assert catalog_refresh.gcp_price(shape, unit, spot=False) == round(
        8 * 0.031611 + 30 * 0.004237 + 0.35, 4)
    assert catalog_refresh.gcp_price(shape, unit, spot=True) == round(
        8 * 0.006655 + 30 * 0.000892 + 0.11, 4)
    assert unit[("us-central1", "A100-80GB", "gpu", False)] == 3.93
    elsewhere = catalog_refresh.Shape("n1-standard-8", 8, 30, None, 0, "europe-west4", "x-a")
    assert catalog_refresh.gcp_price(elsewhere, unit, spot=False) is None


def test_written_catalog_round_trips(tmp_path):
    rows = catalog.entries("gcp")[:50]
    out = tmp_path / "out.csv"
    catalog_refresh.write_catalog(rows, out)
    with out.open(newline="") as handle:
        assert [catalog._entry(r) for r in csv.DictReader(handle)] == rows
