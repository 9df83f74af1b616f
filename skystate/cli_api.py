"""``skystate api start|stop|status|info|cancel|logs``: the API server and its requests."""

from __future__ import annotations

import json
import time

import typer

from skystate.cli_output import output_format, output_option, print_listing

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
def info(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Version, address and pid of the API server (starting it if needed)."""
    from skystate import sdk

    details = sdk.api_info()
    if as_json:
        typer.echo(json.dumps(details, indent=2))
    else:
        typer.echo(f"{details['status']}: skystate {details['version']} at {details['url']} "
                   f"(pid {details['pid']}, user {details['user']['name']})")
        shown = ", ".join(f"{k}={'unset' if v is None else v}"
                          for k, v in (details.get("settings") or {}).items())
        typer.echo(f"server settings: {shown or '-'}")
        for line in details.get("settings_differ") or []:
            typer.echo(f"differs from this shell: {line} (your requests carry this "
                       "shell's value)")


@api_app.command("status")
def status(
    request_ids: list[str] = typer.Argument(None, help="Only these requests (IDs or prefixes)."),
    all_status: bool = typer.Option(False, "--all", "-a", help="Include finished requests."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (same as -o json)."),
    output: str = output_option(),
) -> None:
    """Requests and their statuses (unfinished ones unless --all)."""
    from skystate import sdk
    from skystate.status_view import job_status_style
    from skystate.tables import Column, Table

    fmt = output_format(output, as_json)
    rows = sdk.api_status(request_ids or None, all_status=all_status)
    if fmt == "json":
        typer.echo(json.dumps([{**r, "status": r["status"].value} for r in rows], indent=2,
                              default=str))
        return
    table = [[row["request_id"], row["name"], str(row.get("cluster_name") or "-"),
              row["status"].value, _created(row.get("created_at")),
              str(row.get("user_name") or "-"), str(row.get("status_msg") or "-")]
             for row in rows]
    print_listing([Table(empty="No requests" + ("." if all_status else " in flight "
                                                "(--all shows finished ones)."),
                         columns=[Column("ID"), Column("NAME"), Column("CLUSTER", 1),
                                  Column("STATUS", style=job_status_style()),
                                  Column("CREATED", 2), Column("USER", 3),
                                  Column("MESSAGE", 4)], rows=table)], fmt)


def _created(timestamp: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(timestamp or 0))


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
    follow: bool = typer.Option(True, "--follow/--no-follow",
                                help="Keep printing until the request finishes."),
    tail: int | None = typer.Option(None, "--tail", help="Only the last N lines."),
) -> None:
    """Stream a request's log, then exit 1 if it failed."""
    from skystate import sdk

    try:
        sdk.stream_and_get(request_id, tail=tail, follow=follow)
    except Exception as exc:  # noqa: BLE001 - the request's own error, shown once
        typer.echo(f"Request failed: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
