"""The ``skystate`` commands (typer): parse, call the library, render. No logic of their own.

The entry point is ``skystate.cli.main``. Imports are lazy so that ``skystate --help`` and
``skystate status`` start fast; a local ``skystate plan`` does not even load this (see
cli_plan).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from skystate.cli_output import console as _console
from skystate.cli_output import fail as _fail
from skystate.cli_output import json_option, output_format, output_option, print_listing
from skystate.cli_plan import print_plan, run_plan

app = typer.Typer(
    name="skystate",
    help="Declarative GPU clusters and jobs from YAML: plan, apply, watch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_DEBUG = {"on": False}


def _add_subcommands() -> None:
    from skystate import cli_catalog, cli_jobs  # these import typer only
    from skystate.cli_api import api_app
    from skystate.cli_managed_jobs import jobs_app
    from skystate.cli_serve import serve_app

    app.add_typer(api_app, name="api")
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(serve_app, name="serve")
    app.command(name="show-gpus")(cli_catalog.show_gpus)
    app.command(name="check")(cli_catalog.check)
    for name, command in (("logs", cli_jobs.logs), ("launch", cli_jobs.launch),
                          ("exec", cli_jobs.exec_), ("queue", cli_jobs.queue_),
                          ("cancel", cli_jobs.cancel), ("autostop", cli_jobs.autostop)):
        app.command(name=name)(command)


def _print_version(value: bool) -> None:
    if value:
        from skystate import __version__

        print(f"skystate {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    _DEBUG["on"] = debug


# --- files -----------------------------------------------------------------------


@app.command()
def init(directory: Path = typer.Argument(Path("."), help="Where to write the example.")) -> None:
    """Scaffold a state directory with a working local example."""
    from skystate.scaffold import scaffold

    written = scaffold(directory)
    out = _console()
    for path in written:
        out.print(f"wrote {path}")
    out.print(f"Next: skystate plan {directory} && skystate apply {directory} --yes")


@app.command()
def validate(directory: Path = typer.Argument(Path("."), help="The state directory.")
             ) -> None:
    """Parse and check a state directory; every error with file:line."""
    from skystate.reconcile.engine import load_desired

    desired = load_desired(directory)
    _console().print(
        f"Valid: {len(desired.clusters)} cluster(s), {len(desired.jobs)} job(s), "
        f"{len(desired.managed_jobs)} managed job(s), {len(desired.services)} service(s) "
        f"(owner {desired.owner!r})."
    )


@app.command()
def schema() -> None:
    """Print the JSON Schema of the state-file format (for editors)."""
    from skystate.spec.schema import state_file_schema

    print(json.dumps(state_file_schema(), indent=2))


# --- plan / apply ----------------------------------------------------------------


@app.command()
def plan(
    directory: Path = typer.Argument(Path("."), help="The state directory."),
    out: Path | None = typer.Option(None, "-o", "--out", help="Save the plan as JSON."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    refresh: bool = typer.Option(False, "--refresh/--no-refresh",
                                 help="Ask providers for real state first."),
    target: list[str] = typer.Option([], "--target", help="Only KIND/NAME (repeatable)."),
    no_prune: bool = typer.Option(False, "--no-prune", help="Never plan deletes."),
    detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode",
                                           help="Exit 0: no changes, 2: changes, 1: error."),
    lock_timeout: float = typer.Option(30.0, "--lock-timeout",
                                       help="Seconds to wait for the state lock (--refresh)."),
    full: bool = typer.Option(False, "--full",
                              help="Show every change in detail (a large plan groups alike "
                                   "ones)."),
) -> None:
    """Show what apply would change."""
    code = run_plan(directory, out=out, as_json=as_json, refresh=refresh, target=target,
                    no_prune=no_prune, detailed_exitcode=detailed_exitcode,
                    lock_timeout=lock_timeout, full=full)
    if code:
        raise typer.Exit(code)


@app.command()
def apply(
    source: Path = typer.Argument(Path("."), help="A state directory or a saved PLAN.json."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    target: list[str] = typer.Option([], "--target", help="Only KIND/NAME (repeatable)."),
    no_prune: bool = typer.Option(False, "--no-prune", help="Never delete."),
    refresh: bool = typer.Option(False, "--refresh/--no-refresh",
                                 help="Ask providers for real state first."),
    wait: bool = typer.Option(False, "--wait",
                              help="Wait for submitted jobs to finish; print their output."),
    lock_timeout: float = typer.Option(30.0, "--lock-timeout",
                                       help="Seconds to wait for the state lock, then fail."),
) -> None:
    """Make the infrastructure match the files (or apply a saved plan exactly)."""
    from skystate import sdk

    out = _console()
    if source.is_file() and source.suffix == ".json":
        request_id = sdk.apply(source, wait=wait, lock_timeout=lock_timeout)
        return _finish_apply(request_id)
    from skystate.spec.loader import load_state_dir

    load_state_dir(source)  # bad files fail here, before any server or state is touched
    if yes:
        request_id = sdk.apply(source, targets=target, prune=not no_prune, refresh=refresh,
                               wait=wait, lock_timeout=lock_timeout)
    else:
        the_plan = sdk.get(sdk.plan(source, refresh=refresh, targets=target,
                                    prune=not no_prune))
        print_plan(the_plan)
        if the_plan.errors:
            raise typer.Exit(1)
        if not the_plan.has_changes:
            return
        if not sys.stdin.isatty():
            _fail("apply needs confirmation: pass --yes (stdin is not a terminal)")
        if not typer.confirm("Apply these changes?", default=False):
            out.print("Cancelled.")
            return
        request_id = sdk.apply(the_plan, wait=wait, lock_timeout=lock_timeout)
    _finish_apply(request_id)


def _finish_apply(request_id: str) -> None:
    from skystate import sdk
    from skystate.exceptions import ApplyFailedError

    try:
        sdk.stream_and_get(request_id)
    except ApplyFailedError as exc:  # the log above showed each failure already
        _fail(str(exc).splitlines()[0])


@app.command()
def watch(
    directory: Path = typer.Argument(Path("."), help="The state directory."),
    interval: float = typer.Option(30.0, "--interval", help="Seconds between refreshes."),
    backoff_base: float = typer.Option(1.0, "--backoff-base",
                                       help="First retry delay of a failed resource (s)."),
    backoff_cap: float = typer.Option(300.0, "--backoff-cap", help="Longest retry delay (s)."),
    lock_timeout: float = typer.Option(30.0, "--lock-timeout",
                                       help="Seconds to wait for the state lock."),
) -> None:
    """Reconcile on every file change and every interval until SIGTERM/SIGINT."""
    from skystate.reconcile.watch import WatchOptions
    from skystate.server.watching import watch_by_requests

    watch_by_requests(directory, WatchOptions(interval=interval, backoff_base=backoff_base,
                                       backoff_cap=backoff_cap, lock_timeout=lock_timeout))


# --- clusters --------------------------------------------------------------------


def _unknown_clusters(names: list[str] | None = None, refresh: bool = False) -> dict[str, str]:
    """Have the API server look at the clusters whose record may be stale (every cluster
    with ``refresh``) and record it; the ones it could not observe, with the reason."""
    from skystate.reconcile.status_check import to_check
    from skystate.reconcile.store import read_snapshot

    tables = read_snapshot()
    checked = to_check(tables.get("clusters", []), tables.get("jobs", []), names)
    if not checked and not refresh:
        return {}  # nothing can be stale: no server call
    from skystate import sdk
    from skystate.enums import StatusRefreshMode
    from skystate.exceptions import ApiServerError

    mode = StatusRefreshMode.FORCE if refresh else StatusRefreshMode.AUTO
    try:
        records = sdk.get(sdk.status(names, refresh=mode, all_users=True))
    except ApiServerError as exc:
        return {name: f"not observed: {exc}" for name in checked}
    return {r["name"]: str(r.get("status_error") or "not observed") for r in records
            if r.get("status_unknown")}


@app.command()
def status(
    clusters: list[str] = typer.Argument(None, help="Only these clusters (default: all)."),
    as_json: bool = json_option(),
    output: str = output_option(),
    refresh: bool = typer.Option(False, "-r", "--refresh/--no-refresh",
                                 help="Ask the providers for the clusters' real state first."),
) -> None:
    """Clusters and their jobs (UP clusters with autostop or running jobs are looked at)."""
    from skystate.reconcile.status_rows import cluster_rows
    from skystate.status_view import status_listing

    fmt = output_format(output, as_json)
    unknown = _unknown_clusters(clusters or None, refresh=refresh)
    rows, jobs = cluster_rows(clusters or None, unknown=unknown, live=False)
    if fmt == "json":
        print(json.dumps({"clusters": rows, "jobs": jobs}, indent=2, default=str))
    else:
        print_listing(status_listing(rows, jobs), fmt)


@app.command()
def refresh(
    directory: Path | None = typer.Argument(
        None, help="A state directory (default: only config.yaml's providers)."),
    rebuild: bool = typer.Option(False, "--rebuild",
                                 help="Recover lost records from the clusters' tags."),
    owner: list[str] = typer.Option([], "--owner",
                                    help="Also adopt leaked clusters of OWNER (repeatable)."),
    as_json: bool = json_option(),
    output: str = output_option(),
) -> None:
    """Ask providers what exists: track, adopt leaks, mark vanished, leave foreign alone."""
    from skystate import sdk
    from skystate.status_view import refresh_listing

    fmt = output_format(output, as_json)
    report = sdk.get(sdk.refresh(directory, rebuild=rebuild, owners=owner))
    if fmt == "json":
        print(report.model_dump_json(indent=2))
    else:
        print_listing(refresh_listing(report), fmt)
    if report.provider_errors:
        raise typer.Exit(1)


def _cluster_names(clusters: list[str] | None, all_clusters: bool, verb: str) -> list[str]:
    if clusters and all_clusters:
        _fail(f"give cluster names or --all, not both (skystate {verb} -a)", code=2)
    if all_clusters:
        from skystate import sdk

        return [str(r["name"]) for r in sdk.get(sdk.status())]
    if not clusters:
        _fail(f"give cluster names or --all (skystate {verb} CLUSTER..., "
              f"skystate {verb} -a)", code=2)
    return list(dict.fromkeys(clusters or []))


def _cluster_ops(names: list[str], op: str, *, yes: bool, confirm: bool,
                 **args: Any) -> None:
    """Submit one request per cluster (the server runs them in parallel), then stream each;
    exit 1 if any failed."""
    from skystate import sdk

    out = _console()
    if not names:
        out.print(f"No clusters to {op}.")
        return
    if confirm and not yes:
        question = f"{op.capitalize()} {len(names)} cluster(s): {', '.join(names)}. Proceed?"
        if not sys.stdin.isatty():
            _fail(f"{op} needs confirmation: pass --yes (stdin is not a terminal)")
        if not typer.confirm(question, default=True):
            out.print("Cancelled.")
            return
    requests = [(name, getattr(sdk, op)(name, **args)) for name in names]
    failed = []
    for name, request_id in requests:
        try:
            sdk.stream_and_get(request_id)
        except Exception as exc:  # noqa: BLE001 - one cluster's error; the others go on
            from rich.markup import escape

            failed.append(name)
            _console(stderr=True).print(f"[red]Error:[/red] {escape(str(exc))}")
    if failed:
        raise typer.Exit(1)


_CLUSTERS_HELP = "Cluster names (several allowed)."


@app.command()
def stop(
    clusters: list[str] = typer.Argument(None, help=_CLUSTERS_HELP),
    all_clusters: bool = typer.Option(False, "--all", "-a", help="Every cluster of mine."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    purge: bool = typer.Option(False, "--purge",
                               help="Record it STOPPED even if its provider fails."),
) -> None:
    """Stop clusters (keeps their disks/folders)."""
    _cluster_ops(_cluster_names(clusters, all_clusters, "stop"), "stop", yes=yes,
                 confirm=all_clusters, purge=purge)


@app.command()
def start(
    clusters: list[str] = typer.Argument(None, help=_CLUSTERS_HELP),
    all_clusters: bool = typer.Option(False, "--all", "-a", help="Every cluster of mine."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    idle_minutes: int | None = typer.Option(None, "-i", "--idle-minutes-to-autostop",
                                            help="Set autostop after this many idle minutes."),
    down_after: bool = typer.Option(False, "--down",
                                    help="Autostop tears down instead (needs -i)."),
) -> None:
    """Start stopped clusters."""
    _cluster_ops(_cluster_names(clusters, all_clusters, "start"), "start", yes=yes,
                 confirm=all_clusters, idle_minutes_to_autostop=idle_minutes, down=down_after)


@app.command()
def down(
    clusters: list[str] = typer.Argument(None, help=_CLUSTERS_HELP),
    all_clusters: bool = typer.Option(False, "--all", "-a", help="Every cluster of mine."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    purge: bool = typer.Option(False, "--purge",
                               help="Forget the record even if its provider cannot be "
                                    "reached (may leak what it had)."),
) -> None:
    """Tear clusters down."""
    _cluster_ops(_cluster_names(clusters, all_clusters, "down"), "down", yes=yes,
                 confirm=all_clusters, purge=purge)


_add_subcommands()
