"""``skystate show-gpus`` and ``skystate check``: typer command functions registered in cli.

Importing this module imports only typer; the catalog, rich and each provider's library
are imported inside the command that needs them. Output: ``skystate.tables`` (a rich table
on a terminal, aligned plain text when piped, columns dropped to fit), JSON with ``--json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import typer

from skystate.cli_output import output_format, output_option, print_listing


def show_gpus(
    name: str = typer.Argument(None, help="Accelerator, optionally with a count: A100 or A100:8."),
    cloud: str = typer.Option(None, "--cloud", help="Only this provider (aws, gcp, local, ssh)."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON (-o json)."),
    output: str = output_option(),
) -> None:
    """What accelerators are offered where, at what $/hour (on-demand and spot).

    The local and ssh rows are the inventory of the state directory's Project when run
    inside one (a directory with skystate.yaml), else of $SKYSTATE_HOME/config.yaml.
    """
    fmt = output_format(output, as_json)
    rows = gpu_rows(name, cloud)
    if fmt == "json":
        print(json.dumps([row.to_dict() for row in rows], indent=2))
        return
    if not rows:
        wanted = f"{name!r}" if name else "accelerators"
        print(f"No {wanted} offered{f' on {cloud}' if cloud else ''}.", file=sys.stderr)
        raise typer.Exit(1)
    from skystate.tables import Column, Table

    columns = [Column("ACCELERATOR"), Column("COUNT", justify="right"), Column("CLOUD"),
               Column("INSTANCE_TYPE", 1), Column("vCPUs", 2, justify="right"),
               Column("MEM(GiB)", 2, justify="right"), Column("$/h", 1, justify="right"),
               Column("SPOT $/h", 3, justify="right"), Column("REGIONS", 4)]
    shown = None if fmt == "wide" else 4
    table = [[r.accelerator, str(r.count), r.cloud, r.instance_type, f"{r.vcpus:g}",
              f"{r.memory_gib:g}", _price(r.price, r.cloud), _price(r.spot_price, r.cloud),
              _regions(r.regions, shown)] for r in rows]
    print_listing([Table(title="GPUs" + (f" matching {name}" if name else ""),
                         columns=columns, rows=table)], fmt)


def check(
    as_json: bool = typer.Option(False, "--json", help="Print the verdicts as JSON (-o json)."),
    output: str = output_option(),
) -> None:
    """Which providers are usable with the credentials present, and why not.

    Inside a state directory (one with skystate.yaml) its Project's providers are checked,
    elsewhere those of $SKYSTATE_HOME/config.yaml. Credentials are looked for in the
    standard chains (boto3's and google-auth's), without the cloud metadata services.
    """
    from skystate.providers.check import check_providers
    from skystate.providers.enabled import enabled_providers
    from skystate.tables import Column, Table

    fmt = output_format(output, as_json)
    config, source = providers_config()
    results = check_providers(config)
    enabled = enabled_providers(config)
    if fmt == "json":
        print(json.dumps([{**r.to_dict(), "enabled_without_infra": r.name in enabled.considered}
                          for r in results], indent=2))
        return
    styles = {"yes": "green", "no": "red"}
    print_listing([Table(title=f"Providers of {source}", columns=[
        Column("PROVIDER"), Column("USABLE", style=styles.get), Column("REASON")],
        rows=[[r.name, "yes" if r.usable else "no", r.reason] for r in results])], fmt)
    print(f"(providers of {source}) Resources without infra: {enabled.describe()}.")


def providers_config() -> tuple[dict[str, Any], str]:
    """The ``providers:`` in effect here, and where they come from (for the title)."""
    from pathlib import Path

    from skystate.spec.loader import PROJECT_FILE, project_of

    project = project_of(Path.cwd())
    if project is not None:
        return (project.providers.model_dump(mode="json"),
                f"project {project.name!r} (./{PROJECT_FILE})")
    from skystate.home import config_path
    from skystate.spec.home_config import home_providers_config

    return home_providers_config(), str(config_path())


def gpu_rows(name: str | None, cloud: str | None) -> list[Any]:
    """Catalog offerings (aws, gcp) plus the configured local/ssh inventory."""
    from skystate.providers import catalog

    accelerator, count = _parse_name(name)
    if cloud is not None and cloud not in (*catalog.CLOUDS, "local", "ssh"):
        raise typer.BadParameter(f"unknown cloud {cloud!r} (aws, gcp, local, ssh)",
                                 param_hint="--cloud")
    clouds = [c for c in catalog.CLOUDS if cloud in (None, c)]
    rows = catalog.accelerator_offerings(accelerator, count, clouds) if clouds else []
    if cloud in (None, "local", "ssh"):
        rows += [r for r in catalog.inventory_offerings(providers_config()[0])
                 if cloud in (None, r.cloud)
                 and (accelerator is None or r.accelerator.lower() == accelerator.lower())
                 and (count is None or r.count == count)]
    return rows


def _parse_name(name: str | None) -> tuple[str | None, int | None]:
    if not name:
        return None, None
    accelerator, _, count = name.partition(":")
    if count and not count.isdigit():
        raise typer.BadParameter(f"{name!r}: the count after ':' must be a whole number",
                                 param_hint="NAME")
    return accelerator, int(count) if count else None


def _price(price: float | None, cloud: str) -> str:
    if cloud in ("local", "ssh"):
        return "-"
    return f"{price:.2f}" if price is not None else "-"


def _regions(regions: Sequence[str], shown: int | None = 4) -> str:
    """The first few regions and how many more (every region with ``shown=None``)."""
    if shown is None:
        return ",".join(regions)
    more = len(regions) - shown
    return ",".join(regions[:shown]) + (f" +{more}" if more > 0 else "")
