"""The SkyPilot-style job commands: ``launch``, ``exec``, ``logs``, ``queue``, ``cancel``,
``autostop`` (typer command functions that ``skystate.cli`` registers)."""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from skystate.cli_output import (
    console,
    fail,
    json_option,
    output_format,
    output_option,
    print_listing,
)


def logs(
    cluster: str = typer.Argument(..., help="The cluster."),
    job_id: int | None = typer.Argument(None, help="Job id (default: the latest)."),
    follow: bool = typer.Option(True, "--follow/--no-follow",
                                help="Keep printing until the job finishes."),
    tail: int = typer.Option(0, "--tail", help="Only the last N lines (0: all)."),
) -> None:
    """Print a job's log; exit 0 if it succeeded, 100 if it failed, 102 if no such job."""
    from skystate import sdk

    raise typer.Exit(sdk.tail_logs(cluster, job_id, follow=follow, tail=tail))


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
    out = console()
    if job_id is None or cluster is None:
        out.print(f"Cluster {cluster} is UP (no job to run).")
        return
    if detach:
        out.print(f"Job {job_id} submitted on {cluster}. Follow it: skystate logs {cluster} "
                  f"{job_id}; stop it: skystate cancel {cluster} {job_id}")
        return
    from skystate import sdk

    raise typer.Exit(sdk.tail_logs(cluster, job_id, follow=True))


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
        fail(f"give job IDs or --all, not both (skystate cancel {cluster} --all)", code=2)
    if not job_ids and not (all_jobs or all_users):
        fail(f"give job IDs or --all: skystate cancel {cluster} JOB_ID..., or "
              f"skystate cancel {cluster} --all", code=2)
    sdk.get(sdk.cancel(cluster, all=all_jobs, all_users=all_users, job_ids=job_ids or None))
    what = "all jobs" if all_jobs or all_users else "job(s) " + ", ".join(map(str, job_ids))
    console().print(f"Cancelled {what} on {cluster}.")


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
    console().print(f"Autostop of {cluster}: " + (
        "cancelled" if cancel_it else f"{idle_minutes} idle minute(s), "
        f"then {'down' if down_after else 'stop'}"))
