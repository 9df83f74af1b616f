"""The ``skystate`` command: parse, call the library, render. No logic of its own.

Imports are lazy so that ``skystate --help`` and ``skystate status`` start fast.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    name="skystate",
    help="Declarative GPU clusters and jobs from YAML: plan, apply, watch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_DEBUG = {"on": False}


def _add_subcommands() -> None:
    from skystate import cli_catalog  # these import typer only
    from skystate.cli_api import api_app

    app.add_typer(api_app, name="api")
    app.add_typer(__import__("skystate.cli_jobs").cli_jobs.jobs_app, name="jobs")
    app.command(name="show-gpus")(cli_catalog.show_gpus)
    app.command(name="check")(cli_catalog.check)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _fail(message: str) -> None:
    from rich.markup import escape

    _console(stderr=True).print(f"[red]Error:[/red] {escape(message)}")
    raise typer.Exit(1)


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks.")) -> None:
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
def validate(directory: Path = typer.Argument(Path("."))) -> None:
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
    directory: Path = typer.Argument(Path(".")),
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
) -> None:
    """Show what apply would change."""
    from skystate.reconcile.render import render_plan

    if out or refresh:  # refresh writes the state: a request to the server
        from skystate import sdk

        the_plan = sdk.get(sdk.plan(directory, refresh=refresh, targets=target,
                                    prune=not no_prune))
    else:  # read-only: straight from the atomically written state file
        from skystate.reconcile.engine import plan_state_dir

        the_plan = plan_state_dir(directory, targets=target, prune=not no_prune,
                                  lock_timeout=lock_timeout)
    if out:
        out.write_text(the_plan.to_json())
    if as_json:
        print(the_plan.to_json())
    else:
        _console().print(render_plan(the_plan))
        if out:
            _console().print(f"Saved the plan to {out}; apply it with: skystate apply {out}")
    if the_plan.errors:
        raise typer.Exit(1)
    if detailed_exitcode and the_plan.has_changes:
        raise typer.Exit(2)


@app.command()
def apply(
    source: Path = typer.Argument(Path("."), help="A state directory or a saved PLAN.json."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    target: list[str] = typer.Option([], "--target", help="Only KIND/NAME (repeatable)."),
    no_prune: bool = typer.Option(False, "--no-prune", help="Never delete."),
    refresh: bool = typer.Option(False, "--refresh/--no-refresh"),
    wait: bool = typer.Option(False, "--wait", help="Wait for submitted jobs to finish."),
    lock_timeout: float = typer.Option(30.0, "--lock-timeout",
                                       help="Seconds to wait for the state lock, then fail."),
) -> None:
    """Make the infrastructure match the files (or apply a saved plan exactly)."""
    from skystate import sdk
    from skystate.reconcile.render import render_plan

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
        out.print(render_plan(the_plan))
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

    result = sdk.stream_and_get(request_id)
    if not result["ok"]:
        raise typer.Exit(1)


@app.command()
def watch(
    directory: Path = typer.Argument(Path(".")),
    interval: float = typer.Option(30.0, "--interval", help="Seconds between refreshes."),
    backoff_base: float = typer.Option(1.0, "--backoff-base",
                                       help="First retry delay of a failed resource (s)."),
    backoff_cap: float = typer.Option(300.0, "--backoff-cap", help="Longest retry delay (s)."),
    lock_timeout: float = typer.Option(30.0, "--lock-timeout"),
) -> None:
    """Reconcile on every file change and every interval until SIGTERM/SIGINT."""
    from skystate.reconcile.watch import WatchOptions
    from skystate.server.watching import watch_by_requests

    watch_by_requests(directory, WatchOptions(interval=interval, backoff_base=backoff_base,
                                       backoff_cap=backoff_cap, lock_timeout=lock_timeout))


# --- clusters --------------------------------------------------------------------


@app.command()
def status(
    clusters: list[str] = typer.Argument(None),
    as_json: bool = typer.Option(False, "--json"),
    refresh: bool = typer.Option(False, "--refresh/--no-refresh"),
) -> None:
    """Clusters and their jobs."""
    from skystate.status_view import cluster_rows, render_tables

    if refresh:
        from skystate import sdk

        sdk.get(sdk.status(clusters or None, refresh=True, all_users=True))
    rows, jobs = cluster_rows(clusters or None)
    if as_json:
        print(json.dumps({"clusters": rows, "jobs": jobs}, indent=2, default=str))
    else:
        _console().print(render_tables(rows, jobs))


@app.command()
def refresh(
    directory: Path | None = typer.Argument(
        None, help="A state directory (default: only config.yaml's providers)."),
    rebuild: bool = typer.Option(False, "--rebuild",
                                 help="Recover lost records from the clusters' tags."),
    owner: list[str] = typer.Option([], "--owner",
                                    help="Also adopt leaked clusters of OWNER (repeatable)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Ask providers what exists: track, adopt leaks, mark vanished, leave foreign alone."""
    from skystate import sdk
    from skystate.status_view import render_refresh

    report = sdk.get(sdk.refresh(directory, rebuild=rebuild, owners=owner))
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        _console().print(render_refresh(report))
    if report.provider_errors:
        raise typer.Exit(1)


