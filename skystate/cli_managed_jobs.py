"""``skystate jobs launch|queue|cancel|logs``: managed jobs (typer commands; registered in cli).

Importing this module imports only typer; each command imports the SDK when it runs.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from skystate.cli_output import output_format, output_option, print_listing
from skystate.time_cells import ago, span

jobs_app = typer.Typer(help="Managed jobs: their own cluster, recovered on preemption.",
                       no_args_is_help=True)


@jobs_app.command("launch")
def launch(
    task_yaml: str = typer.Argument(..., metavar="TASK.yaml", help="A SkyPilot task YAML."),
    name: str | None = typer.Option(None, "-n", "--name", help="The job's name."),
    detach: bool = typer.Option(False, "-d", "--detach-run",
                                help="Return once submitted; do not stream the log."),
) -> None:
    """Launch a managed job and stream its log (every attempt) until it ends. A
    multi-document YAML (a header with ``name:``, then tasks) is a pipeline: one job."""
    import skystate as sky

    job_id, _ = sky.get(sky.jobs.launch(sky.Dag.from_yaml(task_yaml), name=name))
    typer.echo(f"Managed job {job_id} submitted. Follow it with `skystate jobs logs "
               f"{job_id}`; see it with `skystate jobs queue`.", err=True)
    if detach:
        return
    code = sky.jobs.tail_logs(job_id=job_id, follow=True)
    raise typer.Exit(code)


def queue_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in records:
        why = r.get("failure_reason") or (
            f"last recovery: {r['last_recovery_reason']}" if r.get("last_recovery_reason")
            else "")
        pipeline = int(r.get("num_tasks") or 1) > 1
        task = str(r.get("task_id", 0)) if pipeline else "-"
        name = f"{r['job_name']}/{r.get('task_name')}" if pipeline else str(r["job_name"])
        rows.append([str(r["job_id"]), task, name, str(r["status"]),
                     str(r.get("attempt") or "-"), str(r["recovery_count"]),
                     ago(r["submitted_at"]), span(r["duration"]), str(r["region"]),
                     str(r["resources"]), f"{r.get('cost', 0.0):.4f}", why])
    return rows


@jobs_app.command("queue")
def queue(
    all_users: bool = typer.Option(False, "-a", "--all-users", help="Every user's jobs."),
    skip_finished: bool = typer.Option(False, "--skip-finished", help="Only unfinished jobs."),
    as_json: bool = typer.Option(False, "--json", help="Print the records as JSON (-o json)."),
    output: str = output_option(),
) -> None:
    """Managed jobs, newest first: status, attempt, recoveries and why."""
    import skystate as sky
    from skystate.tables import Column, Table

    fmt = output_format(output, as_json)
    records = sky.get(sky.jobs.queue(refresh=False, skip_finished=skip_finished,
                                     all_users=all_users))
    if fmt == "json":
        print(json.dumps(records, indent=2, default=str))
        return
    columns = [Column("ID"), Column("TASK", 2), Column("NAME"), Column("STATUS"),
               Column("ATTEMPT", 2),
               Column("RECOVERIES", 1), Column("SUBMITTED", 3), Column("DURATION", 3),
               Column("REGION", 4), Column("RESOURCES", 5), Column("$", 4),
               Column("REASON", 1)]
    print_listing([Table(title="Managed jobs", columns=columns, rows=queue_rows(records),
                         empty="No managed jobs.")], fmt)


@jobs_app.command("cancel")
def cancel(
    job_ids: list[int] = typer.Argument(None, metavar="[IDS]...", help="Job IDs."),
    name: str | None = typer.Option(None, "-n", "--name", help="Cancel the jobs of this name."),
    all_jobs: bool = typer.Option(False, "-a", "--all", help="Cancel all your jobs."),
    all_users: bool = typer.Option(False, "-u", "--all-users", help="Everyone's jobs."),
) -> None:
    """Cancel managed jobs; their clusters are torn down (logs are kept)."""
    import skystate as sky

    asked = sky.get(sky.jobs.cancel(name=name, job_ids=job_ids or None, all=all_jobs,
                                    all_users=all_users))
    typer.echo(f"Cancelling managed job(s): {', '.join(map(str, asked)) or 'none'}")


@jobs_app.command("logs")
def logs(
    job_id: int | None = typer.Argument(None, metavar="[ID]", help="Job ID (default: latest)."),
    name: str | None = typer.Option(None, "-n", "--name", help="The latest job of this name."),
    controller: bool = typer.Option(False, "--controller",
                                    help="The controller's decisions and why, not the job's."),
    no_follow: bool = typer.Option(False, "--no-follow", help="Print what is there and exit."),
    attempt: int | None = typer.Option(None, "--attempt", help="Only this attempt's log."),
) -> None:
    """Print a managed job's log (every attempt, each headed), following it until it ends."""
    import skystate as sky

    code = sky.jobs.tail_logs(name=name, job_id=job_id, follow=not no_follow,
                              controller=controller, attempt=attempt)
    raise typer.Exit(code)
