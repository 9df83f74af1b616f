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
    app.command(name="show-gpus")(cli_catalog.show_gpus)
    app.command(name="check")(cli_catalog.check)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 1) -> None:
    from rich.markup import escape

    _console(stderr=True).print(f"[red]Error:[/red] {escape(message)}")
    raise typer.Exit(code)


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
    refresh: bool = typer.Option(False, "--refresh/--no-refresh",
                                 help="Ask providers for real state first."),
    wait: bool = typer.Option(False, "--wait",
                              help="Wait for submitted jobs to finish; print their output."),
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


@app.command()
def status(
    clusters: list[str] = typer.Argument(None, help="Only these clusters (default: all)."),
    as_json: bool = json_option(),
    output: str = output_option(),
    refresh: bool = typer.Option(False, "-r", "--refresh/--no-refresh",
                                 help="Ask the providers for the clusters' real state first."),
) -> None:
    """Clusters and their jobs."""
    from skystate.status_view import cluster_rows, status_listing

    fmt = output_format(output, as_json)
    if refresh:
        from skystate import sdk

        sdk.get(sdk.status(clusters or None, refresh=True, all_users=True))
    rows, jobs = cluster_rows(clusters or None)
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


@app.command()
def logs(
    cluster: str = typer.Argument(..., help="The cluster."),
    job_id: int | None = typer.Argument(None, help="Job id (default: the latest)."),
    follow: bool = typer.Option(True, "--follow/--no-follow",
                                help="Keep printing until the job finishes."),
    tail: int = typer.Option(0, "--tail", help="Only the last N lines (0: all)."),
) -> None:
    """Print a job's log; exit 0 if it succeeded, 100 if it failed, 102 if there is no such
    job."""
    from skystate import sdk

    raise typer.Exit(sdk.tail_logs(cluster, job_id, follow=follow, tail=tail))


# --- imperative (SkyPilot-style) ------------------------------------------------


def _task(entrypoint: str | None, envs: list[str], gpus: str | None, cpus: str | None,
          memory: str | None, infra: str | None, num_nodes: int | None = None,
          name: str | None = None) -> Any:
    from skystate.cli_task import TaskOptions, build_task

    return build_task(entrypoint, TaskOptions(envs=envs, gpus=gpus, cpus=cpus, memory=memory,
                                              infra=infra, num_nodes=num_nodes, name=name))


_ENTRYPOINT_HELP = "A SkyPilot task YAML, or a shell command to run."
_ENV_HELP = "KEY=VALUE for the task's environment, or KEY to pass $KEY (repeatable)."
_GPUS_HELP = "Accelerators each node needs, e.g. A100:1."
_CPUS_HELP = "vCPUs each node needs, e.g. 4 or 4+."
_MEMORY_HELP = "Memory (GiB) each node needs, e.g. 16 or 16+."
_INFRA_HELP = "Where to run: cloud[/region[/zone]], e.g. aws/us-east-1 or local."
_YES_HELP = "Do not ask for confirmation (accepted for SkyPilot's CLI; nothing is asked)."
_DETACH_HELP = "Do not stream the job's output; print how to follow it."


@app.command()
def launch(
    entrypoint: str | None = typer.Argument(None, help=_ENTRYPOINT_HELP),
    cluster: str | None = typer.Option(None, "-c", "--cluster", help="Cluster name."),
    detach_run: bool = typer.Option(False, "-d", "--detach-run", help=_DETACH_HELP),
    envs: list[str] = typer.Option([], "--env", help=_ENV_HELP),
    gpus: str | None = typer.Option(None, "--gpus", help=_GPUS_HELP),
    cpus: str | None = typer.Option(None, "--cpus", help=_CPUS_HELP),
    memory: str | None = typer.Option(None, "--memory", help=_MEMORY_HELP),
    infra: str | None = typer.Option(None, "--infra", help=_INFRA_HELP),
    num_nodes: int | None = typer.Option(None, "--num-nodes", help="Nodes of the cluster."),
    name: str | None = typer.Option(None, "-n", "--name", help="The task's (job's) name."),
    yes: bool = typer.Option(False, "-y", "--yes", help=_YES_HELP),
    idle_minutes: int | None = typer.Option(None, "-i", "--idle-minutes-to-autostop",
                                            help="Stop after this many idle minutes."),
    down_after: bool = typer.Option(False, "--down",
                                    help="Tear down when idle (now, if no -i)."),
    retry_until_up: bool = typer.Option(False, "--retry-until-up",
                                        help="Keep trying every offer until one is up."),
    no_setup: bool = typer.Option(False, "--no-setup", help="Skip the task's setup."),
) -> None:
    """Launch a cluster (or reuse one) and run a task on it."""
    from skystate import sdk

    task = _task(entrypoint, envs, gpus, cpus, memory, infra, num_nodes, name)
    job_id, handle = sdk.stream_and_get(sdk.launch(
        task, cluster_name=cluster, retry_until_up=retry_until_up,
        idle_minutes_to_autostop=idle_minutes, down=down_after, no_setup=no_setup))
    _after_submit(handle.cluster_name if handle else cluster, job_id, detach_run)


