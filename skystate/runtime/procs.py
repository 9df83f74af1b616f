"""Process liveness and killing, robust to PID reuse (Linux ``/proc``).

A pid file alone is not proof: after a reboot or a long time the pid may belong to
someone else. So the agent counts as alive only if ``/proc/<pid>/cmdline`` names
``skystate.runtime`` *and* its node folder, and a job's process group counts as alive
only while a non-zombie process is still in it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def cmdline(pid: int) -> str | None:
    """The process's command line joined by spaces, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, pgid) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return fields[0], int(fields[2])


def is_zombie_or_gone(pid: int) -> bool:
    stat = _stat(pid)
    return stat is None or stat[0] in ("Z", "X")


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def agent_pid(node_dir: Path, pid_file: Path) -> int | None:
    """The pid of this node's live agent, or None (missing, dead, or a reused pid)."""
    pid = read_pid(pid_file)
    if pid is None:
        return None
    line = cmdline(pid)
    if not line or "skystate.runtime" not in line or str(node_dir) not in line:
        return None
    return None if is_zombie_or_gone(pid) else pid


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat and stat[1] == pgid and stat[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_groups(pgids: list[int], timeout: float = 3.0) -> None:
    """SIGTERM every group, wait until they are gone, SIGKILL what is left."""
    pgids = [p for p in pgids if p and p > 1]
    for pgid in pgids:
        signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pgids = [p for p in pgids if group_members(p)]
        if not pgids:
            return
        time.sleep(0.02)
    for pgid in pgids:
        signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while pgids and time.monotonic() < deadline:
        pgids = [p for p in pgids if group_members(p)]
        time.sleep(0.02)


def kill_pid(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM a process, SIGKILL it if it does not exit in time; wait until gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_zombie_or_gone(pid):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while not is_zombie_or_gone(pid) and time.monotonic() < deadline + timeout:
        time.sleep(0.02)
