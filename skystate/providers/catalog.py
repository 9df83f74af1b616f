"""The AWS and GCP instance catalogs: what can be launched where, at what $/hour.

The shipped CSVs (``skystate/providers/catalogs/{aws,gcp}.csv``) are a snapshot, so plans
and ``show-gpus`` work offline. ``python -m skystate.providers.catalog_refresh`` writes
fresh ones to ``$SKYSTATE_HOME/catalogs/``, which then take precedence (see
docs/catalog.md). One CSV row is one instance type in one zone.

Each CSV is parsed once per process (and again only if the file changes); lookups go
through an index by accelerator name so ranking a request touches only its rows.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from skystate.providers.base import Offer, OfferQuery
from skystate.spec.resources import quantity_bounds

CLOUDS = ("aws", "gcp")
COLUMNS = (
    "instance_type", "vcpus", "memory_gib", "accelerator_name", "accelerator_count",
    "region", "zone", "price", "spot_price",
)
SHIPPED_DIR = Path(__file__).parent / "catalogs"

# GCP's accelerator type ids for the guest accelerators attached to n1 instances (and
# listed on a2/g2/a3 machine types); the gcp provider needs them to attach GPUs.
GCP_ACCELERATOR_TYPES = {
    "T4": "nvidia-tesla-t4",
    "V100": "nvidia-tesla-v100",
    "P100": "nvidia-tesla-p100",
    "L4": "nvidia-l4",
    "A100": "nvidia-tesla-a100",
    "A100-80GB": "nvidia-a100-80gb",
    "H100": "nvidia-h100-80gb",
}


@dataclass(frozen=True)
class CatalogEntry:
    """One row: an instance type offered in one zone."""

    instance_type: str
    vcpus: float
    memory_gib: float
    accelerator_name: str | None
    accelerator_count: int
    region: str
    zone: str
    price: float  # on-demand $/hour per node
    spot_price: float | None  # None: no spot capacity sold there

    def price_for(self, use_spot: bool) -> float | None:
        return self.spot_price if use_spot else self.price


@dataclass(frozen=True)
class _Loaded:
    stamp: tuple[str, int]  # (path, mtime_ns) the rows were read from
    rows: tuple[CatalogEntry, ...]
    by_accelerator: dict[str, tuple[CatalogEntry, ...]]  # lower-case name; "" = CPU only
    names: dict[str, str]  # lower-case accelerator name -> catalog spelling


_CACHE: dict[str, _Loaded] = {}


def catalog_path(cloud: str) -> Path:
    """The CSV in use: a refreshed one in ``$SKYSTATE_HOME/catalogs`` or the shipped one."""
    _check_cloud(cloud)
    from skystate.home import home

    refreshed = home() / "catalogs" / f"{cloud}.csv"
    return refreshed if refreshed.is_file() else SHIPPED_DIR / f"{cloud}.csv"


def entries(cloud: str) -> list[CatalogEntry]:
    """Every row of ``cloud``'s catalog (parsed once, cached until the file changes)."""
    return list(_load(cloud).rows)


def accelerator_names(cloud: str | None = None) -> list[str]:
    """Accelerator names offered by one cloud (or by any), sorted."""
    names: set[str] = set()
    for name in [cloud] if cloud else list(CLOUDS):
        names.update(_load(name).names.values())
    return sorted(names)


def canonical_accelerator(name: str, cloud: str | None = None) -> str | None:
    """The catalog's spelling of an accelerator name (case-insensitive), or None."""
    for each in [cloud] if cloud else list(CLOUDS):
        found = _load(each).names.get(name.lower())
        if found:
            return found
    return None


def offers(cloud: str, query: OfferQuery, regions: Sequence[str] | None = None) -> list[Offer]:
    """Every catalog row of ``cloud`` ("aws"|"gcp") satisfying ``query``.

    Accelerators match by exact name (case-insensitive) and count; ``cpus``/``memory``
    are "N" (exact) or "N+" (at least); ``use_spot`` prices the spot column and drops
    rows without one; region/zone/instance_type constrain; ``regions`` is the set of
    enabled regions from config (None: all). A request without accelerators and without
    an instance type gets CPU-only instances. ``Offer.hourly_price`` is per node.
    """
    loaded = _load(cloud)
    if query.accelerators:
        if len(query.accelerators) != 1:
            return []
        ((wanted, count),) = query.accelerators.items()
        rows = loaded.by_accelerator.get(wanted.lower(), ())
    elif query.instance_type:
        rows = loaded.rows
        count = 0
    else:
        rows = loaded.by_accelerator.get("", ())
        count = 0
    allowed = set(regions) if regions is not None else None
    cpus, cpus_at_least = quantity_bounds(query.cpus)
    memory, memory_at_least = quantity_bounds(query.memory)
    found = []
    for row in rows:
        if query.accelerators and row.accelerator_count != count:
            continue
        if not (_fits(row.vcpus, cpus, cpus_at_least)
                and _fits(row.memory_gib, memory, memory_at_least)):
            continue
        if (query.region and row.region != query.region) or (
                query.zone and row.zone != query.zone):
            continue
        if (query.instance_type and row.instance_type != query.instance_type) or (
                allowed is not None and row.region not in allowed):
            continue
        price = row.price_for(query.use_spot)
        if price is None:
            continue
        accelerators = {row.accelerator_name: row.accelerator_count} if (
            row.accelerator_name) else {}
        found.append(Offer(cloud, row.region, row.zone, row.instance_type, accelerators,
                           row.vcpus, row.memory_gib, query.use_spot, price))
    return found