@app.command(name="exec")
def exec_(
    cluster: str = typer.Argument(..., help="An UP cluster."),
    entrypoint: str = typer.Argument(..., help=_ENTRYPOINT_HELP),
    detach_run: bool = typer.Option(False, "-d", "--detach-run", help=_DETACH_HELP),
    envs: list[str] = typer.Option([], "--env", help=_ENV_HELP),
    gpus: str | None = typer.Option(None, "--gpus", help=_GPUS_HELP),
    cpus: str | None = typer.Option(None, "--cpus", help=_CPUS_HELP),
    memory: str | None = typer.Option(None, "--memory", help=_MEMORY_HELP),
    infra: str | None = typer.Option(None, "--infra", help=_INFRA_HELP),
    name: str | None = typer.Option(None, "-n", "--name", help="The task's (job's) name."),
    yes: bool = typer.Option(False, "-y", "--yes", help=_YES_HELP),
) -> None:
    """Run a task on an UP cluster (no provisioning, no setup)."""
    from skystate import sdk

    task = _task(entrypoint, envs, gpus, cpus, memory, infra, name=name)
    job_id, _ = sdk.stream_and_get(sdk.exec(task, cluster_name=cluster))
    _after_submit(cluster, job_id, detach_run)


def _after_submit(cluster: str | None, job_id: int | None, detach: bool) -> None:
    out = _console()
    if job_id is None or cluster is None:
        out.print(f"Cluster {cluster} is UP (no job to run).")
        return
    if detach:
        out.print(f"Job {job_id} submitted on {cluster}. Follow it: skystate logs {cluster} "
                  f"{job_id}; stop it: skystate cancel {cluster} {job_id}")
        return
    from skystate import sdk

    raise typer.Exit(sdk.tail_logs(cluster, job_id, follow=True))


@app.command(name="queue")
def queue_(
    cluster: str = typer.Argument(..., help="The cluster."),
    as_json: bool = json_option(),
    output: str = output_option(),
    skip_finished: bool = typer.Option(False, "--skip-finished", "-s",
                                       help="Only pending and running jobs."),
    all_users: bool = typer.Option(False, "--all-users", "-u", help="Everyone's jobs."),
) -> None:
    """A cluster's job queue."""
    from skystate import sdk
    from skystate.tables import Column, Table

    fmt = output_format(output, as_json)
    jobs = sdk.get(sdk.queue(cluster, skip_finished=skip_finished, all_users=all_users))
    if fmt == "json":
        print(json.dumps([{**j, "status": str(j["status"])} for j in jobs], indent=2,
                         default=str))
        return
    from skystate.status_view import job_status_style

    rows = [[str(job["job_id"]), str(job.get("job_name") or "-"), str(job["status"]),
             time.strftime("%H:%M:%S", time.localtime(job.get("submitted_at") or 0)),
             str(job.get("resources")), str(job.get("username")), str(job.get("log_path"))]
            for job in jobs]
    print_listing([Table(title=f"Jobs on {cluster}", empty=f"No jobs on {cluster}.", columns=[
        Column("ID", justify="right"), Column("NAME"), Column("STATUS", style=job_status_style()),
        Column("SUBMITTED", 1), Column("RESOURCES", 2), Column("USER", 3), Column("LOG", 4)],
        rows=rows)], fmt)


@app.command()
def cancel(
    cluster: str = typer.Argument(..., help="The cluster."),
    job_ids: list[int] = typer.Argument(None, help="Job IDs to cancel."),
    all_jobs: bool = typer.Option(False, "--all", "-a", help="Every job of mine on it."),
    all_users: bool = typer.Option(False, "--all-users", "-u", help="Everyone's jobs on it."),
    yes: bool = typer.Option(False, "--yes", "-y", help=_YES_HELP),
) -> None:
    """Cancel jobs on a cluster."""
    from skystate import sdk

    if job_ids and (all_jobs or all_users):
        _fail(f"give job IDs or --all, not both (skystate cancel {cluster} --all)", code=2)
    if not job_ids and not (all_jobs or all_users):
        _fail(f"give job IDs or --all: skystate cancel {cluster} JOB_ID..., or "
              f"skystate cancel {cluster} --all", code=2)
    sdk.get(sdk.cancel(cluster, all=all_jobs, all_users=all_users, job_ids=job_ids or None))
    what = "all jobs" if all_jobs or all_users else "job(s) " + ", ".join(map(str, job_ids))
    _console().print(f"Cancelled {what} on {cluster}.")


@app.command()
def autostop(
    cluster: str = typer.Argument(..., help="The cluster."),
    idle_minutes: int = typer.Option(5, "-i", "--idle-minutes",
                                     help="Idle minutes before it stops."),
    down_after: bool = typer.Option(False, "--down", help="Tear down instead of stopping."),
    cancel_it: bool = typer.Option(False, "--cancel", help="Turn autostop off."),
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
