"""The node daemon: schedules the job queue, runs phases, records outcomes, autostops.

One loop, woken by signals rather than polling: SIGUSR1 (a submit or a cancel), SIGCHLD
(a job wrapper ended) and SIGTERM (stop) each write a byte to a wake-up pipe the loop
``select``s on, with a ≤ 1 s timeout for jobs inherited from a previous agent (not our
children, so no SIGCHLD) and for autostop. Only the head (rank 0) has a job table;
agents on other nodes just mark their node alive.

Each step costs O(what changed), not a rescan of the queue (``runtime.active``): (1) catch
up with submits and cancels by other processes, (2) reap the job wrappers that ended
(``waitpid``) and settle those jobs from their exit files (a started job whose processes
are gone with no exit file is FAILED_DRIVER; jobs inherited from a previous agent are not
our children and are polled), (3) start PENDING jobs that fit, strictly FIFO: the first
job that does not fit blocks the ones behind it, so a large job is never starved by a
stream of small ones, (4) autostop.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from skystate.enums import JobStatus
from skystate.runtime import autostop
from skystate.runtime.active import ActiveJobs
from skystate.runtime.jobdb import JobDB
from skystate.runtime.layout import (
    NodePaths,
    job_umask,
    read_node_config,
    time_scale,
    write_json_atomic,
)
from skystate.runtime.procs import group_members, kill_groups, signal_group
from skystate.runtime.resources import Capacity, Demand, Placement, placed_ranks
from skystate.runtime.runners import phase_wrapper, runner_for, wrapper_argv
from skystate.runtime.secrets import drop_finished_secrets, read_secrets

POLL_SECONDS = 1.0
AUTOSTOP_CHECK_SECONDS = 0.2
SELF_STOP_RETRY_SECONDS = 30.0


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


class Agent:
    """The daemon of one node folder (``python -m skystate.runtime agent``)."""

    def __init__(self, node_dir: Path) -> None:
        self.paths = NodePaths(node_dir.resolve())
        self.paths.make_dirs()
        self.config = read_node_config(self.paths.root)
        self.is_head = self.config.rank == 0
        self.db = JobDB(self.paths.db) if self.is_head else None
        self.active = ActiveJobs(self.db) if self.db is not None else None
        self.runner = runner_for(self.config)
        self.capacity = Capacity(
            self.config.num_nodes, float(self.config.cpus), dict(self.config.accelerators)
        )
        self.scale = time_scale()
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.next_autostop_check = 0.0
        self.self_stop_fired_at: float | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._lock_fd: int | None = None

    # --- lifecycle -------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM; returns the process exit code."""
        if not self._take_lock():
            log(f"another agent already runs for {self.paths.root}")
            return 1
        self._install_signals()
        if self.db is not None:
            self.db.touch_activity()  # the cluster (re)started: reset the idle timer
        write_json_atomic(self.paths.pid_file, os.getpid())
        log(f"agent up: cluster {self.config.cluster} rank {self.config.rank} pid {os.getpid()}")
        try:
            while not self.stopping:
                self._wait(self._safe_step())
        finally:
            self._cleanup()
        log("agent exiting")
        return 0

    def _take_lock(self) -> bool:
        """An flock held for the agent's lifetime: one agent per node folder."""
        fd = os.open(self.paths.runtime / "agent.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _install_signals(self) -> None:
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(sig, lambda *_: None)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_term)

    def _on_term(self, *_: Any) -> None:
        self.stopping = True

    def _wait(self, timeout: float) -> None:
        if self.stopping:
            return
        select.select([self._wake_r], [], [], max(0.0, timeout))
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _cleanup(self) -> None:
        """Leave jobs running (a restarted agent settles them); drop our pid file."""
        try:
            pid_text = self.paths.pid_file.read_text().strip()
            if pid_text == str(os.getpid()):
                self.paths.pid_file.unlink()
        except OSError:
            pass

    # --- one step --------------------------------------------------------------------

    def _safe_step(self) -> float:
        """A failing step (e.g. a locked database) is logged and retried, never fatal."""
        if self.db is None:
            return POLL_SECONDS
        try:
            return self.step()
        except Exception as exc:  # the daemon must outlive one bad pass
            log(f"step failed, retrying: {type(exc).__name__}: {exc}")
            if self.active is not None:
                self.active.invalidate()  # the next step reloads the whole view
            return POLL_SECONDS

    def step(self) -> float:
        """One step over what changed; returns how long the loop may sleep."""
        assert self.active is not None and self.db is not None
        self.active.sync()
        ended = self._reap()
        for job in list(self.active.started.values()):
            pid = int(job["pid"] or 0)
            if pid in ended or pid not in self.children:  # ended, or inherited: poll it
                self._settle(job, reaped=pid in ended)
        drop_finished_secrets(self.paths, self.db)  # one listing of a (usually empty) folder
        self._schedule()
        return self._autostop()

    def _reap(self) -> set[int]:
        """Collect every child that exited (``waitpid``: no poll of each one)."""
        ended: set[int] = set()
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            proc = self.children.pop(pid, None)
            if proc is not None:
                proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait
            ended.add(pid)
        return ended

    def _alive(self, pgid: int | None, reaped: bool = False) -> bool:
        if not pgid or reaped:
            return False
        proc = self.children.get(pgid)
        if proc is not None:
            return proc.poll() is None
        return bool(group_members(pgid))  # not our child: zombies may linger, skip them

    def _read_exit(self, job_id: int, phase: str) -> int | None:
        try:
            text = self.paths.exit_file(job_id, phase).read_text().strip()
        except OSError:
            return None
        return int(text) if text.lstrip("-").isdigit() else None

    def _settle(self, job: dict[str, Any], reaped: bool = False) -> None:
        """Record the outcome of a started job whose current phase has ended."""
        assert self.db is not None and self.active is not None
        job_id, status = int(job["job_id"]), job["status"]
        phase = "setup" if status == JobStatus.SETTING_UP else "run"
        code = self._read_exit(job_id, phase)
        if code is None:
            if self._alive(job["pid"], reaped):
                return
            code = self._read_exit(job_id, phase)  # it may have just finished
        if code is None:
            log(f"job {job_id}: processes gone without an exit record -> FAILED_DRIVER")
            self.db.transition(job_id, [status], JobStatus.FAILED_DRIVER)
            self.active.finish(job_id)
            return
        signal_group(int(job["pid"]), signal.SIGTERM)  # orphans it left behind
        if phase == "setup" and code == 0:
            devices = {int(r): list(d) for r, d in job["devices"].items()}
            if not self._start_phase(job, "run", devices):
                self.active.finish(job_id)  # cancelled meanwhile
            return
        if phase == "setup":
            new = JobStatus.FAILED_SETUP
        else:
            new = JobStatus.SUCCEEDED if code == 0 else JobStatus.FAILED
        self.db.transition(job_id, [status], new, exit_code=code)
        self.active.finish(job_id)

    def _schedule(self) -> None:
        """Start PENDING jobs in submission order while they fit (strict FIFO)."""
        assert self.active is not None
        active = self.active
        for job in list(active.pending.values()):
            demand = Demand.from_dict(job["demand"])
            devices = active.usage.assign(demand, int(job["num_nodes"]), self.capacity)
            if devices is None:
                return
            phase = "setup" if job["setup"] else "run"
            if not self._start_phase(job, phase, devices):
                active.drop_pending(int(job["job_id"]))  # cancelled meanwhile

    def _start_phase(self, job: dict[str, Any], phase: str, devices: Placement) -> bool:
        """Launch a phase's wrapper, then record it; undo if the job was cancelled meanwhile."""
        assert self.db is not None
        job_id = int(job["job_id"])
        script = job["setup"] if phase == "setup" else (job["run"] or "true")
        secrets = read_secrets(self.paths, job_id)
        ranks = placed_ranks(devices, int(job["num_nodes"]))
        nodes = {node.rank: node for node in self.config.nodes}
        shells = [
            self.runner.shell(
                nodes[node_rank],
                script,
                {k: v for k, v in self._job_env(job, job_rank, ranks, devices).items()
                 if k not in secrets},
                job["workdir"],
                secrets,
            )
            for job_rank, node_rank in enumerate(ranks)
        ]
        exit_file = self.paths.exit_file(job_id, phase)
        text = phase_wrapper(shells, Path(job["log_path"]), exit_file, job_umask())
        proc = subprocess.Popen(
            wrapper_argv(text, exit_file.with_name(exit_file.name + ".sh")),
            env={**os.environ, **secrets} if secrets else None,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=str(self.paths.root),
        )
        self.children[proc.pid] = proc
        expected = [JobStatus(job["status"])]  # PENDING, or SETTING_UP before the run phase
        new = JobStatus.SETTING_UP if phase == "setup" else JobStatus.RUNNING
        fields: dict[str, Any] = {"pid": proc.pid, "devices": devices}
        if new == JobStatus.RUNNING:
            fields["start_at"] = time.time()
        if self.db.transition(job_id, expected, new, **fields):
            assert self.active is not None
            self.active.start(job, new, proc.pid, devices)
            return True
        kill_groups([proc.pid], timeout=1.0)
        return False

    def _job_env(
        self, job: dict[str, Any], rank: int, ranks: list[int], devices: Placement
    ) -> dict[str, str]:
        """The job's envs plus SkyPilot's variables (and SKYSTATE_* twins) for job rank
        ``rank``, which runs on node ``ranks[rank]``: ranks and IPs are the job's own."""
        ips = {node.rank: node.ip for node in self.config.nodes}
        submitted = time.strftime("%Y-%m-%d-%H-%M-%S", time.localtime(job["submitted_at"]))
        ours = {
            "NODE_RANK": str(rank),
            "NODE_IPS": "\n".join(ips[r] for r in ranks),
            "NUM_NODES": str(job["num_nodes"]),
            # A managed job passes its own, stable across recoveries (new clusters).
            "TASK_ID": str(job["envs"].get("SKYPILOT_TASK_ID")
                           or f"skystate-{submitted}_{self.config.cluster}_{job['job_id']}"),
            "JOB_ID": str(job["job_id"]),
        }
        env = {str(k): str(v) for k, v in job["envs"].items()}
        for key, value in ours.items():
            env[f"SKYPILOT_{key}"] = value
            env[f"SKYSTATE_{key}"] = value
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in devices.get(ranks[rank], []))
        return env

    # --- autostop --------------------------------------------------------------------

    def _autostop(self) -> float:
        """Check autostop at most every 0.2 s; fire the node's self-stop command when due."""
        assert self.db is not None
        now = time.monotonic()
        if now < self.next_autostop_check:
            return min(POLL_SECONDS, self.next_autostop_check - now)
        self.next_autostop_check = now + AUTOSTOP_CHECK_SECONDS
        settings = autostop.load(self.db)
        left = autostop.seconds_left(
            settings, self.db, self.scale, count_ssh=self.config.count_ssh_sessions
        )
        if left is None:
            return POLL_SECONDS
        if left > 0:
            return min(POLL_SECONDS, left)
        fired = self.self_stop_fired_at
        if fired is None or now - fired > SELF_STOP_RETRY_SECONDS:
            self._fire_self_stop(settings)
            self.self_stop_fired_at = now
        return POLL_SECONDS

    def _fire_self_stop(self, settings: autostop.AutostopSettings) -> None:
        action = "down" if settings.down else "stop"
        argv = list(self.config.self_stop.get(action) or [])
        write_json_atomic(
            self.paths.autostop_marker,
            {"action": action, "at": time.time(), "idle_minutes": settings.idle_minutes},
        )
        if not argv:
            log(f"autostop due but node.json has no self_stop[{action!r}] command")
            return
        log(f"autostop: idle for {settings.idle_minutes} min -> {action}: {json.dumps(argv)}")
        with open(self.paths.logs / "self_stop.log", "ab") as out:
            proc = subprocess.Popen(
                argv, start_new_session=True, stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
        self.children[proc.pid] = proc


def main(node_dir: Path) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    return Agent(node_dir).run()
