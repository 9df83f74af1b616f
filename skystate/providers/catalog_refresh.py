"""Refresh the catalog CSVs from the clouds' own APIs (the documented way; docs/catalog.md).

    python -m skystate.providers.catalog_refresh aws [--regions us-east-1,us-west-2]
    python -m skystate.providers.catalog_refresh gcp --project my-proj [--regions us-central1]

The result goes to ``$SKYSTATE_HOME/catalogs/<cloud>.csv`` (``--out`` for another path,
e.g. the shipped ``skystate/providers/catalogs/`` snapshot), which the catalog then uses
instead of the shipped one. Rows of regions not refreshed are kept from the current
catalog, so refreshing one region never forgets the others.

AWS: shapes from ``describe_instance_type_offerings`` + ``describe_instance_types``, spot
prices from ``describe_spot_price_history`` (all three testable against moto, see
tests/test_catalog.py), on-demand prices from the Pricing API (``pricing.get_products``;
moto has no Pricing API, so ``--on-demand catalog`` keeps the current catalog's prices).
GCP: machine types and accelerator types from google-cloud-compute, prices from the Cloud
Billing catalog (``cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus``); only the
SKU parsing is exercised offline here.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from skystate.providers import catalog
from skystate.providers.catalog import COLUMNS, CatalogEntry

# The families the shipped snapshot covers; ``--families all`` takes every type.
AWS_FAMILIES = ("g4dn", "g5", "g6", "p3", "p3dn", "p4d", "p4de", "p5",
                "m5", "m6i", "c5", "c6i", "r5", "t3")
GCP_FAMILIES = ("n1", "n2", "e2", "c2", "a2", "g2", "a3")
GCP_BILLING_SERVICE = "6F81-5844-456A"  # Compute Engine in the Cloud Billing catalog


@dataclass(frozen=True)
class Shape:
    """An instance type offered in one zone, before pricing."""

    instance_type: str
    vcpus: float
    memory_gib: float
    accelerator_name: str | None
    accelerator_count: int
    region: str
    zone: str


# --- AWS ------------------------------------------------------------------------------


def aws_gpu_name(name: str, memory_mib: int) -> str:
    """EC2's GPU name in the catalog's spelling (memory tells the 80 GB A100 apart)."""
    if name == "A100" and memory_mib >= 80 * 1024:
        return "A100-80GB"
    if name == "V100" and memory_mib >= 32 * 1024:
        return "V100-32GB"
    return name


def aws_shapes(session: Any, regions: Sequence[str], families: Sequence[str] | None,
               endpoint_url: str | None = None) -> list[Shape]:
    """Every (instance type, zone) of ``families`` (None: all) in ``regions``."""
    shapes: list[Shape] = []
    for region in regions:
        ec2 = session.client("ec2", region_name=region, endpoint_url=endpoint_url)
        zones: dict[str, list[str]] = {}
        pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone")
        for page in pages:  # filtered here: moto ignores wildcards in the API's filter
            for offering in page["InstanceTypeOfferings"]:
                name = offering["InstanceType"]
                if not families or name.split(".")[0] in families:
                    zones.setdefault(name, []).append(offering["Location"])
        names = sorted(zones)
        for start in range(0, len(names), 100):  # the API takes at most 100 names
            reply = ec2.describe_instance_types(InstanceTypes=names[start:start + 100])
            for info in reply["InstanceTypes"]:
                shapes.extend(_aws_shape(info, region, sorted(zones[info["InstanceType"]])))
    return shapes


def _aws_shape(info: Mapping[str, Any], region: str, zones: Iterable[str]) -> list[Shape]:
    gpus = (info.get("GpuInfo") or {}).get("Gpus") or []
    name, count = None, 0
    if gpus:
        gpu = gpus[0]
        name = aws_gpu_name(gpu["Name"], int((gpu.get("MemoryInfo") or {}).get("SizeInMiB", 0)))
        count = int(gpu["Count"])
    vcpus = float(info["VCpuInfo"]["DefaultVCpus"])
    memory = round(info["MemoryInfo"]["SizeInMiB"] / 1024, 2)
    return [Shape(info["InstanceType"], vcpus, memory, name, count, region, zone)
            for zone in zones]


def aws_spot_prices(session: Any, regions: Sequence[str], instance_types: Sequence[str],
                    endpoint_url: str | None = None) -> dict[tuple[str, str], float]:
    """The latest Linux spot price per (instance type, zone)."""
    latest: dict[tuple[str, str], tuple[Any, float]] = {}
    for region in regions:
        ec2 = session.client("ec2", region_name=region, endpoint_url=endpoint_url)
        for start in range(0, len(instance_types), 100):
            pages = ec2.get_paginator("describe_spot_price_history").paginate(
                InstanceTypes=list(instance_types[start:start + 100]),
                ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"])
            for page in pages:
                for item in page["SpotPriceHistory"]:
                    key = (item["InstanceType"], item["AvailabilityZone"])
                    seen = latest.get(key)
                    if seen is None or item["Timestamp"] > seen[0]:
                        latest[key] = (item["Timestamp"], float(item["SpotPrice"]))
    return {key: price for key, (_, price) in latest.items()}


def aws_on_demand_prices(session: Any, regions: Sequence[str],
                         instance_types: Sequence[str]) -> dict[tuple[str, str], float]:
    """On-demand Linux $/hour per (instance type, region) from the AWS Pricing API."""
    pricing = session.client("pricing", region_name="us-east-1")
    prices: dict[tuple[str, str], float] = {}
    wanted = set(instance_types)
    for region in regions:
        filters = [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in (
            ("regionCode", region), ("operatingSystem", "Linux"), ("tenancy", "Shared"),
            ("preInstalledSw", "NA"), ("capacitystatus", "Used"))]
        pages = pricing.get_paginator("get_products").paginate(
            ServiceCode="AmazonEC2", Filters=filters)
        for page in pages:
            for document in page["PriceList"]:
                parsed = aws_price_item(document)
                if parsed and parsed[0] in wanted:
                    prices[(parsed[0], region)] = parsed[1]
    return prices


def aws_price_item(document: str | Mapping[str, Any]) -> tuple[str, float] | None:
    """(instance type, on-demand USD/hour) of one Pricing API price-list item."""
    item = json.loads(document) if isinstance(document, str) else document
    instance_type = item.get("product", {}).get("attributes", {}).get("instanceType")
    for term in (item.get("terms", {}).get("OnDemand") or {}).values():
        for dimension in (term.get("priceDimensions") or {}).values():
            usd = float(dimension.get("pricePerUnit", {}).get("USD", 0) or 0)
            if instance_type and usd > 0 and dimension.get("unit") in ("Hrs", "Hours"):
                return instance_type, usd
    return None


def refresh_aws(regions: Sequence[str], *, families: Sequence[str] | None = AWS_FAMILIES,
                endpoint_url: str | None = None, on_demand: str = "pricing-api",
                session: Any = None) -> list[CatalogEntry]:
    """Catalog rows for ``regions``; ``on_demand="catalog"`` keeps current prices."""
    import boto3

    session = session or boto3.Session()
    shapes = aws_shapes(session, regions, families, endpoint_url)
    types = sorted({s.instance_type for s in shapes})
    spot = aws_spot_prices(session, regions, types, endpoint_url)
    if on_demand == "catalog":
        prices = current_prices("aws")
    else:
        prices = aws_on_demand_prices(session, regions, types)
    rows = []
    for shape in shapes:
        price = prices.get((shape.instance_type, shape.region))
        if price is not None:  # no on-demand price: not sold there for Linux
            rows.append(_entry(shape, price, spot.get((shape.instance_type, shape.zone))))
    return rows


# --- GCP ------------------------------------------------------------------------------

# Billing SKU description prefixes of each family's vCPU/RAM and of each GPU.
GCP_FAMILY_SKUS = {"n1": "N1 Predefined Instance", "n2": "N2 Instance", "e2": "E2 Instance",
                   "c2": "Compute optimized", "a2": "A2 Instance", "g2": "G2 Instance",
                   "a3": "A3 Instance"}
GCP_GPU_SKUS = {"T4": "Nvidia Tesla T4 GPU", "V100": "Nvidia Tesla V100 GPU",
                "A100": "Nvidia Tesla A100 GPU", "A100-80GB": "Nvidia Tesla A100 80GB GPU",
                "L4": "Nvidia L4 GPU", "H100": "Nvidia H100 80GB GPU"}
# GPUs attached to n1 machines: count -> largest n1-standard vCPU count allowed.
GCP_N1_ATTACH = {"T4": {1: 16, 2: 32, 4: 64}, "V100": {1: 8, 2: 16, 4: 32, 8: 64}}
_SPOT = "Spot Preemptible "


def gcp_unit_prices(skus: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str, bool], float]:
    """{(region, thing, 'core'|'ram'|'gpu', spot): USD per unit-hour} from billing SKUs.

    ``thing`` is a family (``n2``) for core/ram and an accelerator name for gpu.
    """
    prices: dict[tuple[str, str, str, bool], float] = {}
    for sku in skus:
        description = sku.get("description", "")
        spot = description.startswith(_SPOT)
        text = description[len(_SPOT):] if spot else description
        match = _sku_kind(text)
        if match is None:
            continue
        price = _unit_price(sku)
        if price is None:
            continue
        for region in sku.get("serviceRegions", []):
            prices.setdefault((region, *match, spot), price)
    return prices


def _sku_kind(text: str) -> tuple[str, str] | None:
    for name, prefix in sorted(GCP_GPU_SKUS.items(), key=lambda kv: -len(kv[1])):
        if text.startswith(prefix + " running in"):
            return name, "gpu"
    for family, prefix in GCP_FAMILY_SKUS.items():
        found = re.match(re.escape(prefix) + r" (Core|Ram) running in", text)
        if found:
            return family, found.group(1).lower()
    return None


def _unit_price(sku: Mapping[str, Any]) -> float | None:
    """USD/hour of the SKU's last tier; RAM SKUs are priced per GiB-hour."""
    try:
        rate = sku["pricingInfo"][0]["pricingExpression"]["tieredRates"][-1]["unitPrice"]
    except (KeyError, IndexError):
        return None
    return int(rate.get("units") or 0) + int(rate.get("nanos") or 0) / 1e9


