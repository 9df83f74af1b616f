"""Managed jobs (``sky.jobs``): a job that gets its own cluster, survives preemptions and
failures by the rules its task chose (``resources.job_recovery``), and tears its cluster
down when it ends. This package owns the job records in the state database
(``records``), the pure decision (``decide``) and recovery rule (``recovery``), the
observation that maps every answer to UP/STOPPED/GONE/UNKNOWN (``observe``), the actions
that launch, watch and tear down each attempt's cluster through reconcile (``handlers``),
the controller loop embedded in the API server (``loop``), the requests it serves
(``operations``), and these SDK functions, each a request with an ID like every call.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from skystate.jobs.status import ControllerHandle, ManagedJobStatus

__all__ = ["ControllerHandle", "ManagedJobStatus", "cancel", "launch", "queue", "tail_logs"]

RequestId = str


def _submit(request: str, **args: Any) -> RequestId:
    from skystate.server.client import client

    return client().submit(request, args)  # type: ignore[no-any-return]


def launch(task: Any, name: str | None = None, _need_confirmation: bool = False) -> RequestId:
    """Launch a managed job; the request returns ``(job_id, controller_handle)``.

    ``task``: a ``sky.Task``, a task YAML path, or a ``sky.Dag`` that is a chain (a
    pipeline: its tasks run one after another, each on its own cluster, as one job)."""
    from skystate.sdk import _task_config
    from skystate.spec.dag import Dag

    if isinstance(task, (str, Path)):
        task = Dag.from_yaml(task)
    if isinstance(task, Dag):
        chain = task.chain()
        if not chain:
            raise ValueError("the Dag has no tasks")
        if len(chain) > 1:
            return _submit("jobs.launch", task=[_task_config(t) for t in chain],
                           name=name or task.name)
        task = chain[0]
    return _submit("jobs.launch", task=_task_config(task), name=name)


def queue(refresh: bool, skip_finished: bool = False, all_users: bool = False) -> RequestId:
    """The request returns the job records (the seed's keys, and more), newest first."""
    return _submit("jobs.queue", refresh=refresh, skip_finished=skip_finished,
                   all_users=all_users)


def cancel(name: str | None = None, job_ids: Sequence[int] | None = None,
           all: bool = False, all_users: bool = False) -> RequestId:  # noqa: A002
    """Cancel managed jobs (their clusters are torn down); returns the IDs asked."""
    return _submit("jobs.cancel", name=name,
                   job_ids=[int(i) for i in job_ids] if job_ids else None, all=all,
                   all_users=all_users)


def tail_logs(name: str | None = None, job_id: int | None = None, follow: bool = True,
              controller: bool = False, refresh: bool = False,
              output_stream: TextIO | None = None, attempt: int | None = None) -> int:
    """Print the job's logs (every attempt's, or ``attempt``'s; ``controller``: the
    controller's decisions), following until it ends; the ``JobExitCode``."""
    from skystate.sdk import stream_and_get

    request_id = _submit("jobs.tail_logs", name=name, job_id=job_id, follow=follow,
                         controller=controller, refresh=refresh, attempt=attempt)
    return int(stream_and_get(request_id, output_stream=output_stream or sys.stdout))