def _cluster_op(name: str, op: str) -> None:
    from skystate import sdk

    sdk.stream_and_get(getattr(sdk, op)(name))


@app.command()
def stop(cluster: str) -> None:
    """Stop a cluster (keeps its disks/folders)."""
    _cluster_op(cluster, "stop")


@app.command()
def start(cluster: str) -> None:
    """Start a stopped cluster."""
    _cluster_op(cluster, "start")


@app.command()
def down(cluster: str,
         yes: bool = typer.Option(False, "--yes", "-y", help="Accepted for SkyPilot's CLI.")
         ) -> None:
    """Tear a cluster down."""
    _cluster_op(cluster, "down")


@app.command()
def logs(
    cluster: str,
    job_id: int | None = typer.Argument(None, help="Job id (default: the latest)."),
    follow: bool = typer.Option(True, "--follow/--no-follow"),
) -> None:
    """Print a job's log; exit 0 if it succeeded, 100 if it failed."""
    from skystate import sdk

    raise typer.Exit(sdk.tail_logs(cluster, job_id, follow=follow))


# --- imperative (SkyPilot-style) ------------------------------------------------


@app.command()
def launch(
    task_yaml: Path = typer.Argument(..., help="A SkyPilot task YAML."),
    cluster: str | None = typer.Option(None, "-c", "--cluster", help="Cluster name."),
    detach_run: bool = typer.Option(False, "-d", "--detach-run", help="Do not stream logs."),
    idle_minutes: int | None = typer.Option(None, "-i", "--idle-minutes-to-autostop"),
    down_after: bool = typer.Option(False, "--down", help="Tear down when idle."),
    retry_until_up: bool = typer.Option(False, "--retry-until-up"),
    no_setup: bool = typer.Option(False, "--no-setup"),
) -> None:
    """Launch a cluster (or reuse one) and run a task on it."""
    from skystate import sdk

    job_id, handle = sdk.stream_and_get(sdk.launch(
        str(task_yaml), cluster_name=cluster, retry_until_up=retry_until_up,
        idle_minutes_to_autostop=idle_minutes, down=down_after, no_setup=no_setup))
    _after_submit(handle.cluster_name if handle else cluster, job_id, detach_run)


@app.command(name="exec")
def exec_(
    cluster: str = typer.Argument(...),
    task_yaml: Path = typer.Argument(..., help="A SkyPilot task YAML."),
    detach_run: bool = typer.Option(False, "-d", "--detach-run"),
) -> None:
    """Run a task on an UP cluster (no provisioning, no setup)."""
    from skystate import sdk

    job_id, _ = sdk.stream_and_get(sdk.exec(str(task_yaml), cluster_name=cluster))
    _after_submit(cluster, job_id, detach_run)


