"""``skystate watch``: real daemon processes, real inotify events, real local clusters.

Faults are injected with the real ``SKYSTATE_FAULTS`` provider wrapper around the real
local provider (no mock): the cluster calls that are not faulted really run. The
providers run in the API server's workers, so a test with faults stops any running
server first: the watch process starts a new one that inherits ``SKYSTATE_FAULTS``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import deadline, kill_everything_under, run_cli, status_json
from watchdog.events import (
    DirModifiedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)

from skystate.reconcile.backoff import Backoff, split_held
from skystate.reconcile.plan import Action, ActionType
from skystate.reconcile.store import Store
from skystate.reconcile.watch import is_relevant

PROJECT = "kind: Project\nname: watched\n"


def _cluster(name: str, extra: str = "") -> str:
    return f"kind: Cluster\nname: {name}\nresources: {{cpus: 1}}\n{extra}"


def _save_like_an_editor(path: Path, text: str) -> None:
    """Write a temp file and rename it over the original (vim, VS Code, JetBrains)."""
    temp = path.with_name(f".{path.name}.swp")
    temp.write_text(text)
    os.replace(temp, path)


class WatchProcess:
    """``skystate watch`` as a child process; its stdout lines collected by a thread."""

    def __init__(self, home: Path, state: Path, *args: str, env: dict[str, str] | None = None):
        full_env = {**os.environ, "SKYSTATE_HOME": str(home), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "skystate.cli", "watch", str(state), *args],
            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        _STARTED.append(self)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, after: int = 0, timeout: float = 30.0) -> int:
        """Index of the first line at or after ``after`` matching ``pattern``."""
        regex = re.compile(pattern)
        until = deadline(timeout)
        with self._changed:
            while True:
                for index in range(after, len(self.lines)):
                    if regex.search(self.lines[index]):
                        return index
                left = until - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"no line matching {pattern!r}:\n" +
                                         "\n".join(self.lines))
                self._changed.wait(min(left, 0.2))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


_STARTED: list[WatchProcess] = []


@pytest.fixture
def home(tmp_path: Path):
    yield tmp_path / "home"
    while _STARTED:
        _STARTED.pop().close()
    kill_everything_under(tmp_path)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    folder.mkdir()
    (folder / "skystate.yaml").write_text(PROJECT)
    return folder


def _record(home: Path, name: str) -> dict:
    record = Store(home / "state.json").cluster(name)
    assert record is not None, f"cluster {name} is not recorded"
    return record


def _events(home: Path, address: str, action: str) -> list[dict]:
    return [e for e in Store(home / "state.json").events(address) if e["action"] == action]


# --- the daemon ----------------------------------------------------------------------


@pytest.mark.slow
def test_saved_edit_is_applied_broken_yaml_applies_nothing_and_fixing_resumes(
        home: Path, state: Path) -> None:
    cluster = state / "a.yaml"
    cluster.write_text(_cluster("a"))
    watch = WatchProcess(home, state, "--interval", "60")
    first = watch.wait_for(r"#1 start: applied create Cluster/a")
    _save_like_an_editor(cluster, _cluster("a", "autostop: {idle_minutes: 7}\n"))
    edited = watch.wait_for(r"file change: applied set-autostop Cluster/a", first + 1)

    cluster.write_text(_cluster("a", "autostop: {idle_minutes: 9}\nnum_nodes: [\n"))
    broken = watch.wait_for(r"file change: 1 error\(s\) in the files; nothing applied",
                            edited + 1)
    assert watch.wait_for(r"^\s+\S*a\.yaml:\d+: ", broken + 1) == broken + 1
    time.sleep(0.5)
    assert watch.proc.poll() is None, "the daemon must keep running"
    assert _record(home, "a")["autostop"]["idle_minutes"] == 7

    cluster.write_text(_cluster("a", "autostop: {idle_minutes: 9}\n"))
    watch.wait_for(r"file change: applied set-autostop Cluster/a", broken + 1)
    assert _record(home, "a")["autostop"]["idle_minutes"] == 9
    assert watch.stop(signal.SIGTERM) == 0
    assert watch.lines[-1].startswith("stopped after ")
    assert len(_events(home, "Cluster/a", "create")) == 1


@pytest.mark.slow
def test_sigint_stops_the_daemon_cleanly(home: Path, state: Path) -> None:
    (state / "a.yaml").write_text("kind: Cluster\nname: a\nresources: {cpus: [\n")
    watch = WatchProcess(home, state, "--interval", "0.2")
    watch.wait_for(r"#2 interval: 1 error\(s\)")  # ticks go on while the files are bad
    assert watch.stop(signal.SIGINT) == 0
    assert watch.lines[-1].startswith("stopped after ")


@pytest.mark.slow
def test_transient_fault_retries_with_growing_delays_others_unaffected(
        home: Path, state: Path, tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps(
        {"cluster": "a", "op": "provision", "error": "transient", "times": 3}))
    (state / "a.yaml").write_text(_cluster("a") + "---\nkind: Job\nname: j\ncluster: a\n"
                                  "run: echo hi\n")
    (state / "b.yaml").write_text(_cluster("b"))
    watch = WatchProcess(home, state, "--interval", "60", "--backoff-base", "0.3",
                         "--backoff-cap", "5", env={"SKYSTATE_FAULTS": str(faults)})
    first = watch.wait_for(r"#1 start: applied create Cluster/b; failed create Cluster/a")
    assert "retry #1 in 0.30s" in watch.lines[first]
    assert "skipped submit-job Job/a/j" in watch.lines[first]
    delays = []
    for attempt in (2, 3):
        index = watch.wait_for(rf"retry: failed create Cluster/a .*retry #{attempt} in", first)
        delays.append(float(re.search(r"in ([\d.]+)s\)", watch.lines[index]).group(1)))
    assert delays == [0.6, 1.2]
    done = watch.wait_for(r"retry: applied create Cluster/a, submit-job Job/a/j")
    assert watch.stop() == 0
    assert not any("Cluster/b" in line for line in watch.lines[first + 1:done + 1])

    failures = [e["time"] for e in _events(home, "Cluster/a", "create")
                if e["outcome"] == "failed"]
    assert len(failures) == 3
    gaps = [b - a for a, b in zip(failures, failures[1:], strict=False)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6, gaps  # each waited at least its delay
    assert [e["outcome"] for e in _events(home, "Cluster/b", "create")] == ["succeeded"]
    status = {c["name"]: c["status"] for c in status_json(home)["clusters"]}
    assert status == {"a": "UP", "b": "UP"}
    assert json.loads((tmp_path / "faults.json.fired.json").read_text()) == {"0": 3}


@pytest.mark.slow
def test_injected_observe_timeout_never_recreates(home: Path, state: Path,
                                                  tmp_path: Path) -> None:
    (state / "a.yaml").write_text(_cluster("a"))
    (state / "b.yaml").write_text(_cluster("b"))
    run_cli(home, "apply", str(state), "--yes")
    before = {c["name"]: c for c in status_json(home)["clusters"]}
    run_cli(home, "api", "stop")
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"cluster": "a", "op": "observe", "error": "timeout"}))
    watch = WatchProcess(home, state, "--interval", "0.3", "--backoff-base", "0.1",
                         env={"SKYSTATE_FAULTS": str(faults)})
    watch.wait_for(r"#4 interval: ")  # three refreshes after the first, all unanswered
    assert watch.stop() == 0
    fired = json.loads((tmp_path / "faults.json.fired.json").read_text())
    assert fired["0"] >= 4
    after = {c["name"]: c for c in status_json(home)["clusters"]}
    for name in ("a", "b"):
        assert after[name]["status"] == "UP"
        assert after[name]["launched_at"] == before[name]["launched_at"]
    for name in ("a", "b"):
        assert len(_events(home, f"Cluster/{name}", "create")) == 1
        assert not _events(home, f"Cluster/{name}", "replace")
    passes = [line for line in watch.lines if re.search(r"#\d+ ", line)]
    assert all(line.endswith("in sync") for line in passes), passes


@pytest.mark.slow
def test_killed_node_processes_are_repaired_within_one_interval(home: Path,
                                                                 state: Path) -> None:
    (state / "a.yaml").write_text(_cluster("a"))
    watch = WatchProcess(home, state, "--interval", "1")
    first = watch.wait_for(r"#1 start: applied create Cluster/a")
    killed_at = time.monotonic()
    kill_everything_under(home / "local" / "a")  # the node's agent, behind skystate's back
    repaired = watch.wait_for(r"interval: applied start Cluster/a", first + 1)
    # the next tick repaired it (the regex names the interval tick); a loaded machine may
    # take long to run it, so the bound is generous
    assert time.monotonic() - killed_at < 60
    assert all("in sync" in line for line in watch.lines[first + 1:repaired]), watch.lines
    assert watch.stop() == 0
    assert _record(home, "a")["status"] == "UP"


@pytest.mark.slow
def test_a_cluster_stopped_by_its_autostop_stays_stopped(home: Path, state: Path) -> None:
    (state / "a.yaml").write_text(_cluster("a", "autostop: {idle_minutes: 1}\n"))
    watch = WatchProcess(home, state, "--interval", "0.5",
                         env={"SKYSTATE_TIME_SCALE": "60"})  # a minute lasts a second
    watch.wait_for(r"#1 start: applied create Cluster/a")
    until = deadline(20)
    while _record(home, "a")["status"] != "STOPPED":  # seen stopped by an interval refresh
        assert time.monotonic() < until, watch.lines
        time.sleep(0.2)
    assert _record(home, "a")["stopped_by_autostop"] is True
    seen = len(watch.lines)
    watch.wait_for(r"interval: ", seen + 2)  # two more refreshes
    assert watch.stop() == 0
    assert not any("start Cluster/a" in line for line in watch.lines), watch.lines
    assert _record(home, "a")["status"] == "STOPPED"


@pytest.mark.slow
def test_a_directory_written_in_steps_is_applied_once_complete(
        home: Path, state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process loop (real observer, real apply); the apply is wrapped to see targets."""
    from skystate.reconcile import watch as watching

    monkeypatch.setenv("SKYSTATE_HOME", str(home))
    calls: list[list[str]] = []
    lines: list[str] = []

    def recording_apply(state_dir: Path, targets: list[str], lock_timeout: float):
        calls.append(sorted(targets))
        return watching.apply_in_process(state_dir, targets, lock_timeout)

    stop = threading.Event()
    loop = threading.Thread(target=watching.watch, args=(state,), kwargs=dict(
        # a 1 s debounce (100 ms by default): the test's writes 40 ms apart must never
        # look quiet, even when a loaded machine oversleeps each of them several times over
        options=watching.WatchOptions(interval=3600, debounce=1.0), apply_fn=recording_apply,
        out=lines.append, stop=stop))
    loop.start()
    try:
        until = deadline(10)
        while not any("#1 start: in sync" in line for line in lines):
            assert time.monotonic() < until, lines
            time.sleep(0.02)
        for i in range(5):  # 200 ms in all, never 1 s quiet
            (state / f"c{i}.yaml").write_text(_cluster(f"c{i}"))
            time.sleep(0.04)
        until = deadline(20)
        while not any("#2 file change: applied" in line for line in lines):
            assert time.monotonic() < until, lines
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(timeout=30)
    assert calls == [[f"Cluster/c{i}" for i in range(5)]], (calls, lines)
    assert lines[-1] == "stopped after 2 pass(es)"


