"""``skystate watch DIR``: keep the world equal to the files, continuously.

Level-triggered, like a controller-runtime reconciler: an event only says "look again".
Any change to a state file (debounced), every interval tick, and every backoff expiry
triggers one *pass*: a full plan of the whole directory, then one apply of every change
that is not held back. Interval ticks refresh from the providers first (a provider
error is *unknown*, never *gone*: the record stays as it was).

Failures are per resource: a failed action puts its address in backoff (``backoff.py``)
and the next passes leave it, and what depends on it, out of the apply — the apply is
limited to the ready addresses with the executor's ``targets`` — until its delay is up.
A directory that does not load (bad YAML) or plans with errors applies nothing and is
reported with file:line; the daemon keeps running, and fixing the file resumes.
SIGTERM/SIGINT stop it after the current pass (a second one interrupts the pass).

The plan and the apply are two small functions (``plan_in_process``,
``apply_in_process``); the API server replaces them with "file a plan/apply request".
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skystate.exceptions import PlanError, SpecError, SpecIssue
from skystate.reconcile.backoff import DEFAULT_BASE, DEFAULT_CAP, Backoff, split_held
from skystate.reconcile.lock import DEFAULT_LOCK_TIMEOUT
from skystate.reconcile.plan import Action, Plan
from skystate.runtime.layout import time_scale

YAML_SUFFIXES = (".yaml", ".yml")
RELEVANT_EVENTS = frozenset({"created", "modified", "deleted", "moved", "closed"})
DEBOUNCE = 0.1
"""Seconds of quiet after the last file event before any pass (editors and ``git checkout``
write in several steps; a half-written directory must never be applied, or pruned)."""
SHOWN_ACTIONS = 6
STOP_POLL = 0.2


@dataclass(frozen=True)
class AppliedAction:
    """One action's outcome, as the watch loop needs it from any apply backend."""

    address: str
    type: str
    status: str  # succeeded | failed | skipped
    message: str


ApplyFn = Callable[[Path, list[str], float], list[AppliedAction]]
PlanFn = Callable[[Path, bool, float], Plan]


def apply_in_process(state_dir: Path, targets: list[str],
                     lock_timeout: float) -> list[AppliedAction]:
    """The apply seam: plan + apply of ``targets`` under the state lock, in this process."""
    from skystate.reconcile.engine import apply_state_dir

    _, result = apply_state_dir(state_dir, targets=targets, lock_timeout=lock_timeout)
    if result is None:
        return []
    return [AppliedAction(o.action.address, o.action.type.value, o.status, o.message)
            for o in result.outcomes]


def plan_in_process(state_dir: Path, refresh: bool, lock_timeout: float) -> Plan:
    """The plan seam: a plan of the whole directory, refreshed from the providers first
    when asked (under the state lock)."""
    from skystate.reconcile.engine import plan_state_dir

    return plan_state_dir(state_dir, refresh=refresh, lock_timeout=lock_timeout)


@dataclass
class WatchOptions:
    interval: float = 30.0
    debounce: float = DEBOUNCE
    backoff_base: float = DEFAULT_BASE
    backoff_cap: float = DEFAULT_CAP
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT

    def scaled(self) -> WatchOptions:
        """Backoff delays divided by ``SKYSTATE_TIME_SCALE`` (tests run minutes in seconds)."""
        scale = time_scale()
        return WatchOptions(self.interval, self.debounce, self.backoff_base / scale,
                            self.backoff_cap / scale, self.lock_timeout)


def is_relevant(event: Any, root: Path) -> bool:
    """A change to a state file (or a folder of them); not reads, not hidden files."""
    if event.event_type not in RELEVANT_EVENTS:
        return False
    paths = [event.src_path, getattr(event, "dest_path", "") or ""]
    for raw in paths:
        if not raw:
            continue
        path = Path(raw if isinstance(raw, str) else raw.decode())
        try:
            parts = path.relative_to(root).parts
        except ValueError:
            continue
        if any(p.startswith(".") for p in parts):
            continue
        if event.is_directory:
            if event.event_type in ("moved", "deleted"):
                return True
        elif path.name.endswith(YAML_SUFFIXES):
            return True
    return False


