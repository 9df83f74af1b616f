"""Autostop, enforced on the cluster by its own agent (SkyPilot ``sky.autostop`` semantics).

Settings live in the job database (the last setting wins; negative minutes cancel).
The idle timer is the ``last_active`` time in the database; it is reset when a job is
submitted, when the agent (the cluster) starts, and when autostop is enabled while none
was active. While the cluster is busy the agent keeps ``last_active`` at now, as
SkyPilot's AutostopEvent does. "Busy" depends on ``wait_for``:

* ``jobs_and_ssh`` (default): a PENDING/SETTING_UP/RUNNING job, or an SSH session
  (``count_ssh_sessions`` in node.json; local nodes have none);
* ``jobs``: only jobs count;
* ``none``: nothing counts — the cluster stops ``idle_minutes`` after the timer was last
  reset (autostop set, agent start), even with jobs running: a hard time limit. Job
  submissions do not reset it in this mode.

``SKYSTATE_TIME_SCALE`` divides the timing (60: a minute lasts a second).
"""

from __future__ import annotations

import getpass
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from skystate.runtime.jobdb import JobDB

WAIT_FOR = ("jobs_and_ssh", "jobs", "none")
_KEY = "autostop"


@dataclass(frozen=True)
class AutostopSettings:
    idle_minutes: float = -1
    down: bool = False
    wait_for: str = "jobs_and_ssh"

    @property
    def enabled(self) -> bool:
        return self.idle_minutes >= 0


def load(db: JobDB) -> AutostopSettings:
    data = db.get_setting(_KEY)
    return AutostopSettings(**data) if data else AutostopSettings()


def store(
    db: JobDB, idle_minutes: float, down: bool = False, wait_for: str = "jobs_and_ssh"
) -> AutostopSettings:
    """Record a new setting; enabling it when none was active restarts the idle timer."""
    if wait_for not in WAIT_FOR:
        raise ValueError(f"wait_for must be one of {', '.join(WAIT_FOR)}, not {wait_for!r}")
    previous = load(db)
    settings = AutostopSettings(float(idle_minutes), bool(down), wait_for)
    if settings.enabled and not previous.enabled:
        db.touch_activity()
    db.set_setting(_KEY, asdict(settings))
    return settings


def ssh_sessions(user: str | None = None) -> int:
    """Count interactive SSH sessions of ``user`` (``sshd: <user>@pts/N`` processes).

    Only sessions with a terminal count: the controller's own connections (fabric ``run``,
    ``sshd: <user>@notty``) and the head's ``ssh`` to its workers must not keep a cluster
    up, while a person logged in with a shell does (SkyPilot's ``jobs_and_ssh``).
    """
    user = user or getpass.getuser()
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            line = Path(entry.path, "cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        name, _, rest = line.partition(" ")
        if name in ("sshd:", "sshd-session:") and rest.startswith(f"{user}@pts/"):
            count += 1
    return count


def seconds_left(
    settings: AutostopSettings,
    db: JobDB,
    scale: float,
    count_ssh: bool = False,
    now: float | None = None,
) -> float | None:
    """Seconds until the cluster must stop (≤ 0: now), or None when autostop is off/busy."""
    now = time.time() if now is None else now
    if not settings.enabled:
        db.set_setting("last_active", now)
        return None
    if settings.wait_for != "none":
        busy = db.count_active() > 0
        if not busy and settings.wait_for == "jobs_and_ssh" and count_ssh:
            busy = ssh_sessions() > 0
        if busy:
            db.set_setting("last_active", now)
            return None
    last_active = float(db.get_setting("last_active") or now)
    return last_active + settings.idle_minutes * 60.0 / scale - now
