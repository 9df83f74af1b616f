"""What ``stream_and_get`` shows around a request's log (client side, rendering only).

- While the request waits its turn (another request holds its cluster, or no worker is
  free), one line says so, naming what it waits for: the server's ``status_msg`` if it
  gave one, else the running request on the same cluster.
- On a terminal, a spinner under the log names the phase in progress (the last log line
  ending in ``...``) and the seconds it has taken; piped, the log is copied unchanged.
- The Ctrl-C hint names what really stops the work: ``skystate cancel CLUSTER JOB`` for a
  job (its log is only being followed), ``skystate api cancel ID`` for the request, and
  the jobs the request submitted (``submitted as job N on CLUSTER`` lines of its log).
"""

from __future__ import annotations

import re
import time
from typing import Any, TextIO

__all__ = ["LogWriter", "interrupt_hint", "wait_while_pending"]

JOB_SUBMITTED = re.compile(r"submitted as job (\d+) on ([a-z][a-z0-9-]*)")
PENDING = "PENDING"
QUIET_WAIT = 1.0  # seconds a request may stay pending before the wait is shown


def _waiting_for(client: Any, row: dict[str, Any]) -> str:
    if row.get("status_msg"):
        return str(row["status_msg"])
    cluster = row.get("cluster_name")
    running = [r for r in client.listing() if r["status"] == "RUNNING"
               and r["request_id"] != row["request_id"]]
    same = [r for r in running if cluster and r.get("cluster_name") == cluster]
    if same:
        return (f"waiting for request {same[0]['request_id'][:8]} ({same[0]['name']}) "
                f"on cluster {cluster}")
    applies = [r for r in running if r["name"] == "apply"]  # an apply holds its clusters
    if cluster and applies:
        return (f"waiting for request {applies[0]['request_id'][:8]} (apply), which holds "
                f"the clusters of its directory")
    return "waiting for a free worker"


def wait_while_pending(client: Any, request_id: str, out: TextIO) -> None:
    """Return once the request is no longer PENDING; say what it waits for (each change
    once) if it stays pending longer than ``QUIET_WAIT``."""
    began = time.monotonic()
    said = None
    status = None
    try:
        while True:
            row = client.request(request_id)
            if row["status"] != PENDING:
                break
            if time.monotonic() - began >= QUIET_WAIT:
                reason = _waiting_for(client, row)
                if reason != said:
                    text = f"Request {request_id[:8]} ({row['name']}) is queued: {reason}"
                    if status is not None:
                        status.update(text)
                    elif out.isatty():
                        status = _spinner(out, text)
                    else:
                        out.write(f"{text}.\n")
                        out.flush()
                    said = reason
            time.sleep(0.02 if time.monotonic() - began < QUIET_WAIT else 0.5)
    finally:
        if status is not None:
            status.stop()
    if status is not None:
        out.write(f"Request {request_id[:8]} started after waiting "
                  f"{time.monotonic() - began:.0f}s ({said}).\n")


def _spinner(out: TextIO, text: str) -> Any:
    from rich.console import Console

    status = Console(file=out, highlight=False).status(text)
    status.start()
    return status


class _Elapsed:
    """The spinner's text: the phase in progress and its seconds so far."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.since = time.monotonic()

    def set(self, label: str) -> None:
        self.label = label
        self.since = time.monotonic()

    def __rich__(self) -> Any:
        from rich.text import Text

        return Text(f"{self.label} ({time.monotonic() - self.since:.0f}s)")


class LogWriter:
    """A file-like target for the streamed log: remembers the jobs the request submitted;
    on a terminal prints whole lines above a spinner naming the phase in progress."""

    def __init__(self, out: TextIO, name: str, *, spinner: bool) -> None:
        self.out = out
        self.jobs: list[tuple[str, int]] = []
        self._partial = ""
        self._status: Any = None
        self._console: Any = None
        if spinner and out.isatty():
            from rich.console import Console

            self._running = f"{name}: running"
            self._elapsed = _Elapsed(self._running)
            self._console = Console(file=out, highlight=False, soft_wrap=True)
            self._status = self._console.status(self._elapsed)
            self._status.start()

    def write(self, text: str) -> int:
        for match in JOB_SUBMITTED.finditer(self._partial + text):
            job = (match.group(2), int(match.group(1)))
            if job not in self.jobs:
                self.jobs.append(job)
        if self._console is None:
            self.out.write(text)
            self._partial = (self._partial + text).rsplit("\n", 1)[-1]
            return len(text)
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._console.print(line, markup=False, highlight=False)
            if line.rstrip().endswith("..."):  # a phase starts
                self._elapsed.set(line.rstrip().rstrip("."))
            elif line.strip() and self._elapsed.label != self._running:  # it ended
                self._elapsed.set(self._running)
        return len(text)

    def flush(self) -> None:
        if self._console is None:
            self.out.flush()

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
            if self._partial:
                self.out.write(self._partial)
                self.out.flush()
            self._console = None


def interrupt_hint(row: dict[str, Any], jobs: list[tuple[str, int]]) -> str:
    """What to run after Ctrl-C: the work goes on on the server."""
    from skystate.server.codec import decode_args

    short = row["request_id"][:8]
    if row["name"] == "tail_logs":
        args = decode_args(row.get("args") or {})
        cluster = args.get("cluster_name") or row.get("cluster_name")
        job = args.get("job_id")
        job_text = str(job) if job is not None else "JOB_ID"
        return (f"The job keeps running on {cluster} (only following its log stopped). "
                f"Follow it again: `skystate logs {cluster}"
                f"{' ' + str(job) if job is not None else ''}`; stop it: "
                f"`skystate cancel {cluster} {job_text}`.")
    hint = (f"The request keeps running on the API server. Follow it again: "
            f"`skystate api logs {short}`; stop the request: `skystate api cancel {short}`.")
    for cluster, job_id in jobs:
        hint += (f" It submitted job {job_id} on {cluster}, which runs on until "
                 f"`skystate cancel {cluster} {job_id}`.")
    return hint