def gcp_price(shape: Shape, unit: Mapping[tuple[str, str, str, bool], float],
              spot: bool) -> float | None:
    """vCPUs × core + GiB × RAM (+ GPUs × GPU) $/hour, None when a part is unpriced."""
    family = shape.instance_type.split("-")[0]
    parts = [(family, "core", shape.vcpus), (family, "ram", shape.memory_gib)]
    if shape.accelerator_name:
        parts.append((shape.accelerator_name, "gpu", float(shape.accelerator_count)))
    total = 0.0
    for thing, kind, amount in parts:
        price = unit.get((shape.region, thing, kind, spot))
        if price is None:
            return None
        total += price * amount
    return round(total, 4)


def gcp_shapes(project: str, regions: Sequence[str], families: Sequence[str] | None,
               client_options: Mapping[str, Any] | None = None,
               credentials: Any = None) -> list[Shape]:
    """Machine types (with their built-in GPUs) and n1 + attachable GPU combinations."""
    from google.cloud import compute_v1

    kwargs: dict[str, Any] = {"credentials": credentials, "transport": "rest"}
    if client_options:
        kwargs["client_options"] = dict(client_options)
    machines = compute_v1.MachineTypesClient(**kwargs).aggregated_list(project=project)
    gpu_zones: dict[str, set[str]] = {}
    for scope, listing in compute_v1.AcceleratorTypesClient(**kwargs).aggregated_list(
            project=project):
        for accelerator in listing.accelerator_types:
            gpu_zones.setdefault(accelerator.name, set()).add(scope.rsplit("/", 1)[-1])
    shapes: list[Shape] = []
    for scope, listing in machines:
        zone = scope.rsplit("/", 1)[-1]
        region = zone.rsplit("-", 1)[0]
        if region not in regions:
            continue
        for machine in listing.machine_types:
            if families and machine.name.split("-")[0] not in families:
                continue
            shapes.extend(_gcp_machine_shapes(machine, region, zone, gpu_zones))
    return shapes


