"""What every ``skystate`` command shares to print: consoles, the one-line error, and the
``-o table|wide|json`` / ``--json`` options of listings (rendered by ``skystate.tables``)."""

from __future__ import annotations

from typing import Any

import typer


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> None:
    from rich.markup import escape

    console(stderr=True).print(f"[red]Error:[/red] {escape(message)}")
    raise typer.Exit(code)


def output_option() -> Any:
    return typer.Option("table", "-o", "--output", metavar="FORMAT",
                        help="table (fit the screen), wide (every column) or json.")


def json_option() -> Any:
    return typer.Option(False, "--json", help="Print JSON (same as -o json).")


def output_format(output: str, as_json: bool) -> str:
    """The listing format asked for: ``table``, ``wide`` or ``json``."""
    from skystate.tables import OUTPUT_FORMATS

    if output not in OUTPUT_FORMATS:
        raise typer.BadParameter(f"{output!r} is not one of {', '.join(OUTPUT_FORMATS)}",
                                 param_hint="-o/--output")
    return "json" if as_json else output


def print_listing(parts: list[Any], output: str) -> None:
    from skystate.tables import print_listing as show

    show(parts, wide=output == "wide")
