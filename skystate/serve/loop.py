"""The services controller: a loop on threads of the API server, one step per service at
a time (the one writer of the controller's fields).

A restart is just the first tick: every recorded service is due at once and each step
reads its record, probes its replicas and reads its load balancer's stats fresh, so
there is no resume path (a replica recorded PROVISIONING with no launch running is
launched again: clusters are found by name, programs by their submission id). The loop
waits only on an Event; a step returns how long to wait. A service is also due at once
when its record changes (a request: update, down, terminate) or when its load balancer
records a failed connection to a replica (``lb_stats.json``), so that replica is probed
again at once. Launches and teardowns run on a pool of their own, so probing goes on
while a replica's cluster is being made.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from typing import Any

import httpx

from skystate.providers.registry import Providers
from skystate.reconcile.due_queue import DueQueue
from skystate.reconcile.store import Store
from skystate.serve import records as rec
from skystate.serve.decide import Act, Evidence, ServeAction, View, decide
from skystate.serve.handlers import ServeContext, run
from skystate.serve.policy import Policy, policy_of
from skystate.serve.probe import look
from skystate.serve.status import ReplicaStatus as R

SCAN_SECONDS = 0.2
ERROR_BACKOFF_CAP = 30.0
_ASYNC = (Act.LAUNCH, Act.TEARDOWN)
_PROBED = (R.STARTING.value, R.READY.value, R.NOT_READY.value, R.UNKNOWN.value)


@dataclass(frozen=True)
class Settings:
    backoff_base: float = 30.0  # replacement backoff (scaled)
    observe_timeout: float = 30.0  # real seconds: one replica's look, bounded
    stats_fresh: float = 5.0  # real seconds: older load-balancer stats are not used
    unknown_window: float = 600.0  # scaled: how long an UNKNOWN replica is only waited for

    @classmethod
    def from_env(cls) -> Settings:
        from skystate.runtime.layout import env_seconds, time_scale

        return cls(backoff_base=float(os.environ.get("SKYSTATE_SERVE_BACKOFF_SECONDS", "")
                                      or 30.0) / time_scale(),
                   unknown_window=env_seconds("SKYSTATE_SERVE_UNKNOWN_SECONDS", 600.0)
                   / time_scale())


class Controller:
    def __init__(self, *, providers: Providers | None = None, workers: int = 8) -> None:
        from skystate.spec.home_config import home_providers_config

        self.settings = Settings.from_env()
        self.providers = providers or Providers(home_providers_config())
        self._store = Store()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._queue: DueQueue[str] = DueQueue()
        self._in_flight: dict[str, set[int]] = {}
        self._seen: dict[str, Any] = {}  # name -> the request-owned fields last seen
        self._lb_failures: dict[str, float] = {}
        self._errors: dict[str, int] = {}
        self._version = -1
        self._stop = threading.Event()
        self._steps = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="serve")
        self._acts = ThreadPoolExecutor(max_workers=workers * 2,
                                        thread_name_prefix="serve-act")
        self._looks = ThreadPoolExecutor(max_workers=workers * 2,
                                         thread_name_prefix="serve-probe")
        self._client = httpx.Client(trust_env=False, verify=False)
        self._thread = threading.Thread(target=self._run, name="serve-controller",
                                        daemon=True)

    def start(self) -> Controller:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._queue.wake()
        self._thread.join(timeout)
        for pool in (self._steps, self._acts, self._looks):
            pool.shutdown(wait=False, cancel_futures=True)

    # --- the loop -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._scan()
            except Exception:  # noqa: BLE001, S110 - a torn read is retried next tick
                pass
            for name in self._queue.take_ready():
                self._steps.submit(self._step_safely, name)
            self._queue.wait(SCAN_SECONDS)

    def _due_now(self, name: str) -> None:
        self._queue.due_now(name)

    def _scan(self) -> None:
        version = self._store.version
        if version != self._version:
            self._version = version
            for service in self._store.services():
                asked = (service.get("version"), service.get("update_mode"),
                         service.get("down_requested_at"),
                         tuple(service.get("terminate_requested") or []))
                if self._seen.get(service["name"]) != asked:
                    self._seen[service["name"]] = asked
                    self._due_now(service["name"])
        for name in list(self._seen):
            self._check_lb_failures(name)

    def _check_lb_failures(self, name: str) -> None:
        """A failed connection the load balancer saw makes the service due at once."""
        from skystate.serve.lb_process import read_stats

        path = rec.serve_root() / name / "lb_stats.json"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return
        if mtime <= self._lb_failures.get(name, 0.0):
            return
        stats = read_stats(path.parent)
        last = max((f.at for f in stats.failed), default=0.0) if stats else 0.0
        if last > self._lb_failures.get(f"{name}/at", 0.0):
            self._lb_failures[f"{name}/at"] = last
            self._due_now(name)
        self._lb_failures[name] = mtime

    def _step_safely(self, name: str) -> None:
        requeue: float | None
        try:
            requeue = self.step(name)
            if self._errors.pop(name, None):
                rec.update(self._thread_store(), name, controller_error=None)
        except Exception as exc:  # noqa: BLE001 - the loop outlives any one step
            failures = self._errors.get(name, 0) + 1
            self._errors[name] = failures
            requeue = min(ERROR_BACKOFF_CAP, 0.5 * 2 ** failures)
            message = (f"step failed {failures} time(s) ({type(exc).__name__}: {exc}); "
                       f"retrying in {requeue:.1f}s")
            try:
                rec.note(name, message)
                rec.update(self._thread_store(), name, controller_error=message)
            except Exception:  # noqa: BLE001, S110 - the service may be gone
                pass
        if requeue is None:
            with self._lock:
                self._seen.pop(name, None)
        self._queue.done(name, requeue)

    def _thread_store(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store()
        return store  # type: ignore[no-any-return]

    # --- one step ---------------------------------------------------------------------

    def step(self, name: str) -> float | None:
        """Read the service fresh, look, decide, act; how long until it is looked at
        again (None: it is gone)."""
        from skystate.reconcile.imperative import REQUEST_USER

        store = self._thread_store()
        service = store.service(name)
        if service is None:
            return None
        token = REQUEST_USER.set(service.get("user_name") or None)
        try:
            return self._step(store, service)
        finally:
            REQUEST_USER.reset(token)

    def _step(self, store: Store, service: dict[str, Any]) -> float | None:
        from skystate.serve.lb_process import load_balancer_running, read_stats

        name = service["name"]
        policies = _policies(service)
        if not policies:
            rec.update(store, name, status="CONTROLLER_FAILED",
                       reason="no version of the service has a valid service section")
            return None
        directory = rec.serve_root() / name
        running = load_balancer_running(directory) is not None if directory.is_dir() else False
        stats = read_stats(directory) if running else None
        recent = ([tuple(x) for x in stats.recent] if stats is not None
                  and time.time() - stats.updated_at < self.settings.stats_fresh else None)
        in_flight = frozenset(self._in_flight.get(name, set()))
        view = View(service, policies, self._look(store, service, policies, in_flight),
                    running, recent, in_flight, self.settings.backoff_base,
                    self.settings.unknown_window)
        step = decide(view, time.time())
        ctx = ServeContext(store, self.providers)
        for action in step.actions:
            if action.type in _ASYNC:
                self._submit(name, action)
                continue
            outcome = run(ctx, name, action)
            if action.type is Act.REMOVE:
                return None
            if action.reason:
                rec.note(name, f"{action.type.value}: {action.reason} -> {outcome}")
        return step.requeue_after

    def _look(self, store: Store, service: dict[str, Any], policies: dict[int, Policy],
              in_flight: frozenset[int]) -> dict[int, Evidence]:
        """Every running replica's evidence, in parallel, each bounded."""
        futures = {}
        for replica in service.get("replicas") or []:
            rid = replica["replica_id"]
            if replica["status"] not in _PROBED or rid in in_flight:
                continue
            policy = policies.get(int(replica["version"]))
            if policy is None:
                continue
            cluster = store.cluster(replica["cluster"]) if replica.get("cluster") else None
            futures[rid] = self._looks.submit(look, replica, cluster, policy.probe,
                                              self.providers, self._client)
        evidence = {}
        for rid, future in futures.items():
            try:
                evidence[rid] = future.result(timeout=self.settings.observe_timeout)
            except FuturesTimeout:
                evidence[rid] = Evidence(False, unknown=True,
                                         detail="the look did not answer within "
                                                       f"{self.settings.observe_timeout:g}s")
        return evidence

    def _submit(self, name: str, action: ServeAction) -> None:
        rid = int(action.fields["replica_id"])
        with self._lock:
            flying = self._in_flight.setdefault(name, set())
            if rid in flying:
                return
            flying.add(rid)
        self._acts.submit(self._act, name, rid, action)

    def _act(self, name: str, rid: int, action: ServeAction) -> None:
        from skystate.reconcile.imperative import REQUEST_USER

        store = self._thread_store()
        service = store.service(name)
        token = REQUEST_USER.set((service or {}).get("user_name") or None)
        try:
            outcome = run(ServeContext(store, self.providers), name, action)
        except Exception as exc:  # noqa: BLE001 - recorded; the next step decides again
            outcome = f"failed: {type(exc).__name__}: {exc}"
        finally:
            REQUEST_USER.reset(token)
        try:
            rec.note(name, f"{action.type.value}: {action.reason or '-'} -> {outcome}")
        except OSError:
            pass
        with self._lock:
            self._in_flight.get(name, set()).discard(rid)
        self._due_now(name)


def _policies(service: dict[str, Any]) -> dict[int, Policy]:
    policies = {}
    for version, task in (service.get("tasks") or {}).items():
        try:
            policies[int(version)] = policy_of(task)
        except (ValueError, TypeError, KeyError):
            continue
    return policies


def start_controller() -> Controller:
    """The services controller of this home, started (the API server calls this once)."""
    return Controller().start()
