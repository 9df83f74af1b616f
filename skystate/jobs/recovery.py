"""The one rule that turns evidence about a job's cluster into a decision.

Inputs are recorded evidence only: what one look at the cluster saw (``Seen``), the
cluster agent's status and exit code for the job, the persisted counters, the task's
``job_recovery`` policy and ``now``. No I/O, no clock.

- Preemption is recognised only from a fresh, positive observation: the provider
  answered and the cluster is gone or stopped, or the agent answered that the job's
  processes are gone without an exit record (``FAILED_DRIVER``).
- An error or timeout (``Seen.UNKNOWN``, or an UP cluster whose agent does not answer)
  is *unknown*: the job keeps running and shows "unreachable since …". Only after
  ``unknown_window`` seconds of *continuous* unknowns is it recovered (the window
  restarts at the first good answer).
- A user-program failure restarts on a new cluster while ``restarts_on_error <
  max_restarts_on_errors``; an exit code in ``recover_on_exit_codes`` recovers without
  counting against that limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from skystate.jobs.status import ManagedJobStatus, Seen

EAGER_NEXT_REGION = "EAGER_NEXT_REGION"
FAILOVER = "FAILOVER"
STRATEGIES = (EAGER_NEXT_REGION, FAILOVER)

Kind = Literal["keep", "wait", "recover", "restart", "end"]


@dataclass(frozen=True)
class Policy:
    strategy: str = EAGER_NEXT_REGION
    max_restarts_on_errors: int = 0
    recover_on_exit_codes: tuple[int, ...] = ()


def policy_of(task: dict[str, Any]) -> Policy:
    """The task's ``resources.job_recovery``, from any candidate."""
    from skystate.spec.task import Task

    for resources in Task.from_yaml_config(task).resources:
        for candidate in resources.candidates():
            recovery = candidate.job_recovery
            if recovery is None:
                continue
            strategy = (recovery.strategy or EAGER_NEXT_REGION).upper()
            if strategy not in STRATEGIES:
                raise ValueError(f"job_recovery.strategy {recovery.strategy!r}: use one of "
                                 f"{', '.join(STRATEGIES)}")
            return Policy(strategy, recovery.max_restarts_on_errors,
                          tuple(recovery.recover_on_exit_codes or ()))
    return Policy()


@dataclass(frozen=True)
class Evidence:
    seen: Seen
    job_status: str | None = None  # the cluster agent's JobStatus value; None: not read
    exit_code: int | None = None
    detail: str = ""  # what the observation said, for people


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: str
    status: ManagedJobStatus | None = None  # the final status, for ``end``


def rule(evidence: Evidence, policy: Policy, *, restarts_on_error: int,
         unknown_since: float | None, now: float, unknown_window: float) -> Verdict:
    """Keep, wait (unknown), recover (preempted: no count), restart (counted), or end."""
    if evidence.seen is Seen.UNKNOWN or (evidence.seen is Seen.UP
                                         and evidence.job_status is None):
        since = now if unknown_since is None else unknown_since
        if now - since >= unknown_window:
            return Verdict("recover", f"unreachable for {now - since:.0f}s, past the "
                                      f"unknown window of {unknown_window:.0f}s "
                                      f"({evidence.detail or 'no answer'})")
        return Verdict("wait", f"unreachable ({evidence.detail or 'no answer'}); the job is "
                               "kept, not recovered")
    if evidence.seen is Seen.GONE:
        return Verdict("recover", f"preempted: the provider reports the cluster gone "
                                  f"({evidence.detail or 'not found'})")
    if evidence.seen is Seen.STOPPED:
        return Verdict("recover", f"preempted: the provider reports the cluster stopped "
                                  f"({evidence.detail or 'stopped'})")
    status, code = evidence.job_status, evidence.exit_code
    if status in ("INIT", "PENDING", "SETTING_UP", "RUNNING"):
        return Verdict("keep", f"the job is {status} on its cluster")
    if status == "SUCCEEDED":
        return Verdict("end", "the job succeeded", ManagedJobStatus.SUCCEEDED)
    if status == "CANCELLED":
        return Verdict("end", "the job was cancelled on its cluster", ManagedJobStatus.CANCELLED)
    if status == "FAILED_DRIVER":
        return Verdict("recover", "the agent reports the job's processes lost "
                                  "(no exit record)")
    final = ManagedJobStatus.FAILED_SETUP if status == "FAILED_SETUP" else \
        ManagedJobStatus.FAILED
    what = "setup" if status == "FAILED_SETUP" else "the program"
    if code is not None and code in policy.recover_on_exit_codes:
        return Verdict("recover", f"{what} exited {code}, which is in recover_on_exit_codes")
    if restarts_on_error < policy.max_restarts_on_errors:
        return Verdict("restart", f"{what} failed (exit code {code}); restart "
                                  f"{restarts_on_error + 1} of {policy.max_restarts_on_errors}")
    limit = (f" after {restarts_on_error} restart(s) on errors"
             if policy.max_restarts_on_errors else "")
    return Verdict("end", f"{what} failed (exit code {code}){limit}", final)
