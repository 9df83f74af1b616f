"""Warm worker processes: started ahead so a request never waits for Python to start."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO


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
        stdin.close()

    def discard(self) -> None:
        """Kill an unused worker and release its pipes."""
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    def reply(self) -> str:
        stdout: IO[str] = self.proc.stdout  # type: ignore[assignment]
        line = stdout.readline()
        stdout.close()
        return line


class WarmPool:
    """Keeps ``size`` idle workers ready; ``take()`` returns one (or starts one)."""

    def __init__(self, home: Path, size: int, log: Path) -> None:
        self.home = home
        self.size = size
        self.log = log
        self._ready: queue.Queue[Worker] = queue.Queue()
        self._wanted = threading.Semaphore(0)
        self._closed = False
        for _ in range(size):
            self._wanted.release()
        # pdeathsig is tied to the thread that forked the worker: these live as long as
        # the server does. Two of them start workers in parallel after a burst.
        for n in range(2):
            threading.Thread(target=self._refill, name=f"warm-pool-{n}", daemon=True).start()

    def take(self) -> Worker:
        try:
            worker = self._ready.get_nowait()
        except queue.Empty:
            worker = self._ready.get()  # the refill thread is starting one now
        self._wanted.release()
        return worker

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
            else:
                self._wanted.release()

    def _spawn(self) -> Worker | None:
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "skystate.server.worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                cwd=self.home, start_new_session=True,
                env={**os.environ, "SKYSTATE_HOME": str(self.home)},
            )
        stdout: IO[str] = proc.stdout  # type: ignore[assignment]
        if stdout.readline().strip() != "ready" or self._closed:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
            return None
        return Worker(proc)