def _gcp_machine_shapes(machine: Any, region: str, zone: str,
                        gpu_zones: Mapping[str, set[str]]) -> list[Shape]:
    base = Shape(machine.name, float(machine.guest_cpus),
                 round(machine.memory_mb / 1024, 2), None, 0, region, zone)
    by_type = {v: k for k, v in catalog.GCP_ACCELERATOR_TYPES.items()}
    built_in = list(machine.accelerators or [])
    if built_in:
        name = by_type.get(built_in[0].guest_accelerator_type)
        if name is None:
            return []
        return [replace(base, accelerator_name=name,
                        accelerator_count=int(built_in[0].guest_accelerator_count))]
    shapes = [base]
    if machine.name.startswith("n1-standard-"):
        for name, counts in GCP_N1_ATTACH.items():
            if zone not in gpu_zones.get(catalog.GCP_ACCELERATOR_TYPES[name], ()):
                continue
            for count, max_vcpus in counts.items():
                if base.vcpus <= max_vcpus and base.vcpus >= 2 * count:
                    shapes.append(replace(base, accelerator_name=name, accelerator_count=count))
    return shapes


def gcp_billing_skus(api_key: str | None = None) -> list[dict[str, Any]]:
    """Every Compute Engine SKU of the Cloud Billing catalog (API key or ADC token)."""
    import urllib.parse
    import urllib.request

    base = f"https://cloudbilling.googleapis.com/v1/services/{GCP_BILLING_SERVICE}/skus"
    headers = {}
    if not api_key:
        import google.auth
        import google.auth.transport.requests

        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-billing.readonly"])
        credentials.refresh(google.auth.transport.requests.Request())
        headers["Authorization"] = f"Bearer {credentials.token}"
    skus: list[dict[str, Any]] = []
    token = ""
    while True:
        query = {"pageSize": "5000", **({"key": api_key} if api_key else {}),
                 **({"pageToken": token} if token else {})}
        request = urllib.request.Request(f"{base}?{urllib.parse.urlencode(query)}",
                                         headers=headers)
        with urllib.request.urlopen(request, timeout=60) as reply:
            page = json.load(reply)
        skus.extend(page.get("skus", []))
        token = page.get("nextPageToken", "")
        if not token:
            return skus


