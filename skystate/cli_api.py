"""``skystate api start|stop|status|info|cancel|logs``: the API server and its requests."""

from __future__ import annotations

import json
import time

import typer

api_app = typer.Typer(help="The API server and its requests.", no_args_is_help=True)


@api_app.command("start")
def start(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(0, "--port", help="Port (0: any free one)."),
    foreground: bool = typer.Option(False, "--foreground", help="Run in this process."),
    deploy: bool = typer.Option(False, "--deploy", help="Listen on 0.0.0.0, more workers."),
    watch: str | None = typer.Option(None, "--watch", metavar="DIR",
                                     help="Also keep DIR applied (the watch loop)."),
) -> None:
    """Start this SKYSTATE_HOME's API server (non-loopback needs SKYSTATE_API_TOKEN)."""
    from skystate import sdk
    from skystate.server.client import ensure_server, server_info

    if deploy and host == "127.0.0.1":
        host = "0.0.0.0"
    if foreground:
        from skystate.server.main import serve

        serve(host, port, deploy=deploy, watch_dir=watch)
        return
    if watch and server_info() is not None:
        raise typer.BadParameter("an API server is already running; `skystate api stop` "
                                 "it first to start one with --watch")
    ensure_server(host=host, port=port, deploy=deploy, watch_dir=watch)
    info = sdk.api_info()
    typer.echo(f"API server {info['version']} running at {info['url']} (pid {info['pid']})"
               + (f", watching {watch}" if watch else ""))


@api_app.command("stop")
def stop() -> None:
    """Stop the API server (recorded requests are kept)."""
    from skystate.server.client import stop_server

    typer.echo("API server stopped." if stop_server() else "No API server was running.")


@api_app.command("info")
def info(as_json: bool = typer.Option(False, "--json")) -> None:
    """Version, address and pid of the API server (starting it if needed)."""
    from skystate import sdk

    details = sdk.api_info()
    if as_json:
        typer.echo(json.dumps(details, indent=2))
    else:
        typer.echo(f"{details['status']}: skystate {details['version']} at {details['url']} "
                   f"(pid {details['pid']}, user {details['user']['name']})")


@api_app.command("status")
def status(
    request_ids: list[str] = typer.Argument(None),
    all_status: bool = typer.Option(False, "--all", "-a", help="Include finished requests."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Requests and their statuses (unfinished ones unless --all)."""
    from rich.console import Console
    from rich.table import Table

    from skystate import sdk

    rows = sdk.api_status(request_ids or None, all_status=all_status)
    if as_json:
        typer.echo(json.dumps([{**r, "status": r["status"].value} for r in rows], indent=2,
                              default=str))
        return
    table = Table()
    with_message = any(row.get("status_msg") for row in rows)  # e.g. what it waits for
    for column in ("ID", "USER", "NAME", "CLUSTER", "CREATED", "STATUS"):
        table.add_column(column)
    if with_message:
        table.add_column("MESSAGE", overflow="fold")
    for row in rows:
        created = time.strftime("%H:%M:%S", time.localtime(row.get("created_at") or 0))
        cells = [row["request_id"], str(row.get("user_name") or "-"), row["name"],
                 str(row.get("cluster_name") or "-"), created, row["status"].value]
        table.add_row(*cells, *([row.get("status_msg") or ""] if with_message else []))
    Console(highlight=False).print(table)


@api_app.command("cancel")
def cancel(
    request_ids: list[str] = typer.Argument(None),
    all_mine: bool = typer.Option(False, "--all", "-a", help="Every request of mine."),
    all_users: bool = typer.Option(False, "--all-users", "-u", help="Everyone's requests."),
) -> None:
    """Cancel requests at once (their processes are killed)."""
    from skystate import sdk

    if not request_ids and not (all_mine or all_users):
        raise typer.BadParameter("give request IDs, or --all / --all-users")
    cancelled = sdk.get(sdk.api_cancel(request_ids or None, all_users=all_users, silent=True))
    typer.echo(f"Cancelled {len(cancelled)} request(s)" +
               (f": {', '.join(cancelled)}" if cancelled else "."))


@api_app.command("logs")
def logs(
    request_id: str = typer.Argument(None, help="A request ID or its prefix (default: latest)."),
    follow: bool = typer.Option(True, "--follow/--no-follow"),
    tail: int | None = typer.Option(None, "--tail"),
) -> None:
    """Stream a request's log, then exit 1 if it failed."""
    from skystate import sdk

    try:
        sdk.stream_and_get(request_id, tail=tail, follow=follow)
    except Exception as exc:  # noqa: BLE001 - the request's own error, shown once
        typer.echo(f"Request failed: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
