"""What each SDK request does, as plain functions (the seed's names, arguments, returns).

The API server runs these in its worker processes; ``skystate.sdk`` turns each call
into a request with an ID. Requests that change one cluster run one at a time (the
server's scheduler), so these functions take no state lock of their own.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from skystate.enums import ClusterStatus, JobStatus, OptimizeTarget, StatusRefreshMode
from skystate.exceptions import NotSupportedError
from skystate.providers.phases import phase
from skystate.reconcile.handles import ResourceHandle

__all__ = [
    "autostop", "cancel", "down", "download_logs", "exec", "job_status", "launch", "queue",
    "start", "status", "stop", "tail_logs",
]


def launch(task: Any, cluster_name: str | None = None, retry_until_up: bool = False,
           idle_minutes_to_autostop: int | None = None, dryrun: bool = False,
           down: bool = False, backend: Any = None,
           optimize_target: OptimizeTarget = OptimizeTarget.COST, no_setup: bool = False,
           clone_disk_from: str | None = None, fast: bool = False,
           _need_confirmation: bool = False, _is_launched_by_jobs_controller: bool = False,
           _is_launched_by_sky_serve_controller: bool = False,
           _disable_controller_check: bool = False, _client_command: str | None = None,
           ) -> tuple[int | None, ResourceHandle | None]:
    """Launch a cluster (or reuse it) and run the task on it: ``(job_id, handle)``.

    ``_client_command``: the client's command line, recorded as the cluster's
    ``last_use`` (SkyPilot's ``entrypoint_command``)."""
    from skystate.providers.registry import Providers
    from skystate.reconcile import imperative as imp
    from skystate.spec.home_config import home_providers_config

    task = _single_task(task)
    task.check_sources()  # before any provider call: a missing workdir provisions nothing
    _check_storage(task)
    name = cluster_name or imp.generate_cluster_name()
    imp.check_cluster_name(name)
    if clone_disk_from is not None:
        raise NotSupportedError("clone_disk_from is not supported by skystate's providers")
    resources = imp.task_resources(task)
    autostop = imp.autostop_spec(0 if down and idle_minutes_to_autostop is None
                                 else idle_minutes_to_autostop, down)
    if dryrun:
        from skystate.providers.optimizer import rank_offers

        providers = Providers(home_providers_config())
        if not rank_offers(resources, task.num_nodes, providers, target=optimize_target):
            raise imp.no_offer_error(name, resources, providers)
        return None, None
    providers = Providers(home_providers_config())
    was_up = fast and imp.is_up(name)
    with phase(f"Cluster {name}: launching ({resources_text(resources, task.num_nodes)})",
               done=lambda: f"Cluster {name}: {cluster_summary(name)}"):
        imp.ensure_cluster(name, resources, task.num_nodes, retry_until_up=retry_until_up,
                           autostop=autostop, providers=providers, target=optimize_target)
    # fast: an already-UP cluster skips setup as well as provisioning (as SkyPilot's)
    job_id = _submit_task(name, task, with_setup=not (no_setup or was_up),
                          last_use=_client_command)
    return job_id, imp.handle_of(name)


def exec(task: Any, cluster_name: str | None = None, dryrun: bool = False,  # noqa: A001
         down: bool = False, backend: Any = None, _client_command: str | None = None,
         ) -> tuple[int | None, ResourceHandle | None]:
    """Run the task's ``run`` on an UP cluster: the workdir is synced; provisioning,
    setup and file mounts are skipped (the seed's exec)."""
    from skystate.reconcile import imperative as imp

    task = _single_task(task)
    if cluster_name is None:
        raise ValueError("exec needs cluster_name")
    task.set_file_mounts(None)
    task.set_storage_mounts(None)
    task.check_sources()
    _check_storage(task)
    record, _ = imp.owned_cluster_record(cluster_name)
    if record.get("status") != "UP":
        raise ValueError(f"cluster {cluster_name!r} is {record.get('status')}, not UP; "
                         "use sky.launch or sky.start first")
    if dryrun:
        return None, None
    if down:
        autostop(cluster_name, 0, down=True)
    job_id = _submit_task(cluster_name, task, with_setup=False, last_use=_client_command)
    return job_id, imp.handle_of(cluster_name)


def _check_storage(task: Any) -> None:
    """Storage mounts no node can have are refused before anything is provisioned."""
    from skystate.reconcile import imperative as imp
    from skystate.reconcile import storage_mounts

    mounts = imp.task_file_mounts(task)
    storage_mounts.check(mounts)
    for line in storage_mounts.describe(mounts):
        print(f"Storage: {line}", flush=True)


def resources_text(resources: Any, num_nodes: int) -> str:
    accelerators = resources.accelerators or {}
    inner = ", ".join(f"{k}:{v:g}" for k, v in accelerators.items()) or (
        f"cpus={resources.cpus}" if resources.cpus else "CPU")
    return f"{num_nodes}x({inner})" + (f" on {resources.infra}" if resources.infra else "")


def cluster_summary(name: str) -> str:
    """``UP on aws/us-east-1 (p4d.24xlarge, spot, $6.21/h)``."""
    from skystate.reconcile import imperative as imp

    record, _ = imp.cluster_record(name)
    offer = record.get("offer") or {}
    infra = "/".join(p for p in (offer.get("provider"), offer.get("region"), offer.get("zone"))
                     if p) or record.get("provider")
    market = "spot" if offer.get("use_spot") else "on-demand"
    price = float(offer.get("hourly_price") or 0.0) * int(record.get("num_nodes") or 1)
    return (f"{record.get('status')} on {infra} ({offer.get('instance_type')}, {market}, "
            f"${price:.2f}/h)")


def _submit_task(name: str, task: Any, *, with_setup: bool,
                 last_use: str | None = None) -> int | None:
    from skystate.reconcile import imperative as imp

    if last_use is not None:
        imp.record_last_use(name, last_use)
    what = "setup and run" if with_setup and task.setup else "run"
    print(f"Job on {name}: submitting ({what})...", flush=True)
    job_id = imp.submit(name, task, with_setup=with_setup)
    if job_id is None:
        print(f"Job on {name}: nothing to run.", flush=True)
    else:
        print(f"Job on {name}: submitted as job {job_id} on {name}.", flush=True)
    return job_id


def queue(cluster_name: str, skip_finished: bool = False,
          all_users: bool = False) -> list[dict[str, Any]]:
    from skystate.reconcile import imperative as imp

    _, agent = imp.up_cluster_agent(cluster_name)
    user = imp.current_user()
    records = []
    for job in agent.queue():
        status = JobStatus(str(job["status"]))
        if skip_finished and status.is_terminal():
            continue
        if not all_users and job.get("username") not in (user, None, ""):
            continue
        records.append({**job, **_whole_seconds(job), "status": status})
    return records


def _whole_seconds(job: dict[str, Any]) -> dict[str, int | None]:
    """The seed types ``submitted_at``/``start_at``/``end_at`` as ``int`` timestamps."""
    return {key: None if job.get(key) is None else int(job[key])
            for key in ("submitted_at", "start_at", "end_at")}


def job_status(cluster_name: str, job_ids: Sequence[int] | None = None,
               ) -> dict[int | None, JobStatus | None]:
    from skystate.reconcile import imperative as imp

    _, agent = imp.up_cluster_agent(cluster_name)
    jobs = {int(j["job_id"]): JobStatus(str(j["status"])) for j in agent.queue()}
    if job_ids is None:
        if not jobs:
            return {None: None}
        latest = max(jobs)
        return {latest: jobs[latest]}
    return {int(i): jobs.get(int(i)) for i in job_ids}


def tail_logs(cluster_name: str, job_id: int | None, follow: bool, tail: int = 0,
              output_stream: TextIO | None = None) -> int:
    """Exit code: 0 if the job succeeded, 100 if it failed (``JobExitCode``)."""
    from skystate.reconcile.job_logs import tail_job_log

    if tail < 0:
        raise ValueError("tail must be >= 0")
    return tail_job_log(cluster_name, job_id, follow=follow, tail=tail,
                        out=output_stream or sys.stdout)


def download_logs(cluster_name: str, job_ids: Sequence[int] | None) -> dict[str, str]:
    """Copy job logs under ``$SKYSTATE_HOME/logs/<cluster>/``: ``{job_id: path}``."""
    from skystate.home import home
    from skystate.reconcile import imperative as imp

    _, agent = imp.up_cluster_agent(cluster_name)
    ids = [int(i) for i in job_ids] if job_ids else [int(j["job_id"]) for j in agent.queue()]
    target = home() / "logs" / cluster_name
    target.mkdir(parents=True, exist_ok=True)
    paths = {}
    for job_id in ids:
        path = target / f"job-{job_id}.log"
        path.write_text(agent.read_log(job_id))
        paths[str(job_id)] = str(path)
    return paths


def cancel(cluster_name: str, all: bool = False, all_users: bool = False,  # noqa: A002
           job_ids: Sequence[int] | None = None,
           _try_cancel_if_cluster_is_init: bool = False) -> None:
    from skystate.reconcile import imperative as imp

    if job_ids and (all or all_users):
        raise ValueError("give either job_ids or all/all_users, not both")
    if not job_ids and not (all or all_users):
        raise ValueError("give job_ids, or all=True to cancel every job")
    _, agent = imp.up_cluster_agent(cluster_name, owned=True)
    if job_ids:
        agent.cancel([int(i) for i in job_ids])
        return
    user = imp.current_user()
    mine = [int(j["job_id"]) for j in agent.queue()
            if all_users or j.get("username") in (user, None, "")]
    agent.cancel(mine)


def autostop(cluster_name: str, idle_minutes: int, down: bool = False) -> None:
    from skystate.providers.registry import Providers
    from skystate.reconcile import imperative as imp
    from skystate.reconcile.store import Store
    from skystate.spec.home_config import home_providers_config

    # ClusterDoesNotExist / ClusterOwnerIdentityMismatchError / ClusterNotUpError
    imp.up_cluster_agent(cluster_name, owned=True)
    imp.set_autostop_locked(Store(), cluster_name, imp.autostop_spec(idle_minutes, down),
                            Providers(home_providers_config()))


def stop(cluster_name: str, purge: bool = False) -> None:
    _cluster_op(cluster_name, "stop", purge)


def start(cluster_name: str, idle_minutes_to_autostop: int | None = None,
          retry_until_up: bool = False, down: bool = False, force: bool = False) -> None:
    if down and idle_minutes_to_autostop is None:
        raise ValueError("down=True requires idle_minutes_to_autostop to be set")
    from skystate.reconcile import imperative as imp

    record, _ = imp.owned_cluster_record(cluster_name)
    if record.get("status") != "UP" or force:
        _cluster_op(cluster_name, "start", False)
    if idle_minutes_to_autostop is not None:
        autostop(cluster_name, idle_minutes_to_autostop, down)


def down(cluster_name: str, purge: bool = False) -> None:
    _cluster_op(cluster_name, "down", purge)


def _cluster_op(cluster_name: str, op: str, purge: bool) -> None:
    from rich.console import Console

    from skystate.reconcile import imperative as imp
    from skystate.reconcile.engine import cluster_operation
    from skystate.reconcile.plan import ActionType
    from skystate.spec.home_config import home_providers_config

    imp.owned_cluster_record(cluster_name)  # ClusterDoesNotExist / ...OwnerIdentity...
    out = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    result = cluster_operation(cluster_name, ActionType(op),
                               providers_config=home_providers_config(),
                               progress=progress_printer(out))
    for outcome in result.outcomes:
        if isinstance(outcome.error, NotSupportedError):  # e.g. EC2 cannot stop spot: as is
            raise outcome.error                           # (purge or not), as the seed's
        if outcome.error is not None and not purge:
            raise RuntimeError(f"failed to {op} cluster {cluster_name!r}: {outcome.message}"
                               ) from outcome.error
    if purge and not result.ok:
        _purge_record(cluster_name, op)


def _purge_record(cluster_name: str, op: str) -> None:
    """``purge=True``: record the outcome even though the provider call failed."""
    from skystate.reconcile.store import Store

    store = Store()
    with store.transaction():
        if op == "down":
            store.delete_cluster(cluster_name)
        elif (record := store.cluster(cluster_name)) is not None:
            store.put_cluster({**record, "status": "STOPPED"})


def status(cluster_names: str | Sequence[str] | None = None,
           refresh: StatusRefreshMode | bool = StatusRefreshMode.NONE,
           all_users: bool = False) -> list[dict[str, Any]]:
    """Cluster records with the seed's fields (``handle`` is a ResourceHandle).

    Every mode first looks at the UP clusters whose record may be stale (autostop set,
    jobs active) within ``status_check.STATUS_BUDGET``; one that could not be observed
    has ``status_unknown: True`` and ``status_error``. ``FORCE`` (or True) refreshes
    every provider first, as ``skystate refresh`` does.
    """
    from skystate.reconcile import imperative as imp
    from skystate.reconcile.store import group_nodes, read_snapshot

    names = [cluster_names] if isinstance(cluster_names, str) else cluster_names
    if refresh not in (False, StatusRefreshMode.NONE, StatusRefreshMode.AUTO):
        from skystate.reconcile.engine import refresh_state

        refresh_state()  # what ``refresh`` requests do (``refresh`` is the argument here)
    unknown = check_status(names)
    tables = read_snapshot()
    nodes = group_nodes(tables.get("nodes", []))
    user = imp.current_user()
    records = []
    for record in sorted(tables.get("clusters", []), key=lambda c: c["name"]):
        if names and record["name"] not in names:
            continue
        if not all_users and record.get("user_name", user) != user:
            continue
        row = _status_record(record, nodes.get(record["name"], []))
        records.append({**row, "status_unknown": record["name"] in unknown,
                        "status_error": unknown.get(record["name"])})
    return records


_STATUS_PROVIDERS: dict[str, Any] = {}


def check_status(cluster_names: Sequence[str] | None = None) -> dict[str, str]:
    """``status_check.check_clusters`` on this home: the clusters left unknown.

    The providers are kept between calls (in the API server), so the SSH connections
    a look uses stay open for the next one (a stale one is reopened); not with
    ``SKYSTATE_FAULTS``, whose file is read when a provider is built.
    """
    import json
    import os

    from skystate.providers.registry import Providers
    from skystate.reconcile.status_check import check_clusters
    from skystate.reconcile.store import Store
    from skystate.spec.home_config import home_providers_config

    store = Store()
    config = home_providers_config()
    key = f"{store.path}:{json.dumps(config, sort_keys=True, default=str)}"
    providers = _STATUS_PROVIDERS.get(key)
    if providers is None or os.environ.get("SKYSTATE_FAULTS"):
        providers = _STATUS_PROVIDERS[key] = Providers(config)
    return check_clusters(store, providers, cluster_names)


def _status_record(record: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    from skystate.reconcile import imperative as imp
    from skystate.reconcile.health import status_fields
    from skystate.reconcile.status_rows import resources_str

    autostop_cfg = record.get("autostop")
    user = record.get("user_name") or imp.current_user()
    return {
        **status_fields(record),
        "name": record["name"],
        "launched_at": int(record.get("launched_at") or 0),
        "handle": ResourceHandle.from_records(record, nodes),
        "last_use": record.get("last_use", ""),
        "status": ClusterStatus(record.get("status") or "INIT"),
        "autostop": int(autostop_cfg["idle_minutes"]) if autostop_cfg else -1,
        "to_down": bool(autostop_cfg and autostop_cfg.get("down")),
        "metadata": {"owner": record.get("owner"), "managed_by": record.get("managed_by")},
        "user_hash": imp.user_hash(user),
        "user_name": user,
        "resources_str": resources_str(record),
    }


def refresh(state_dir: str | None = None, rebuild: bool = False,
            owners: Sequence[str] | None = None, lock_timeout: float = 30.0) -> Any:
    """``skystate refresh``: what providers report, sorted and folded into the state."""
    from skystate.reconcile.engine import refresh_state

    return refresh_state(state_dir, rebuild=rebuild, owners=owners or (),
                         lock_timeout=lock_timeout)


def _single_task(task: Any) -> Any:
    from skystate.spec.task import Task

    if isinstance(task, (str, Path)):
        return Task.from_yaml(task)
    if isinstance(task, dict):  # how a Task travels in a request
        return Task.from_yaml_config(task)
    if not isinstance(task, Task):
        raise ValueError(f"expected a sky.Task, got {type(task).__name__}")
    return task


# --- state directories ---------------------------------------------------------------


def plan(state_dir: str, refresh: bool = False, targets: Sequence[str] | None = None,
         prune: bool = True) -> Any:
    """The plan for a state directory (a ``Plan``; nothing is changed)."""
    from skystate.reconcile.engine import plan_state_dir

    return plan_state_dir(state_dir, targets=targets or (), prune=prune, refresh=refresh)


def apply(source: Any, targets: Sequence[str] | None = None, prune: bool = True,
          refresh: bool = False, wait: bool = False,
          lock_timeout: float = 30.0) -> dict[str, Any]:
    """Apply a state directory, or exactly a saved plan (a ``Plan`` or its JSON).

    Progress is printed as it happens (the request's log); the return value sums up
    every action's outcome.
    """
    from rich.console import Console

    from skystate.reconcile import engine
    from skystate.reconcile.plan import Plan
    from skystate.reconcile.render import render_plan

    out = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    the_plan = saved_plan(source)
    if the_plan is not None:
        result = engine.apply_saved_plan(the_plan, progress=progress_printer(out),
                                         lock_timeout=lock_timeout)
    else:
        def show(p: Plan) -> bool:
            out.print(render_plan(p))
            return True

        the_plan, result = engine.apply_state_dir(
            str(source), targets=targets or (), prune=prune, refresh=refresh, confirm=show,
            progress=progress_printer(out), lock_timeout=lock_timeout)
        if result is None:
            out.print(render_plan(the_plan))
            return {"ok": True, "changed": False, "outcomes": []}
    failed = result.failed()
    out.print(f"Apply finished: {len(result.outcomes) - len(failed)} succeeded, "
              f"{len(failed)} failed or skipped.")
    if wait:
        wait_for_jobs(out, [o.action for o in result.outcomes
                            if o.status == "succeeded" and o.action.type.value == "submit-job"])
    outcomes = [{"address": o.action.address, "type": o.action.type.value,
                 "status": o.status, "message": o.message, "seconds": o.seconds}
                for o in result.outcomes]
    if failed:  # the request fails; what the other actions reached is recorded already
        from skystate.exceptions import ApplyFailedError

        listed = "".join(f"\n  - {o.action.type.value} {o.action.address}: {o.message}"
                         for o in failed)
        raise ApplyFailedError(f"{len(failed)} of {len(result.outcomes)} action(s) failed or "
                               f"were skipped (the rest is applied and recorded):{listed}",
                               outcomes, result.state_version)
    return {"ok": True, "changed": True, "state_version": result.state_version,
            "outcomes": outcomes}


def _print_job_output(out: Any, job: dict[str, Any]) -> None:
    """Follow one job's log from its cluster's agent (nothing if the agent is gone: the
    caller still reports the job's final status)."""
    from skystate.exceptions import SkyStateError
    from skystate.reconcile.job_logs import tail_job_log

    out.print(f"Job/{job['cluster']}/{job['name']}: output of job {job['job_id']}:")
    try:
        tail_job_log(job["cluster"], int(job["job_id"]), follow=True, out=sys.stdout)
    except (SkyStateError, OSError) as exc:
        out.print(f"Job/{job['cluster']}/{job['name']}: its output cannot be read ({exc})")


def saved_plan(source: Any) -> Any:
    """An apply's source as a saved ``Plan`` (given as one or as its JSON); None for a
    state directory path."""
    from skystate.reconcile.plan import Plan

    if isinstance(source, Plan):
        return source
    if isinstance(source, str) and source.lstrip().startswith("{"):
        return Plan.from_json(source)
    return None


def progress_printer(out: Any) -> Any:
    """Executor progress as one line per action start and outcome."""
    def report(action: Any, outcome: Any) -> None:
        if outcome is None:
            out.print(f"{action.address}: {action.type.value}...")
        elif outcome.status == "succeeded":
            out.print(f"[green]{action.address}: {outcome.message}[/green] "
                      f"({outcome.seconds:.1f}s)")
        else:
            out.print(f"[red]{action.address}: {outcome.message}[/red]")
    return report


def wait_for_jobs(out: Any, actions: list[Any]) -> None:
    """Print each submitted job's own output as it runs, then its final status."""
    from skystate.reconcile.status_rows import cluster_rows

    wanted = {(a.cluster, a.name) for a in actions}
    _, rows = cluster_rows()
    for job in sorted((j for j in rows if (j["cluster"], j["name"]) in wanted
                       and j.get("job_id") is not None), key=lambda j: int(j["job_id"])):
        _print_job_output(out, job)
    while wanted:
        _, jobs = cluster_rows()
        done = {(j["cluster"], j["name"]): j for j in jobs
                if (j["cluster"], j["name"]) in wanted and j["status"] in JobStatus.__members__
                and JobStatus(j["status"]).is_terminal()}
        for key, job in done.items():
            out.print(f"Job/{key[0]}/{key[1]}: {job['status']} (log: {job['log_path']})")
        if done:
            _record_finished(done.values())
        wanted -= set(done)
        if wanted:
            time.sleep(0.2)


def _record_finished(jobs: Any) -> None:
    """The final statuses ``wait_for_jobs`` saw, into the job records (last observed)."""
    from skystate.reconcile.job_outcomes import record_job_statuses
    from skystate.reconcile.store import Store

    store = Store()
    with store.transaction():
        for job in jobs:
            if job.get("job_id") is not None:
                record_job_statuses(store, job["cluster"], {int(job["job_id"]): job["status"]})