def refresh_gcp(project: str, regions: Sequence[str], *,
                families: Sequence[str] | None = GCP_FAMILIES,
                api_key: str | None = None) -> list[CatalogEntry]:
    shapes = gcp_shapes(project, regions, families)
    unit = gcp_unit_prices(gcp_billing_skus(api_key))
    rows = []
    for shape in shapes:
        price = gcp_price(shape, unit, spot=False)
        if price is not None:
            rows.append(_entry(shape, price, gcp_price(shape, unit, spot=True)))
    return rows


# --- writing --------------------------------------------------------------------------


def _entry(shape: Shape, price: float, spot: float | None) -> CatalogEntry:
    return CatalogEntry(shape.instance_type, shape.vcpus, shape.memory_gib,
                        shape.accelerator_name, shape.accelerator_count, shape.region,
                        shape.zone, price, spot)


def current_prices(cloud: str) -> dict[tuple[str, str], float]:
    """On-demand price per (instance type, region) in the catalog in use."""
    return {(r.instance_type, r.region): r.price for r in catalog.entries(cloud)}


def merged(cloud: str, fresh: Sequence[CatalogEntry],
           refreshed_regions: Iterable[str]) -> list[CatalogEntry]:
    """Fresh rows plus the current catalog's rows of every region not refreshed."""
    done = set(refreshed_regions)
    kept = [r for r in catalog.entries(cloud) if r.region not in done]
    return sorted([*kept, *fresh], key=lambda r: (
        r.accelerator_name or "", r.accelerator_count, r.instance_type, r.region, r.zone))


def write_catalog(rows: Iterable[CatalogEntry], path: Path) -> None:
    """Write atomically (temp file + rename): a reader never sees half a catalog."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow([r.instance_type, f"{r.vcpus:g}", f"{r.memory_gib:g}",
                             r.accelerator_name or "", r.accelerator_count, r.region, r.zone,
                             _money(r.price), "" if r.spot_price is None else
                             _money(r.spot_price)])
    os.replace(temp, path)


def _money(amount: float) -> str:
    """At least 4 decimals, up to 6 (spot prices go to 1e-6), no float noise."""
    text = f"{amount:.6f}".rstrip("0")
    return text + "0" * max(0, 4 - len(text.split(".")[1]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skystate.providers.catalog_refresh",
                                     description="Refresh a catalog CSV from a cloud's APIs.")
    parser.add_argument("cloud", choices=catalog.CLOUDS)
    parser.add_argument("--regions", help="comma-separated (default: the catalog's regions)")
    parser.add_argument("--families", help="comma-separated instance families, or 'all'")
    parser.add_argument("--out", type=Path, help="default: $SKYSTATE_HOME/catalogs/CLOUD.csv")
    parser.add_argument("--endpoint-url", help="aws: an EC2 endpoint (e.g. a moto server)")
    parser.add_argument("--on-demand", choices=("pricing-api", "catalog"),
                        default="pricing-api", help="aws: where on-demand prices come from")
    parser.add_argument("--project", help="gcp: the project to list machine types in")
    parser.add_argument("--api-key", help="gcp: a Cloud Billing API key (default: ADC)")
    args = parser.parse_args(argv)
    regions = args.regions.split(",") if args.regions else sorted(
        {r.region for r in catalog.entries(args.cloud)})
    families = None if args.families == "all" else (
        args.families.split(",") if args.families else None)
    if args.cloud == "aws":
        fresh = refresh_aws(regions, families=families or AWS_FAMILIES,
                            endpoint_url=args.endpoint_url, on_demand=args.on_demand)
    else:
        if not args.project:
            parser.error("gcp needs --project")
        fresh = refresh_gcp(args.project, regions, families=families or GCP_FAMILIES,
                            api_key=args.api_key)
    from skystate.home import home

    out = args.out or home() / "catalogs" / f"{args.cloud}.csv"
    rows = merged(args.cloud, fresh, regions)
    write_catalog(rows, out)
    print(f"wrote {len(rows)} rows ({len(fresh)} refreshed in {len(regions)} region(s)) to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