def _after_submit(cluster: str | None, job_id: int | None, detach: bool) -> None:
    out = _console()
    if job_id is None or cluster is None:
        out.print(f"Cluster {cluster} is UP (no job to run).")
        return
    out.print(f"Job {job_id} submitted on {cluster}.")
    if not detach:
        from skystate import sdk

        raise typer.Exit(sdk.tail_logs(cluster, job_id, follow=True))


@app.command(name="queue")
def queue_(
    cluster: str,
    as_json: bool = typer.Option(False, "--json"),
    skip_finished: bool = typer.Option(False, "--skip-finished", "-s"),
    all_users: bool = typer.Option(False, "--all-users", "-u"),
) -> None:
    """A cluster's job queue."""
    from skystate import sdk

    jobs = sdk.get(sdk.queue(cluster, skip_finished=skip_finished, all_users=all_users))
    if as_json:
        print(json.dumps([{**j, "status": str(j["status"])} for j in jobs], indent=2,
                         default=str))
        return
    from rich.table import Table

    table = Table(title=f"Jobs on {cluster}", title_justify="left")
    for column in ("ID", "NAME", "USER", "SUBMITTED", "RESOURCES", "STATUS", "LOG"):
        table.add_column(column)
    for job in jobs:
        submitted = time.strftime("%H:%M:%S", time.localtime(job.get("submitted_at") or 0))
        table.add_row(str(job["job_id"]), str(job.get("job_name") or "-"),
                      str(job.get("username")), submitted, str(job.get("resources")),
                      str(job["status"]), str(job.get("log_path")))
    _console().print(table)


@app.command()
def cancel(
    cluster: str,
    job_ids: list[int] = typer.Argument(None),
    all_jobs: bool = typer.Option(False, "--all", "-a"),
) -> None:
    """Cancel jobs on a cluster."""
    from skystate import sdk

    try:
        sdk.get(sdk.cancel(cluster, all=all_jobs, job_ids=job_ids or None))
    except ValueError as exc:
        _fail(str(exc))
    _console().print(f"Cancelled {'all jobs' if all_jobs else 'job(s) ' + str(job_ids)} "
                     f"on {cluster}.")


@app.command()
def autostop(
    cluster: str,
    idle_minutes: int = typer.Option(5, "-i", "--idle-minutes"),
    down_after: bool = typer.Option(False, "--down"),
    cancel_it: bool = typer.Option(False, "--cancel"),
) -> None:
    """Stop (or tear down) a cluster after it has been idle for a while."""
    from skystate import sdk

    sdk.get(sdk.autostop(cluster, -1 if cancel_it else idle_minutes, down=down_after))
    _console().print(f"Autostop of {cluster}: " + (
        "cancelled" if cancel_it else f"{idle_minutes} idle minute(s), "
        f"then {'down' if down_after else 'stop'}"))


_add_subcommands()


def main() -> None:
    from skystate.exceptions import SkyStateError, SpecError

    try:
        app()
    except SpecError as exc:
        if _DEBUG["on"]:
            raise
        err = _console(stderr=True)
        err.print(f"[red]Error:[/red] {len(exc.issues)} problem(s) in the state files; "
                  "nothing was changed:", markup=True)
        for issue in exc.issues:
            err.print(f"  {issue}", markup=False, highlight=False)
        sys.exit(1)
    except SkyStateError as exc:
        if _DEBUG["on"]:
            raise
        from rich.markup import escape

        _console(stderr=True).print(f"[red]Error:[/red] {escape(str(exc))}")
        sys.exit(1)
    except (ValueError, RuntimeError, OSError) as exc:  # a request's error, or bad input
        if _DEBUG["on"]:
            raise
        from rich.markup import escape

        _console(stderr=True).print(f"[red]Error:[/red] {escape(str(exc))}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - anything else, e.g. a request's own error
        if _DEBUG["on"]:
            raise
        from rich.markup import escape

        _console(stderr=True).print(f"[red]Error:[/red] {type(exc).__name__}: "
                                    f"{escape(str(exc))} (--debug shows the traceback)")
        sys.exit(1)


if __name__ == "__main__":
    main()
