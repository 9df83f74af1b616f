"""``skystate serve up|update|status|down|logs|terminate-replica``: services (typer
commands; registered in cli).

Importing this module imports only typer; each command imports the SDK when it runs.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from skystate.cli_output import output_format, output_option, print_listing
from skystate.time_cells import ago, span

serve_app = typer.Typer(help="Services: replicas behind a load balancer, probed, "
                             "autoscaled and updated without downtime.",
                        no_args_is_help=True)


@serve_app.command("up")
def up(
    task_yaml: str = typer.Argument(..., metavar="TASK.yaml",
                                    help="A SkyPilot task YAML with a service: section."),
    name: str = typer.Option(..., "-n", "--service-name", "--name", help="The service's name."),
) -> None:
    """Spin up a service; prints its endpoint once its load balancer listens."""
    import skystate as sky

    service, endpoint = sky.get(sky.serve.up(sky.Task.from_yaml(task_yaml), name))
    typer.echo(f"Service {service!r} is starting; endpoint: {endpoint}")
    typer.echo(f"See it with `skystate serve status {service}`; its replicas become READY "
               "when their readiness probe passes.", err=True)


@serve_app.command("update")
def update(
    name: str = typer.Argument(..., metavar="NAME", help="The service's name."),
    task_yaml: str = typer.Argument(..., metavar="TASK.yaml", help="The new version's task."),
    mode: str = typer.Option("rolling", "--mode",
                             help="rolling (one replica at a time) or blue_green."),
) -> None:
    """Update a service to a new version, without downtime."""
    import skystate as sky

    sky.get(sky.serve.update(sky.Task.from_yaml(task_yaml), name, mode=mode))
    typer.echo(f"Service {name!r} is updating ({mode}); watch it with "
               f"`skystate serve status {name}`.")


def service_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in records:
        ready = sum(str(x["status"]) == "READY" for x in r["replica_info"])
        live = [x for x in r["replica_info"] if not str(x["status"]).startswith(
            ("FAILED", "PREEMPTED"))]
        rows.append([r["name"], ",".join(map(str, r["active_versions"])) or "-",
                     span(r["uptime"]), str(r["status"]), f"{ready}/{len(live)}",
                     r["endpoint"] or "-", r["policy"] or "-", r["load_balancing_policy"],
                     r.get("reason") or r.get("controller_error") or ""])
    return rows


def replica_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    return [[r["name"], str(x["replica_id"]), str(x["version"]), x["endpoint"] or "-",
             ago(x["launched_at"]), "spot" if x.get("is_spot") else "on-demand",
             str(x["status"]), x.get("failure_reason") or ""]
            for r in records for x in r["replica_info"]]


@serve_app.command("status")
def status(
    names: list[str] = typer.Argument(None, metavar="[NAME]...", help="Services (all)."),
    endpoint: bool = typer.Option(False, "--endpoint", help="Print only the endpoint."),
    as_json: bool = typer.Option(False, "--json", help="Print the records as JSON (-o json)."),
    output: str = output_option(),
) -> None:
    """Services and their replicas: status, versions, endpoint and why."""
    import skystate as sky
    from skystate.tables import Column, Table

    fmt = output_format(output, as_json)
    records = sky.get(sky.serve.status(names or None))
    if endpoint:
        for r in records:
            typer.echo(r["endpoint"] or "-")
        return
    if fmt == "json":
        print(json.dumps(records, indent=2, default=str))
        return
    services = Table(title="Services", columns=[
        Column("NAME"), Column("VERSION", 2), Column("UPTIME", 3), Column("STATUS"),
        Column("REPLICAS", 1), Column("ENDPOINT"), Column("POLICY", 4),
        Column("LB POLICY", 5), Column("REASON", 1)], rows=service_rows(records),
        empty="No services.")
    replicas = Table(title="Service Replicas", columns=[
        Column("SERVICE_NAME"), Column("ID"), Column("VERSION", 1), Column("ENDPOINT", 2),
        Column("LAUNCHED", 3), Column("CAPACITY", 2), Column("STATUS"), Column("REASON", 1)],
        rows=replica_rows(records), empty="No service replicas.")
    print_listing([services, replicas] if records else [services], fmt)


@serve_app.command("down")
def down(
    names: list[str] = typer.Argument(None, metavar="[NAME]...", help="Services."),
    all_services: bool = typer.Option(False, "-a", "--all", help="Every service."),
    purge: bool = typer.Option(False, "-p", "--purge",
                               help="Forget replicas that cannot be torn down."),
) -> None:
    """Tear services down: replicas, load balancer and record; waits until all are gone."""
    import skystate as sky

    if bool(names) == all_services:
        raise typer.BadParameter("give service names or --all (not both)")
    sky.get(sky.serve.down(names or None, all=all_services, purge=purge))


@serve_app.command("logs")
def logs(
    name: str = typer.Argument(..., metavar="NAME", help="The service's name."),
    replica_id: int | None = typer.Argument(None, metavar="[REPLICA_ID]",
                                            help="A replica's program output."),
    controller: bool = typer.Option(False, "--controller",
                                    help="The controller's decisions and why."),
    load_balancer: bool = typer.Option(False, "--load-balancer", help="The load balancer's."),
    no_follow: bool = typer.Option(False, "--no-follow", help="Print what is there and exit."),
) -> None:
    """Print a service component's log, following it while the service runs."""
    import skystate as sky

    if sum((controller, load_balancer, replica_id is not None)) != 1:
        raise typer.BadParameter("give exactly one of --controller, --load-balancer or "
                                 "REPLICA_ID")
    target = ("controller" if controller else "load_balancer" if load_balancer
              else "replica")
    sky.serve.tail_logs(name, target, replica_id=replica_id, follow=not no_follow)


@serve_app.command("terminate-replica")
def terminate_replica(
    name: str = typer.Argument(..., metavar="NAME", help="The service's name."),
    replica_id: int = typer.Argument(..., metavar="REPLICA_ID"),
    purge: bool = typer.Option(False, "-p", "--purge", help="Also one in a failed status."),
) -> None:
    """Tear one replica down (the controller replaces it if it is still wanted)."""
    import skystate as sky

    sky.get(sky.serve.terminate_replica(name, replica_id, purge))
