"""Runs requests: FIFO, bounded, one at a time per key, cancellable at once.

A long request gets a warm worker process of its own; a short (read-only) one runs on
a server thread. Two requests that share a key (a cluster, a state directory) run in
arrival order, one at a time; the rest run in parallel up to ``max_workers``. A request
waiting behind another says so (its ``status_msg`` and its log name the other one).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skystate.server import procs, settings
from skystate.server.codec import decode_args, encode, encode_error
from skystate.server.names import RequestKind, function_of, kind_of
from skystate.server.pool import WarmPool, Worker
from skystate.server.records import ANONYMOUS, RequestDB, RequestStatus
from skystate.server.secret_args import SecretFiles
from skystate.server.validate import check_args, check_name

Notify = Callable[[str], None]


class InvalidRequest(ValueError):
    """A request the server will not queue: unknown name or arguments that do not fit."""

# Finished requests (rows and logs) are kept this long, then pruned (FACTS: keep hot
# tables small). Checked at start and every PRUNE_EVERY submissions.
RETENTION_SECONDS = float(os.environ.get("SKYSTATE_REQUEST_RETENTION_DAYS", "7")) * 86400
PRUNE_EVERY = 500


@dataclass
class _Running:
    request_id: str
    keys: list[str]
    worker: Worker | None = None
    cancelled: bool = False
    long: bool = False
    name: str = ""


@dataclass
class _Pending:
    request_id: str
    name: str
    args: Any
    keys: list[str]
    user_name: str
    log_path: str
    queued: float = field(default_factory=time.monotonic)
    settings: dict[str, str | None] = field(default_factory=dict)  # server.settings
    waiting_for: str | None = None  # the request it was last seen waiting behind


class Scheduler:
    def __init__(self, db: RequestDB, home: Path, *, max_workers: int = 8,
                 warm: int = 2) -> None:
        self.db = db
        self.home = home
        self.logs = home / "requests"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.secrets = SecretFiles(self.logs)  # task secrets never enter the database
        self.max_workers = max_workers
        self.pool = WarmPool(home, warm, home / "api_server.log", limit=max_workers + warm)
        self.short = ThreadPoolExecutor(max_workers=8, thread_name_prefix="short")
        self._lock = threading.Condition()
        self._pending: list[_Pending] = []
        self._running: dict[str, _Running] = {}
        self._submitted = 0
        self.notify: Notify = lambda request_id: None
        threading.Thread(target=self._loop, name="scheduler", daemon=True).start()

    # --- submission -------------------------------------------------------------

    def submit(self, name: str, args: dict[str, Any], user_name: str,
               request_settings: dict[str, Any] | None = None) -> str:
        """Record a request and queue it; its ID at once. InvalidRequest: bad name/args.

        ``request_settings`` (the client's ``server.settings``) are what the request runs
        with; they are not stored, so a request resumed after a restart runs with the
        server's own."""
        problem = check_name(name)  # before decoding anything the caller sent
        if problem:
            raise InvalidRequest(problem)
        user_name = user_name or ANONYMOUS  # never the server's own user
        try:
            decoded = decode_args(args)
        except Exception as exc:  # noqa: BLE001 - any undecodable argument is the caller's
            raise InvalidRequest(f"{name}: arguments cannot be decoded: {exc}") from None
        try:
            carried = settings.checked(request_settings)
        except ValueError as exc:
            raise InvalidRequest(f"{name}: {exc}") from None
        problem = check_args(name, decoded)
        if problem:
            raise InvalidRequest(problem)
        if name == "launch" and not decoded.get("cluster_name"):
            from skystate.reconcile.imperative import generate_cluster_name

            decoded["cluster_name"] = generate_cluster_name()
            args = {**args, "cluster_name": decoded["cluster_name"]}
        kind = kind_of(name, decoded)
        keys = kind.keys(decoded)
        request_id = str(uuid.uuid4())
        log_path = self.logs / f"{request_id}.log"
        log_path.touch()
        self.db.insert({
            "request_id": request_id, "name": name,
            "args": self.secrets.keep(request_id, args), "user_name": user_name,
            "status": RequestStatus.PENDING, "created_at": time.time(),
            "log_path": str(log_path), "cluster_name": decoded.get("cluster_name"),
            "keys": keys, "schedule_type": kind.schedule,
        })
        self._enqueue(request_id, name, args, kind, keys, user_name, str(log_path), carried)
        self._submitted += 1
        if self._submitted % PRUNE_EVERY == 0:
            threading.Thread(target=self.prune, name="prune", daemon=True).start()
        return request_id

    def prune(self) -> int:
        """Forget finished requests older than the retention time; how many."""
        paths = self.db.prune(time.time() - RETENTION_SECONDS)
        for path in paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
        return len(paths)

    def _enqueue(self, request_id: str, name: str, args: Any, kind: RequestKind,
                 keys: list[str], user_name: str, log_path: str,
                 carried: dict[str, str | None] | None = None) -> None:
        if kind.schedule == "short":
            with self._lock:
                self._running[request_id] = _Running(request_id, keys)
            self.db.update(request_id, status=RequestStatus.RUNNING, started_at=time.time())
            self.short.submit(self._run_short, request_id, name, args, user_name)
            return
        with self._lock:
            self._pending.append(_Pending(request_id, name, args, keys, user_name, log_path,
                                          settings=carried or {}))
            self._lock.notify_all()

    def requeue_unfinished(self) -> None:
        """On start: requests a dead server left RUNNING fail; PENDING ones run now."""
        self.prune()
        self.secrets.sweep(self._unfinished)
        for row in self.db.with_status([RequestStatus.RUNNING]):
            # Its worker died with the old server (PDEATHSIG), and its pid may be reused
            # by now: only the processes carrying the request's tag are killed.
            procs.kill_request_tree(row["request_id"], None)
            error = encode_error(_interrupted(row), with_traceback=False)
            self._finish(row["request_id"], RequestStatus.FAILED, error=error,
                         status_msg="the API server died while this request was running")
        for row in self.db.with_status([RequestStatus.PENDING]):
            decoded = decode_args(row["args"] or {})
            kind = kind_of(row["name"], decoded)
            args = self.secrets.restore(row["request_id"], row["args"] or {})
            self._enqueue(row["request_id"], row["name"], args, kind,
                          row.get("keys") or [], row.get("user_name") or ANONYMOUS,
                          row["log_path"])

    def _unfinished(self, request_id: str) -> bool:
        row = self.db.get(request_id)
        return row is not None and not RequestStatus(row["status"]).is_finished()

    # --- running ------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                job = self._next_runnable()
                while job is None:
                    self._lock.wait()
                    job = self._next_runnable()
                self._pending.remove(job)
                running = _Running(job.request_id, job.keys, long=True, name=job.name)
                self._running[job.request_id] = running
            self._dispatch(job, running)

    def _next_runnable(self) -> _Pending | None:
        if sum(1 for r in self._running.values() if r.long) >= self.max_workers:
            return None
        busy = {k: (r.request_id, r.name) for r in self._running.values() for k in r.keys}
        for job in self._pending:
            blocker = next(((k, busy[k]) for k in job.keys if k in busy), None)
            if blocker is None:
                return job
            self._note_waiting(job, blocker[0], *blocker[1])
            for key in job.keys:  # keep arrival order per key
                busy.setdefault(key, (job.request_id, job.name))
        return None

    def _note_waiting(self, job: _Pending, key: str, request_id: str, name: str) -> None:
        """Say (once per blocker) which request this one waits behind, and on what."""
        if job.waiting_for == request_id:
            return
        job.waiting_for = request_id
        message = f"waiting for request {request_id} ({name}) on {key}"
        self.db.update(job.request_id, status_msg=message)
        with contextlib.suppress(OSError), open(job.log_path, "a") as log:
            log.write(message + "\n")

    def _dispatch(self, job: _Pending, running: _Running) -> None:
        worker = self.pool.take()
        with self._lock:
            if running.cancelled:
                worker.discard()  # cancelled while we took a worker
                self.pool.lost()
                return
            running.worker = worker
            waited = {"status_msg": None} if job.waiting_for else {}
            self.db.update(job.request_id, status=RequestStatus.RUNNING,
                           started_at=time.time(), pid=worker.pid, **waited)
        try:
            worker.send(json.dumps({"request_id": job.request_id, "name": job.name,
                                    "args": job.args, "user_name": job.user_name,
                                    "log_path": job.log_path, "settings": job.settings}))
        except (BrokenPipeError, OSError):
            pass  # it died; the reply thread reports it
        threading.Thread(target=self._await_reply, args=(job.request_id, worker),
                         name=f"reply-{job.request_id[:8]}", daemon=True).start()

    def _await_reply(self, request_id: str, worker: Worker) -> None:
        line = worker.reply()
        with self._lock:
            cancelled = self._running.get(request_id, _Running(request_id, [])).cancelled
        if line and not cancelled:
            self.pool.give_back(worker)  # it takes the next request
            reply = json.loads(line)
            if reply["ok"]:
                self._finish(request_id, RequestStatus.SUCCEEDED, value=reply["value"])
            else:
                self._finish(request_id, RequestStatus.FAILED, error=reply["error"])
        else:
            if line:  # a cancel raced the reply: the worker may still be alive
                worker.proc.kill()
            code = worker.proc.wait()
            worker.discard()
            self.pool.lost()
            if not cancelled:  # (a cancelled request is recorded by cancel())
                message = f"the request's worker died (exit code {code})"
                self._finish(request_id, RequestStatus.FAILED, error={
                    "type": "skystate.exceptions:RequestInterruptedError",
                    "args": [message], "attrs": {}, "message": message})
        procs.kill_request_tree(request_id, None)  # nothing it started outlives it

    def _run_short(self, request_id: str, name: str, args: Any, user_name: str) -> None:
        from skystate.reconcile.imperative import REQUEST_USER

        token = REQUEST_USER.set(user_name or None)
        try:
            value = function_of(name)(**decode_args(args))
            self._finish(request_id, RequestStatus.SUCCEEDED, value=encode(value))
        except BaseException as exc:  # noqa: BLE001 - every failure is the request's result
            self._finish(request_id, RequestStatus.FAILED, error=encode_error(exc))
        finally:
            REQUEST_USER.reset(token)

    def _finish(self, request_id: str, status: RequestStatus, *, value: Any = None,
                error: Any = None, status_msg: str | None = None) -> bool:
        """Record the final status once (a cancel and a late reply race for it)."""
        with self._lock:  # the row itself says whether it finished (no second record)
            row = self.db.get(request_id)
            if row is None or RequestStatus(row["status"]).is_finished():
                return False
            self._running.pop(request_id, None)
            value, error = self.secrets.scrub(request_id, (value, error))
            self.db.update(request_id, status=status, finished_at=time.time(),
                           return_value=value, error=error, status_msg=status_msg)
            self.secrets.drop(request_id)
            self._lock.notify_all()
        self.notify(request_id)
        return True

    # --- cancel -------------------------------------------------------------------

    def cancel(self, request_ids: list[str]) -> list[str]:
        """Cancel now: never queued behind other work, works if the worker is gone.

        Every named request is taken off the queue (or marked) first, under one lock, so
        cancelling a running request never lets one queued behind it start meanwhile.
        """
        targets: list[tuple[str, int | None]] = []
        with self._lock:
            for request_id in dict.fromkeys(request_ids):
                pending = next((p for p in self._pending if p.request_id == request_id), None)
                if pending is not None:
                    self._pending.remove(pending)
                running = self._running.get(request_id)
                if running is not None:
                    running.cancelled = True
                worker = running.worker if running else None
                targets.append((request_id, worker.pid if worker else None))
        cancelled = []
        for request_id, pid in targets:
            row = self.db.get(request_id)
            if row is None or RequestStatus(row["status"]).is_finished():
                continue
            procs.kill_request_tree(request_id, pid or row.get("pid"))
            if self._finish(request_id, RequestStatus.CANCELLED):
                cancelled.append(request_id)
        return cancelled

    def record_done(self, name: str, args: dict[str, Any], user_name: str,
                    value: Any) -> str:
        """Record a request the server answered at once (``api_cancel``): SUCCEEDED."""
        request_id = str(uuid.uuid4())
        log_path = self.logs / f"{request_id}.log"
        log_path.touch()
        now = time.time()
        self.db.insert({"request_id": request_id, "name": name, "args": args,
                        "user_name": user_name, "status": RequestStatus.SUCCEEDED,
                        "created_at": now, "started_at": now, "finished_at": now,
                        "log_path": str(log_path), "keys": [], "schedule_type": "short",
                        "return_value": encode(value)})
        return request_id

    def close(self) -> None:
        self.pool.close()
        self.short.shutdown(wait=False, cancel_futures=True)


def _interrupted(row: dict[str, Any]) -> Exception:
    from skystate.exceptions import RequestInterruptedError

    return RequestInterruptedError(
        f"request {row['request_id']} ({row['name']}) was running when the API server "
        f"(worker pid {row.get('pid')}) died; it did not finish. Check `skystate status` "
        f"and run it again if needed.")