@dataclass
class _Triggers:
    """What woke the loop: file events (debounced), ticks, retries, a stop request."""

    wake: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    last_event: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def file_changed(self) -> None:
        with self.lock:
            self.last_event = time.monotonic()
        self.wake.set()

    def files_settled_at(self, debounce: float) -> float | None:
        with self.lock:
            return None if self.last_event is None else self.last_event + debounce

    def take_file_change(self, now: float, debounce: float) -> bool:
        """True (once) if files changed and have been quiet for ``debounce`` s."""
        with self.lock:
            if self.last_event is None or now < self.last_event + debounce:
                return False
            self.last_event = None
            return True

    def request_stop(self) -> None:
        self.stop.set()
        self.wake.set()


class Watcher:
    """The loop's state: backoff per resource, the directory's retry, what was reported."""

    def __init__(self, state_dir: Path, options: WatchOptions, apply_fn: ApplyFn,
                 plan_fn: PlanFn, out: Callable[[str], None]) -> None:
        self.state_dir = state_dir
        self.options = options
        self.apply_fn = apply_fn
        self.plan_fn = plan_fn
        self.out = out
        self.triggers = _Triggers()
        self.backoff = Backoff(options.backoff_base, options.backoff_cap)
        self.pass_backoff = Backoff(options.backoff_base, options.backoff_cap)
        self.passes = 0
        self.last_pass_at = 0.0
        self.shown_issues: list[str] = []
        self.max_wait = float("inf")

    # --- the loop ----------------------------------------------------------------

    def run(self) -> None:
        self.run_pass("start", refresh=True)
        next_tick = time.monotonic() + self.options.interval
        while not self.triggers.stop.is_set():
            now = time.monotonic()
            wait = min(self.max_wait, self._next_wake(next_tick, now) - now)
            self.triggers.wake.wait(max(0.0, wait))
            self.triggers.wake.clear()
            if self.triggers.stop.is_set():
                break
            now = time.monotonic()
            settled = self.triggers.files_settled_at(self.options.debounce)
            if settled is not None and now < settled:
                continue  # files are being written: no pass of any kind until quiet
            if now >= next_tick:
                next_tick = max(next_tick + self.options.interval, now)
                self.triggers.take_file_change(now, self.options.debounce)
                self.run_pass("interval", refresh=True)
            elif self.triggers.take_file_change(now, self.options.debounce):
                self.run_pass("file change", refresh=False)
            elif self._retry_due(now):
                self.run_pass("retry", refresh=False)

    def _next_wake(self, next_tick: float, now: float) -> float:
        settled = self.triggers.files_settled_at(self.options.debounce)
        if settled is not None:
            return settled  # ticks and retries wait for the files too
        deadlines = [next_tick]
        for backoff in (self.backoff, self.pass_backoff):
            due = backoff.next_due(now)
            if due is not None:
                deadlines.append(due)
        return min(deadlines)

    def _retry_due(self, now: float) -> bool:
        entries = [*self.backoff.entries.values(), *self.pass_backoff.entries.values()]
        return any(self.last_pass_at < r.due <= now for r in entries)

    # --- one pass ----------------------------------------------------------------

    def run_pass(self, trigger: str, *, refresh: bool) -> None:
        self.passes += 1
        self.last_pass_at = time.monotonic()
        head = f"{time.strftime('%H:%M:%S')} #{self.passes} {trigger}:"
        try:
            line = self._reconcile(refresh)
            self.pass_backoff.succeeded("pass")
        except SpecError as exc:
            line = self._spec_errors(exc)
        except PlanError as exc:
            line = "plan blocked, nothing applied: " + "; ".join(exc.errors or [str(exc)])
        except Exception as exc:  # the daemon outlives any one pass
            retry = self.pass_backoff.failed("pass", str(exc), time.monotonic())
            line = (f"pass failed ({type(exc).__name__}: {exc}); "
                    f"retry in {retry.delay:.2f}s")
        self.out(f"{head} {line}")

    def _reconcile(self, refresh: bool) -> str:
        notes: list[str] = []
        plan = self.plan_fn(self.state_dir, refresh, self.options.lock_timeout)
        self.shown_issues = []
        if plan.errors:
            raise PlanError("the plan has errors", plan.errors)
        changes = plan.changes
        self.backoff.keep_only(a.address for a in changes)
        ready, held = split_held(changes, self.backoff.waiting(time.monotonic()))
        outcomes = (self.apply_fn(self.state_dir, [a.address for a in ready],
                                  self.options.lock_timeout) if ready else [])
        notes.extend(self._record_outcomes(outcomes))
        if held:
            notes.append("held back: " + _listed(self._held_note(a) for a in held))
        if not changes:
            notes.insert(0, "in sync")
        elif not ready:
            notes.insert(0, "nothing to apply yet")
        return "; ".join(notes)

    def _record_outcomes(self, outcomes: list[AppliedAction]) -> list[str]:
        now = time.monotonic()
        done, failed, skipped = [], [], []
        for outcome in outcomes:
            if outcome.status == "succeeded":
                self.backoff.succeeded(outcome.address)
                done.append(f"{outcome.type} {outcome.address}")
            elif outcome.status == "failed":
                retry = self.backoff.failed(outcome.address, outcome.message, now)
                failed.append(f"{outcome.type} {outcome.address} ({outcome.message}; "
                              f"retry #{retry.failures} in {retry.delay:.2f}s)")
            else:  # a step it depends on failed; it follows that step's retries
                skipped.append(f"{outcome.type} {outcome.address}")
        labelled = (("applied", done), ("failed", failed), ("skipped", skipped))
        return [f"{label} {_listed(items)}" for label, items in labelled if items]

    def _held_note(self, action: Action) -> str:
        retry = self.backoff.entries.get(action.address)
        if retry is None:
            return f"{action.address} (waits for what it depends on)"
        left = max(0.0, retry.due - time.monotonic())
        return f"{action.address} (retry #{retry.failures + 1} in {left:.2f}s)"

    def _spec_errors(self, exc: SpecError) -> str:
        issues = exc.shown()
        line = f"{len(exc.issues)} error(s) in the files; nothing applied until they are fixed"
        if issues != self.shown_issues:
            self.shown_issues = issues
            line += "".join(f"\n  {issue}" for issue in issues)
        return line