@dataclass(frozen=True)
class AcceleratorOffering:
    """One row of ``show-gpus``: an instance type with N accelerators, over its regions."""

    accelerator: str
    count: int
    cloud: str
    instance_type: str
    vcpus: float
    memory_gib: float
    regions: tuple[str, ...]
    price: float  # cheapest on-demand $/hour over those regions
    spot_price: float | None  # cheapest spot $/hour, None: no spot anywhere

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "regions": list(self.regions)}


def accelerator_offerings(name: str | None = None, count: int | None = None,
                          clouds: Sequence[str] | None = None) -> list[AcceleratorOffering]:
    """What is offered where, at what price: one row per (cloud, instance type, GPUs)."""
    grouped: dict[tuple[str, str, str, int], list[CatalogEntry]] = {}
    for cloud in clouds or CLOUDS:
        loaded = _load(cloud)
        keys = [name.lower()] if name else [k for k in loaded.by_accelerator if k]
        for key in keys:
            for row in loaded.by_accelerator.get(key, ()):
                if count is None or row.accelerator_count == count:
                    group = (cloud, row.instance_type, row.accelerator_name or "",
                             row.accelerator_count)
                    grouped.setdefault(group, []).append(row)
    result = []
    for (cloud, instance_type, accelerator, number), rows in grouped.items():
        spots = [r.spot_price for r in rows if r.spot_price is not None]
        result.append(AcceleratorOffering(
            accelerator, number, cloud, instance_type, rows[0].vcpus, rows[0].memory_gib,
            tuple(sorted({r.region for r in rows})), min(r.price for r in rows),
            min(spots) if spots else None))
    result.sort(key=lambda o: (o.accelerator, o.count, o.price, o.cloud, o.instance_type))
    return result


def inventory_offerings(config: Mapping[str, Any]) -> list[AcceleratorOffering]:
    """The accelerators of the configured local inventory and ssh pools (no $/hour)."""
    found = []
    local = config.get("local") or {}
    for name, count in (local.get("accelerators") or {}).items():
        found.append(AcceleratorOffering(name, int(count), "local", "local",
                                         float(local.get("cpus") or 0),
                                         float(local.get("memory") or 0), (), 0.0, None))
    for pool_name, pool in ((config.get("ssh") or {}).get("pools") or {}).items():
        for name, count in (pool.get("accelerators") or {}).items():
            found.append(AcceleratorOffering(name, int(count), "ssh", "ssh host",
                                             float(pool.get("cpus") or 0),
                                             float(pool.get("memory") or 0), (pool_name,),
                                             0.0, None))
    return found


def _fits(have: float, wanted: float, at_least: bool) -> bool:
    if not wanted:
        return True
    return have >= wanted if at_least else abs(have - wanted) < 1e-9


def _check_cloud(cloud: str) -> None:
    if cloud not in CLOUDS:
        from skystate.exceptions import NotSupportedError

        raise NotSupportedError(f"no catalog for {cloud!r} (catalogs: {', '.join(CLOUDS)})")


def _load(cloud: str) -> _Loaded:
    path = catalog_path(cloud)
    stamp = (str(path), os.stat(path).st_mtime_ns)
    loaded = _CACHE.get(cloud)
    if loaded is None or loaded.stamp != stamp:
        loaded = _parse(path, stamp)
        _CACHE[cloud] = loaded
    return loaded


def _parse(path: Path, stamp: tuple[str, int]) -> _Loaded:
    from skystate.exceptions import SkyStateError

    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise SkyStateError(f"catalog {path} lacks column(s) {', '.join(sorted(missing))}")
        try:
            rows = tuple(_entry(record) for record in reader)
        except (TypeError, ValueError) as exc:
            raise SkyStateError(
                f"catalog {path}, line {reader.line_num}: {exc}") from None
    grouped: dict[str, list[CatalogEntry]] = {}
    names: dict[str, str] = {}
    for row in rows:
        key = (row.accelerator_name or "").lower()
        grouped.setdefault(key, []).append(row)
        if row.accelerator_name:
            names.setdefault(key, row.accelerator_name)
    return _Loaded(stamp, rows, {k: tuple(v) for k, v in grouped.items()}, names)


def _entry(record: dict[str, str]) -> CatalogEntry:
    spot = (record["spot_price"] or "").strip()
    return CatalogEntry(
        instance_type=record["instance_type"],
        vcpus=float(record["vcpus"]),
        memory_gib=float(record["memory_gib"]),
        accelerator_name=record["accelerator_name"] or None,
        accelerator_count=int(record["accelerator_count"] or 0),
        region=record["region"],
        zone=record["zone"],
        price=float(record["price"]),
        spot_price=float(spot) if spot and float(spot) > 0 else None,
    )