# --- pieces ----------------------------------------------------------------------------


def test_only_changes_to_visible_yaml_files_count(tmp_path: Path) -> None:
    """The daemon's own reads (opened / closed-no-write) must not wake it."""
    root = tmp_path
    yaml, other = str(root / "a.yaml"), str(root / "notes.txt")
    assert is_relevant(FileModifiedEvent(yaml), root)
    assert is_relevant(FileClosedEvent(yaml), root)
    assert is_relevant(FileMovedEvent(str(root / ".a.yaml.swp"), yaml), root)
    assert is_relevant(FileMovedEvent(yaml, str(root / "a.yaml.bak")), root)  # file left
    assert not is_relevant(FileOpenedEvent(yaml), root)
    assert not is_relevant(FileClosedNoWriteEvent(yaml), root)
    assert not is_relevant(FileModifiedEvent(other), root)
    assert not is_relevant(FileModifiedEvent(str(root / ".git" / "x.yaml")), root)
    assert not is_relevant(DirModifiedEvent(str(root / "sub")), root)


def test_backoff_doubles_up_to_the_cap_and_success_forgets() -> None:
    backoff = Backoff(base=1.0, cap=5.0)
    delays = [backoff.failed("Cluster/a", "boom", now=100.0).delay for _ in range(5)]
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert set(backoff.waiting(104.0)) == {"Cluster/a"}
    assert backoff.waiting(105.0) == {}
    backoff.succeeded("Cluster/a")
    assert backoff.failed("Cluster/a", "boom", now=0.0).delay == 1.0
    backoff.keep_only([])
    assert backoff.entries == {}


def test_a_held_cluster_holds_its_jobs_and_what_depends_on_them() -> None:
    def action(kind: str, type_: ActionType, address: str, cluster: str | None = None,
               depends_on: tuple[str, ...] = ()) -> Action:
        return Action(type=type_, kind=kind, address=address, name=address.split("/")[-1],
                      cluster=cluster, depends_on=list(depends_on))

    create_a = action("Cluster", ActionType.CREATE, "Cluster/a")
    job_a = action("Job", ActionType.SUBMIT_JOB, "Job/a/j", "a")
    create_b = action("Cluster", ActionType.CREATE, "Cluster/b")
    cancel_c = action("Job", ActionType.CANCEL_JOB, "Job/c/old", "c")
    down_c = action("Cluster", ActionType.DOWN, "Cluster/c", depends_on=(cancel_c.id,))
    changes = [cancel_c, create_a, create_b, down_c, job_a]
    ready, held = split_held(changes, ["Cluster/a", "Job/c/old"])
    assert [a.address for a in ready] == ["Cluster/b"]
    assert {a.address for a in held} == {"Cluster/a", "Job/a/j", "Job/c/old", "Cluster/c"}