def _listed(items: Any) -> str:
    items = list(items)
    shown = ", ".join(items[:SHOWN_ACTIONS])
    return shown + (f", +{len(items) - SHOWN_ACTIONS} more" if len(items) > SHOWN_ACTIONS
                    else "")


@contextmanager
def _stop_on_signals(triggers: _Triggers) -> Iterator[None]:
    """SIGTERM/SIGINT: stop after the pass; a second one interrupts it (KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handle(signum: int, frame: Any) -> None:
        if triggers.stop.is_set():
            raise KeyboardInterrupt
        triggers.request_stop()

    for sig in previous:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def watch(state_dir: str | Path, options: WatchOptions | None = None, *,
          apply_fn: ApplyFn = apply_in_process, plan_fn: PlanFn = plan_in_process,
          out: Callable[[str], None] | None = None,
          stop: threading.Event | None = None) -> None:
    """Run the watch loop until SIGTERM/SIGINT (main thread) or ``stop`` is set."""
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    root = Path(state_dir).resolve()
    if not root.is_dir():
        raise SpecError([SpecIssue(str(root), None, "", "not a directory")])
    watcher = Watcher(Path(state_dir), (options or WatchOptions()).scaled(), apply_fn, plan_fn,
                      out or (lambda line: print(line, flush=True)))
    if stop is not None:  # set from another thread: checked at least every STOP_POLL s
        watcher.triggers.stop = stop
        watcher.max_wait = STOP_POLL

    class _Events(FileSystemEventHandler):
        def on_any_event(self, event: Any) -> None:
            if is_relevant(event, root):
                watcher.triggers.file_changed()

    observer = Observer()
    observer.schedule(_Events(), str(root), recursive=True)
    observer.start()
    try:
        with _stop_on_signals(watcher.triggers):
            watcher.out(f"watching {state_dir} (interval {watcher.options.interval:g}s); "
                        "Ctrl-C to stop")
            watcher.run()
    finally:
        observer.stop()
        observer.join()
    watcher.out(f"stopped after {watcher.passes} pass(es)")
