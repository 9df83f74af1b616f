"""The SkyPilot-compatible SDK: every call is a request to the API server, with an ID.

``sky.launch(...)`` returns a request ID at once; ``sky.get(id)`` waits for it and
returns the seed's value or raises the original exception; ``sky.stream_and_get``
prints its log as it runs. What each request does is ``skystate.reconcile.operations``;
the server runs it (starting a local server on first use).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from skystate.enums import OptimizeTarget, StatusRefreshMode

if TYPE_CHECKING:
    from skystate.server.payloads import RequestPayload

__all__ = [
    "api_cancel", "api_info", "api_start", "api_status", "api_stop", "apply", "autostop",
    "cancel", "down", "download_logs", "exec", "get", "job_status", "launch", "plan",
    "queue", "refresh", "start", "status", "stop", "stream_and_get", "tail_logs",
]

RequestId = str


def _client() -> Any:
    from skystate.server.client import client

    return client()


def _submit(name: str, **args: Any) -> RequestId:
    return _client().submit(name, args)  # type: ignore[no-any-return]


def _task_config(task: Any, *, file_mounts: bool = True) -> Any:
    """A Task as its YAML dict, with local paths made absolute (the server's cwd differs).

    A ``sky.Dag`` must hold one task (the seed's rule). ``file_mounts=False`` (exec):
    mounts are neither checked nor sent, since exec syncs only the workdir.
    """
    from skystate.spec.dag import Dag
    from skystate.spec.task import Task

    if isinstance(task, (str, Path)):
        task = Task.from_yaml(task)
    if isinstance(task, Dag):
        task = task.single_task()
    if not isinstance(task, Task):
        raise ValueError(f"expected a sky.Task, got {type(task).__name__}")
    if callable(task.run):
        from skystate.exceptions import NotSupportedError

        raise NotSupportedError("a Task whose run is a Python callable cannot be sent to the "
                                "API server; give run as a command string")
    config = task.to_yaml_config()
    if file_mounts:
        task.check_sources()  # here, the errors can name the task YAML's file:line
    else:
        config.pop("file_mounts", None)
        Task.from_yaml_config(config).check_sources()  # the workdir only
    if isinstance(config.get("workdir"), str):
        config["workdir"] = os.path.abspath(os.path.expanduser(config["workdir"]))
    mounts = config.get("file_mounts") or {}
    for dst, src in list(mounts.items()):
        if isinstance(src, str) and "://" not in src:
            mounts[dst] = os.path.abspath(os.path.expanduser(src))
        elif isinstance(src, dict) and src.get("source"):  # a storage mount's local source(s)
            sources = [src["source"]] if isinstance(src["source"], str) else src["source"]
            fixed = [s if "://" in s else os.path.abspath(os.path.expanduser(s))
                     for s in sources]
            mounts[dst] = {**src, "source": fixed[0] if isinstance(src["source"], str)
                           else fixed}
    return config


def _client_command() -> str:
    from skystate.client_command import client_command

    return client_command()


# --- clusters and jobs (the seed's signatures) ------------------------------------------


def launch(task: Any, cluster_name: str | None = None, retry_until_up: bool = False,
           idle_minutes_to_autostop: int | None = None, dryrun: bool = False,
           down: bool = False, backend: Any = None,
           optimize_target: OptimizeTarget = OptimizeTarget.COST, no_setup: bool = False,
           clone_disk_from: str | None = None, fast: bool = False,
           _need_confirmation: bool = False, _is_launched_by_jobs_controller: bool = False,
           _is_launched_by_sky_serve_controller: bool = False,
           _disable_controller_check: bool = False) -> RequestId:
    """Request returns ``(job_id, handle)``."""
    return _submit("launch", task=_task_config(task), cluster_name=cluster_name,
                   retry_until_up=retry_until_up,
                   idle_minutes_to_autostop=idle_minutes_to_autostop, dryrun=dryrun,
                   down=down, optimize_target=optimize_target, no_setup=no_setup,
                   clone_disk_from=clone_disk_from, fast=fast,
                   _client_command=_client_command())


def exec(task: Any, cluster_name: str | None = None, dryrun: bool = False,  # noqa: A001
         down: bool = False, backend: Any = None) -> RequestId:
    """Request returns ``(job_id, handle)``. Syncs the workdir, not the file mounts."""
    return _submit("exec", task=_task_config(task, file_mounts=False),
                   cluster_name=cluster_name, dryrun=dryrun, down=down,
                   _client_command=_client_command())


def queue(cluster_name: str, skip_finished: bool = False, all_users: bool = False) -> RequestId:
    return _submit("queue", cluster_name=cluster_name, skip_finished=skip_finished,
                   all_users=all_users)


def job_status(cluster_name: str, job_ids: Sequence[int] | None = None) -> RequestId:
    return _submit("job_status", cluster_name=cluster_name,
                   job_ids=list(job_ids) if job_ids is not None else None)


def tail_logs(cluster_name: str, job_id: int | None, follow: bool, tail: int = 0,
              output_stream: TextIO | None = None) -> int:
    """Print the job's log (following it if asked); the ``JobExitCode``."""
    request_id = _submit("tail_logs", cluster_name=cluster_name, job_id=job_id,
                         follow=follow, tail=tail)
    return int(stream_and_get(request_id, output_stream=output_stream))


def download_logs(cluster_name: str, job_ids: Sequence[int] | None) -> RequestId:
    return _submit("download_logs", cluster_name=cluster_name,
                   job_ids=list(job_ids) if job_ids is not None else None)


def cancel(cluster_name: str, all: bool = False, all_users: bool = False,  # noqa: A002
           job_ids: Sequence[int] | None = None,
           _try_cancel_if_cluster_is_init: bool = False) -> RequestId:
    return _submit("cancel", cluster_name=cluster_name, all=all, all_users=all_users,
                   job_ids=list(job_ids) if job_ids is not None else None)


def autostop(cluster_name: str, idle_minutes: int, down: bool = False) -> RequestId:
    return _submit("autostop", cluster_name=cluster_name, idle_minutes=idle_minutes,
                   down=down)


def stop(cluster_name: str, purge: bool = False) -> RequestId:
    return _submit("stop", cluster_name=cluster_name, purge=purge)


def start(cluster_name: str, idle_minutes_to_autostop: int | None = None,
          retry_until_up: bool = False, down: bool = False, force: bool = False) -> RequestId:
    return _submit("start", cluster_name=cluster_name,
                   idle_minutes_to_autostop=idle_minutes_to_autostop,
                   retry_until_up=retry_until_up, down=down, force=force)


def down(cluster_name: str, purge: bool = False) -> RequestId:
    return _submit("down", cluster_name=cluster_name, purge=purge)


def status(cluster_names: str | Sequence[str] | None = None,
           refresh: StatusRefreshMode | bool = StatusRefreshMode.NONE,
           all_users: bool = False) -> RequestId:
    names = [cluster_names] if isinstance(cluster_names, str) else cluster_names
    return _submit("status", cluster_names=list(names) if names else None,
                   refresh=refresh, all_users=all_users)


# --- state directories ------------------------------------------------------------------


def plan(state_dir: str | Path, refresh: bool = False, targets: Sequence[str] | None = None,
         prune: bool = True) -> RequestId:
    """Request returns the ``Plan`` for a state directory (nothing is changed)."""
    return _submit("plan", state_dir=str(Path(state_dir).resolve()), refresh=refresh,
                   targets=list(targets or []), prune=prune)


def apply(state_dir_or_plan: Any, targets: Sequence[str] | None = None, prune: bool = True,
          refresh: bool = False, wait: bool = False, lock_timeout: float = 30.0) -> RequestId:
    """Apply a state directory, or exactly a saved plan (a ``Plan``, its JSON or file).

    The request returns a summary of every action's outcome; if any action failed or was
    skipped it fails instead, with ``ApplyFailedError`` (whose ``outcomes`` are that
    summary; what the other actions reached is recorded all the same).
    """
    from skystate.reconcile.plan import Plan

    source: Any = state_dir_or_plan
    if isinstance(source, Plan):
        source = source.to_json()
    elif isinstance(source, (str, Path)) and Path(source).suffix == ".json" and Path(
            source).is_file():
        source = Path(source).read_text()  # a saved plan
    elif isinstance(source, (str, Path)):
        source = str(Path(source).resolve())
    return _submit("apply", source=source, targets=list(targets or []), prune=prune,
                   refresh=refresh, wait=wait, lock_timeout=lock_timeout)


def refresh(state_dir: str | Path | None = None, rebuild: bool = False,
            owners: Sequence[str] | None = None) -> RequestId:
    """Request returns the refresh report (tracked, leaked, vanished, foreign, unknown)."""
    return _submit("refresh", state_dir=str(Path(state_dir).resolve()) if state_dir else None,
                   rebuild=rebuild, owners=list(owners or []))


# --- requests -------------------------------------------------------------------------


def get(request_id: RequestId) -> Any:
    """Wait for the request; its return value, or raise its exception."""
    client = _client()
    return client.result(client.resolve(request_id))


def stream_and_get(request_id: RequestId | None = None, log_path: str | None = None,
                   tail: int | None = None, follow: bool = True,
                   output_stream: TextIO | None = None) -> Any:
    """Print the request's log as it is written, then return its result (or raise).

    A request still waiting its turn says what it waits for; on a terminal a spinner
    names the phase in progress; Ctrl-C says what really stops the work.
    """
    out = output_stream or sys.stdout
    if request_id is None and log_path is not None:
        lines = Path(log_path).read_text(errors="replace").splitlines(keepends=True)
        out.write("".join(lines[-tail:] if tail else lines))
        return None
    client = _client()
    if request_id is None:
        from skystate.server.client import user_name

        mine = [r for r in client.listing(all_status=True) if r.get("user_name") == user_name()]
        if not mine:
            raise ValueError("there is no request to stream")
        request_id = str(mine[0]["request_id"])
    full_id = client.resolve(request_id)
    from skystate.request_progress import LogWriter, interrupt_hint, wait_while_pending

    row = client.request(full_id)
    writer = None
    try:
        if follow:
            wait_while_pending(client, full_id, out)
        writer = LogWriter(out, str(row["name"]), spinner=row["name"] != "tail_logs")
        client.stream(full_id, follow=follow, tail=tail, out=writer)
    except KeyboardInterrupt:
        if writer is not None:
            writer.close()
        print(f"\n{interrupt_hint(row, writer.jobs if writer else [])}", file=sys.stderr)
        raise
    finally:
        if writer is not None:
            writer.close()
    return client.result(full_id)


def api_status(request_ids: list[RequestId] | None = None,
               all_status: bool = False) -> list[RequestPayload]:
    """Requests (unfinished ones unless ``all_status``), newest first, as
    ``RequestPayload``s (``row.request_id`` or ``row["request_id"]``).

    Each of ``request_ids`` is a full ID or a prefix of at least 8 characters (the
    ``ID[:8]`` the CLI prints); with IDs, finished requests are listed too.
    """
    from skystate.server.payloads import RequestPayload

    rows = _client().listing(request_ids=request_ids, all_status=all_status)
    return [RequestPayload.of_row(row) for row in rows]


def api_cancel(request_ids: RequestId | list[RequestId] | None = None, all_users: bool = False,
               silent: bool = False) -> RequestId:
    """Cancel now; request returns the IDs that were cancelled.

    With no IDs (None), every unfinished request of this user (of everyone with
    ``all_users``). Each ID is a full ID or a prefix of at least 8 characters naming one
    request of this user (any user's with ``all_users``); a shorter, ambiguous or other
    user's ID is an error and nothing is cancelled. An empty list cancels nothing.
    """
    ids = [request_ids] if isinstance(request_ids, str) else request_ids
    client = _client()
    if ids:
        ids = [client.resolve(i) for i in ids]
    request_id = client.cancel(ids, all_users)
    if not silent:
        cancelled = client.result(request_id)
        print(f"Cancelled {len(cancelled)} request(s): {', '.join(cancelled) or '-'}",
              file=sys.stderr)
    return request_id  # type: ignore[no-any-return]


def api_info() -> dict[str, Any]:
    """The server's health, version and own settings; ``settings_differ`` lists each
    setting this process sees differently (its requests carry this process's values)."""
    from skystate.server import settings
    from skystate.server.client import user_name

    client = _client()
    info = client.health()
    server_settings = info.get("settings") or {}
    return {**info, "url": client.url, "user": {"name": user_name()},
            "client_settings": settings.current(),
            "settings_differ": settings.differences(server_settings, settings.current())}


def api_start(*, deploy: bool = False, host: str = "127.0.0.1",
              foreground: bool = False) -> None:
    """Start this home's API server if none runs (``foreground``: in this process)."""
    from skystate.server.main import serve

    if deploy and host == "127.0.0.1":
        host = "0.0.0.0"
    if foreground:
        serve(host, int(os.environ.get("SKYSTATE_API_PORT", "0")), deploy=deploy)
        return
    from skystate.server.client import ensure_server

    ensure_server(host=host, deploy=deploy)


def api_stop() -> None:
    """Stop this home's API server (requests in flight fail; recorded ones stay)."""
    from skystate.server.client import stop_server

    stop_server()
