"""Warm worker processes: started ahead so a request never waits for Python to start."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from skystate.server.procs import server_child_env


class Worker:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, line: str) -> None:
        stdin: IO[str] = self.proc.stdin  # type: ignore[assignment]
        stdin.write(line + "\n")
        stdin.flush()

    def discard(self) -> None:
        """Kill an unused worker and release its pipes."""
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    def reply(self) -> str:
        """The request's reply line; empty if the worker died (or was killed)."""
        stdout: IO[str] = self.proc.stdout  # type: ignore[assignment]
        return stdout.readline()


class WarmPool:
    """Idle workers, ``size`` of them started ahead; up to ``limit`` alive at once.

    A worker that finished a request comes back (``give_back``); one that died or was
    killed by a cancel is replaced (``lost``), so ``size`` stay warm.
    """

    def __init__(self, home: Path, size: int, log: Path, limit: int = 64) -> None:
        self.home = home
        self.size = size
        self.limit = max(limit, size)
        self.log = log
        self._ready: queue.Queue[Worker] = queue.Queue()
        self._wanted = threading.Semaphore(0)
        self._count_lock = threading.Lock()
        self._alive = 0  # idle + busy + being started
        self._closed = False
        for _ in range(size):
            self._start_one()
        # pdeathsig is tied to the thread that forked the worker: these live as long as
        # the server does. Two of them start workers in parallel after a burst.
        for n in range(2):
            threading.Thread(target=self._refill, name=f"warm-pool-{n}", daemon=True).start()

    def take(self) -> Worker:
        try:
            return self._ready.get_nowait()
        except queue.Empty:
            pass
        with self._count_lock:
            if self._alive < self.limit:
                self._start_one_locked()
        return self._ready.get()

    def give_back(self, worker: Worker) -> None:
        if self._closed:
            worker.discard()
        else:
            self._ready.put(worker)

    def lost(self) -> None:
        """A worker died or was killed: keep ``size`` of them around."""
        with self._count_lock:
            self._alive -= 1
            if self._alive < self.size and not self._closed:
                self._start_one_locked()

    def _start_one(self) -> None:
        with self._count_lock:
            self._start_one_locked()

    def _start_one_locked(self) -> None:
        self._alive += 1
        self._wanted.release()

    def close(self) -> None:
        self._closed = True
        self._wanted.release()
        self._wanted.release()
        while True:
            try:
                worker = self._ready.get_nowait()
            except queue.Empty:
                return
            worker.discard()

    def _refill(self) -> None:
        while True:
            self._wanted.acquire()
            if self._closed:
                return
            worker = self._spawn()
            if worker is not None:
                self._ready.put(worker)
            elif not self._closed:
                self._wanted.release()  # try again

    def _spawn(self) -> Worker | None:
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "skystate.server.worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                cwd=self.home, start_new_session=True,
                env={**server_child_env(), "SKYSTATE_HOME": str(self.home)},
            )
        stdout: IO[str] = proc.stdout  # type: ignore[assignment]
        worker = Worker(proc)
        if stdout.readline().strip() != "ready" or self._closed:
            worker.discard()
            return None
        return worker
