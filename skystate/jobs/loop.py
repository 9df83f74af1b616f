"""The jobs controller: a loop on threads of the API server, one step per job at a time.

A restart is just the first tick: every unfinished record is due at once, and each
step reads the record and (while it runs) one observation fresh, so there is no resume
path. The loop only waits on an Event (woken by ``wake``/``stop``); a step returns how
long to wait before that job is looked at again. New jobs and cancels are noticed from
the state database (a record this loop has not seen, or a changed
``cancel_requested_at``). A failing step is logged in the job's controller log and
retried with backoff; it never ends the loop.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from pathlib import Path
from typing import Any

from skystate.jobs import records as rec
from skystate.jobs.decide import Act, Settings, View, decide
from skystate.jobs.handlers import JobContext, rerecord, run
from skystate.jobs.observe import observe
from skystate.jobs.pipeline import finish_task
from skystate.jobs.recovery import Evidence, Policy, policy_of
from skystate.jobs.status import ManagedJobStatus, Seen
from skystate.providers.registry import Providers
from skystate.reconcile.due_queue import DueQueue
from skystate.reconcile.store import Store

SCAN_SECONDS = 0.2  # how often the database is checked for new jobs and cancels
ERROR_BACKOFF_CAP = 60.0
HEARTBEAT_SECONDS = 5.0  # how often the controller touches its heartbeat file


def heartbeat_path() -> Path:
    from skystate.home import home

    return home() / "managed_jobs" / "controller.heartbeat"


def safety_autodown_seconds() -> float:
    from skystate.jobs.handlers import safety_autodown
    from skystate.runtime.layout import time_scale

    return float(safety_autodown()["idle_minutes"]) * 60 / time_scale()


class Controller:
    def __init__(self, *, settings: Settings | None = None, workers: int = 8,
                 providers: Providers | None = None) -> None:
        from skystate.spec.home_config import home_providers_config

        self.settings = settings or Settings.from_env()
        self.providers = providers or Providers(home_providers_config())
        self._store = Store()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._queue: DueQueue[int] = DueQueue()  # job_id -> when it is looked at
        self._cancels: dict[int, Any] = {}  # job_id -> cancel_requested_at last seen
        self._errors: dict[int, int] = {}
        self._version = -1
        self._last_beat = -HEARTBEAT_SECONDS
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="jobs")
        self._observers = ThreadPoolExecutor(max_workers=workers * 2,
                                             thread_name_prefix="jobs-observe")
        self._thread = threading.Thread(target=self._run, name="jobs-controller", daemon=True)

    def start(self) -> Controller:
        try:
            self.restart_unknown_windows()
            self.note_downtime()
        except Exception:  # noqa: BLE001, S110 - a job keeps its window; it is only later
            pass
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._queue.wake()
        self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._observers.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        self._queue.wake()

    # --- the loop -----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._beat()
                self._scan()
            except Exception:  # noqa: BLE001, S110 - a torn read is retried next tick
                pass
            for job_id in self._queue.take_ready():
                self._pool.submit(self._step_safely, job_id)
            self._queue.wait(SCAN_SECONDS)

    def _scan(self) -> None:
        version = self._store.version
        if version == self._version:
            return
        self._version = version
        with self._lock:
            for job in self._store.managed_jobs():
                job_id = job["job_id"]
                if job["phase"] == rec.PHASE_DONE:
                    self._queue.forget(job_id)
                    continue
                cancel = job.get("cancel_requested_at")
                if job_id not in self._cancels or self._cancels[job_id] != cancel:
                    self._cancels[job_id] = cancel
                    self._queue.due_now(job_id, wake=False)  # new/resumed job, or a cancel

    def _step_safely(self, job_id: int) -> None:
        requeue: float | None
        try:
            requeue = self.step(job_id)
            if self._errors.pop(job_id, None):
                self._record_error(job_id, None)
        except Exception as exc:  # noqa: BLE001 - the loop outlives any one step
            failures = self._errors.get(job_id, 0) + 1
            self._errors[job_id] = failures
            requeue = min(ERROR_BACKOFF_CAP, self.settings.check_interval * 2 ** failures)
            message = (f"step failed {failures} time(s) ({type(exc).__name__}: {exc}); "
                       f"retrying in {requeue:.1f}s")
            rec.note(job_id, message)
            self._record_error(job_id, message)
            if failures >= max_step_errors():
                self._errors.pop(job_id, None)
                requeue = self._fail_controller(job_id, exc)
        self._queue.done(job_id, requeue)  # a cancel noticed meanwhile keeps its time

    def _fail_controller(self, job_id: int, exc: Exception) -> float:
        """Steps that keep raising end the job in FAILED_CONTROLLER, saying why: first
        its cluster is torn down (a retire step); if that too keeps raising, the job ends
        and the cluster is left to its safety autodown (and to leak detection)."""
        where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        at = f" at {Path(where[0].filename).name}:{where[0].lineno}" if where else ""
        why = f"controller error: {type(exc).__name__}: {exc}{at}"
        store = self._thread_store()
        try:
            job = store.managed_job(job_id)
            if job is None:
                return 0.0
            if job["phase"] == rec.PHASE_RETIRE and job.get("end_status") == \
                    ManagedJobStatus.FAILED_CONTROLLER.value:
                cluster = job.get("cluster")
                fields = finish_task(job, ManagedJobStatus.FAILED_CONTROLLER.value,
                                     time.time())
                reason = (f"{job.get('failure_reason')}; then tearing down {cluster} failed "
                          f"({type(exc).__name__}: {exc}): left to its safety autodown")
                rec.update(store, job_id, **fields, failure_reason=reason,
                           controller_error=None)
                rec.note(job_id, f"finished: FAILED_CONTROLLER ({reason})")
                return 0.0
            rec.update(store, job_id, phase=rec.PHASE_RETIRE, then="end",
                       end_status=ManagedJobStatus.FAILED_CONTROLLER.value,
                       failure_reason=why, controller_error=None)
            rec.note(job_id, f"giving up after {max_step_errors()} failed steps: {why}")
        except Exception:  # noqa: BLE001, S110 - retried like any failed step
            pass
        return 0.0

    def _record_error(self, job_id: int, message: str | None) -> None:
        """Shown by ``jobs queue`` (never an opaque failure); cleared by the next success."""
        try:
            rec.update(self._thread_store(), job_id, controller_error=message)
        except Exception:  # noqa: BLE001, S110 - the controller log has it anyway
            pass

    def _thread_store(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store()
        return store  # type: ignore[no-any-return]

    # --- one step -------------------------------------------------------------------

    def step(self, job_id: int) -> float | None:
        """Read the job fresh, decide, act; how long until it is looked at again."""
        from skystate.reconcile.imperative import REQUEST_USER

        store = self._thread_store()
        job = store.managed_job(job_id)
        if job is None or job["phase"] == rec.PHASE_DONE:
            return None
        token = REQUEST_USER.set(job.get("user_name") or None)
        try:
            return self._step(store, job)
        finally:
            REQUEST_USER.reset(token)

    def _step(self, store: Store, job: dict[str, Any]) -> float | None:
        try:
            policy = policy_of(job["task"])
        except Exception:  # noqa: BLE001 - the launch records it as FAILED_PRECHECKS
            policy = Policy()
        evidence = None
        if job["phase"] == rec.PHASE_WATCH and not job.get("cancel_requested_at"):
            evidence = self._observe(store, job)
        step = decide(View(job, policy, evidence), self.settings, time.time())
        ctx = JobContext(store, self.providers, self.settings)
        for action in step.actions:
            outcome = run(ctx, job["job_id"], action)
            if action.type is not Act.SYNC_LOG:
                rec.note(job["job_id"], f"{action.type.value}: {action.reason or '-'} "
                                        f"-> {outcome}")
        return step.requeue_after


    def _observe(self, store: Store, job: dict[str, Any]) -> Evidence:
        """One observation, bounded: a provider call that hangs is UNKNOWN (its thread is
        left to finish on its own; the job's next step looks again)."""
        future = self._observers.submit(self._look, job)
        try:
            return future.result(timeout=self.settings.observe_timeout)
        except FuturesTimeout:
            return Evidence(Seen.UNKNOWN, detail=f"observing {job['cluster']} did not "
                                                 f"answer within "
                                                 f"{self.settings.observe_timeout:.0f}s")


    def _look(self, job: dict[str, Any]) -> Evidence:
        store = self._thread_store()
        record = store.cluster(job["cluster"])
        if record is None:  # never "gone" before its provider is asked
            try:
                record = rerecord(store, self.providers, job)
            except Exception as exc:  # noqa: BLE001 - no answer: unknown, not gone
                return Evidence(Seen.UNKNOWN, detail=f"{job['cluster']} is not recorded and "
                                                     f"its provider did not answer "
                                                     f"({type(exc).__name__}: {exc})")
            if record is not None:
                rec.note(job["job_id"], f"{job['cluster']} was no longer recorded but its "
                                        "provider still runs it: re-recorded, watched, not "
                                        "relaunched")
        return observe(record, self.providers, job)

    def note_downtime(self) -> None:
        """A controller down longer than the clusters' safety autodown may find a job's
        cluster gone because the job *finished* and the cluster downed itself: such a job
        is marked so that a gone cluster ends it (FAILED_CONTROLLER, saying so) instead of
        relaunching a program that may have run to its end."""
        beat = heartbeat_path()
        if not beat.exists():
            return
        down = time.time() - beat.stat().st_mtime
        if down < safety_autodown_seconds():
            return
        store = self._thread_store()
        for job in store.managed_jobs():
            if job["phase"] == rec.PHASE_WATCH:
                rec.update(store, job["job_id"], resumed_after_downtime=round(down))
                rec.note(job["job_id"], f"controller was down {down:.0f}s, longer than the "
                                        "safety autodown: a gone cluster ends the job")

    def _beat(self) -> None:
        now = time.monotonic()
        if now - self._last_beat >= HEARTBEAT_SECONDS:
            self._last_beat = now
            path = heartbeat_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()

    def restart_unknown_windows(self) -> None:
        """After a controller (re)start the unknown window starts again: the time it was
        down holds no observation, so it cannot count as continuous unknowns."""
        store = self._thread_store()
        for job in store.managed_jobs():
            if job["phase"] != rec.PHASE_DONE and job.get("unknown_since") is not None:
                rec.update(store, job["job_id"], unknown_since=None)
                rec.note(job["job_id"], "controller started: the unknown window restarts")


def max_step_errors() -> int:
    """``SKYSTATE_JOBS_MAX_STEP_ERRORS`` (5): consecutive failed steps of one job that
    end it in FAILED_CONTROLLER."""
    try:
        return max(1, int(os.environ.get("SKYSTATE_JOBS_MAX_STEP_ERRORS", "") or 5))
    except ValueError:
        return 5


def start_controller() -> Controller:
    """The controller of this home, started (the API server calls this once)."""
    return Controller().start()


def unfinished(store: Store) -> list[dict[str, Any]]:
    return [j for j in store.managed_jobs()
            if not ManagedJobStatus(j["status"]).is_terminal()]
