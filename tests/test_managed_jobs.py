"""Managed jobs (``sky.jobs``) end to end: the API server's embedded controller launching,
watching, recovering and tearing down real local clusters."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import kill_everything_under

import skystate as sky
from skystate.jobs import ManagedJobStatus as S

pytestmark = pytest.mark.slow

SEED_KEYS = {"job_id", "job_name", "resources", "submitted_at", "end_at", "duration",
             "recovery_count", "status", "cluster_resources", "region"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("providers:\n  local: {}\n")
    monkeypatch.setenv("SKYSTATE_HOME", str(home))
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "30")  # checks every 0.1 s
    yield home
    kill_everything_under(tmp_path)


def _job(job_id: int) -> dict[str, Any]:
    return next(j for j in sky.get(sky.jobs.queue(refresh=False, all_users=True))
                if j["job_id"] == job_id)


def _wait_status(job_id: int, wanted: set[S], timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.time() + timeout
    while True:
        job = _job(job_id)
        if job["status"] in wanted:
            return job
        assert time.time() < deadline, f"job {job_id} is {job['status']}, wanted {wanted}"
        time.sleep(0.1)


def _clusters(home: Path) -> list[str]:
    state = json.loads((home / "state.json").read_text())
    return [c["name"] for c in (state.get("clusters") or {}).values()]


def _local_dirs(home: Path) -> list[str]:
    root = home / "local"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def test_seed_calls_launch_queue_tail_logs_and_the_cluster_is_gone(home: Path) -> None:
    task = sky.Task(run="echo hello from $SKYPILOT_TASK_ID")
    task.set_resources(sky.Resources(infra="local"))
    job_id, controller_handle = sky.get(sky.jobs.launch(task, name="mj"))
    assert isinstance(job_id, int) and controller_handle.kind == "embedded"
    records = sky.get(sky.jobs.queue(refresh=False))
    [record] = [r for r in records if r["job_id"] == job_id]
    assert set(record) >= SEED_KEYS and record["job_name"] == "mj"
    assert isinstance(record["status"], sky.jobs.ManagedJobStatus)
    out = io.StringIO()
    assert sky.jobs.tail_logs(job_id=job_id, follow=True, output_stream=out) == 0
    assert "hello from sky-managed-" in out.getvalue()
    record = _job(job_id)
    assert record["status"] is S.SUCCEEDED and record["recovery_count"] == 0
    assert record["end_at"] and record["duration"] >= 0
    assert _clusters(home) == [] and _local_dirs(home) == []


class _Sampler:
    """Samples, in the background, the job's statuses and how many job clusters exist."""

    def __init__(self, home: Path, job_id: int) -> None:
        import threading

        self.home, self.job_id = home, job_id
        self.statuses: list[S] = []
        self.max_recorded = 0
        self.max_live = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(0.02)

    def _sample(self) -> bool:
        try:
            state = json.loads((self.home / "state.json").read_text())
        except (OSError, ValueError):
            return False
        jobs = (state.get("managed_jobs") or {}).values()
        status = next((S(j["status"]) for j in jobs if j["job_id"] == self.job_id), None)
        if status is not None and (not self.statuses or self.statuses[-1] is not status):
            self.statuses.append(status)
        recorded = [c for c in (state.get("clusters") or {}).values()
                    if c["name"].startswith(f"mj-{self.job_id}-")]
        live = list((self.home / "local").glob(f"mj-{self.job_id}-*/node-0/tags.json"))
        self.max_recorded = max(self.max_recorded, len(recorded))
        self.max_live = max(self.max_live, len(live))
        return True

    def stop(self) -> None:
        """Stops sampling after one last sample, so the status the caller waited for is in it."""
        self._stop.set()
        self._thread.join(5)
        while not self._sample():
            time.sleep(0.02)


def _attempt_log(home: Path, job_id: int, attempt: int) -> str:
    path = home / "managed_jobs" / str(job_id) / f"attempt-{attempt}.log"
    return path.read_text() if path.exists() else ""


def _preempt(cluster: str) -> None:
    subprocess.run([sys.executable, "-m", "skystate.providers.local", "preempt", cluster],
                   check=True, capture_output=True, env=os.environ.copy())


def test_three_preemptions_recover_each_time_then_succeed(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    run = (f"echo x >> {counter}; n=$(wc -l < {counter}); "
           f"echo \"attempt $n task $SKYPILOT_TASK_ID\"; "
           f"if [ $n -lt 4 ]; then sleep 300; fi; echo finished")
    task = sky.Task(run=run)
    task.set_resources(sky.Resources(infra="local"))
    job_id, _ = sky.get(sky.jobs.launch(task, name="spot"))
    sampler = _Sampler(home, job_id)
    for attempt in (1, 2, 3):
        job = _wait_status(job_id, {S.RUNNING})
        deadline = time.time() + 60
        while f"attempt {attempt} " not in _attempt_log(home, job_id, attempt):
            assert time.time() < deadline, f"attempt {attempt} never logged"
            time.sleep(0.05)
        assert job["attempt"] == attempt and job["recovery_count"] == attempt - 1
        _preempt(f"mj-{job_id}-{attempt}")
        deadline = time.time() + 60
        while _job(job_id)["attempt"] == attempt:
            assert time.time() < deadline, "the preemption was never noticed"
            time.sleep(0.05)
    job = _wait_status(job_id, {S.SUCCEEDED, S.FAILED})
    sampler.stop()
    assert job["status"] is S.SUCCEEDED and job["recovery_count"] == 3
    assert job["attempt"] == 4 and job["restarts_on_error"] == 0
    assert [a["attempt"] for a in job["attempts"]] == [1, 2, 3, 4]
    assert all("preempted" in a["outcome"] for a in job["attempts"][:3])
    assert sampler.statuses.count(S.RECOVERING) == 3, sampler.statuses
    assert sampler.statuses[-1] is S.SUCCEEDED
    for before, after in zip(sampler.statuses, sampler.statuses[1:], strict=False):
        if before is S.RECOVERING:
            assert after is S.RUNNING, sampler.statuses
    assert sampler.max_recorded == 1 and sampler.max_live == 1  # never two clusters
    out = io.StringIO()
    assert sky.jobs.tail_logs(job_id=job_id, follow=False, output_stream=out) == 0
    text = out.getvalue()
    task_ids = set()
    for attempt in (1, 2, 3, 4):
        assert f"=== attempt-{attempt} ===" in text
        line = next(x for x in text.splitlines() if x.startswith(f"attempt {attempt} "))
        task_ids.add(line.split(" task ")[1])
    assert len(task_ids) == 1  # SKYPILOT_TASK_ID is stable across attempts
    assert "finished" in _attempt_log(home, job_id, 4)
    assert _clusters(home) == [] and _local_dirs(home) == []


def test_restarts_on_errors_then_failed_and_exit_codes_recover(home: Path,
                                                               tmp_path: Path) -> None:
    failing = sky.Task.from_yaml_config({
        "run": "echo failing; exit 1",
        "resources": {"infra": "local", "job_recovery": {"max_restarts_on_errors": 2}}})
    counter = tmp_path / "n"
    flaky = sky.Task.from_yaml_config({
        "run": f"echo x >> {counter}; if [ $(wc -l < {counter}) -lt 3 ]; then exit 7; fi",
        "resources": {"infra": "local", "job_recovery": {"recover_on_exit_codes": [7]}}})
    failing_id, _ = sky.get(sky.jobs.launch(failing, name="failing"))
    flaky_id, _ = sky.get(sky.jobs.launch(flaky, name="flaky"))
    job = _wait_status(failing_id, {S.FAILED, S.SUCCEEDED}, timeout=120)
    assert job["status"] is S.FAILED and job["attempt"] == 3
    assert job["restarts_on_error"] == 2 and "exit code 1" in job["failure_reason"]
    for attempt in (1, 2, 3):
        assert "failing" in _attempt_log(home, failing_id, attempt)
    out = io.StringIO()
    assert sky.jobs.tail_logs(job_id=failing_id, follow=True, output_stream=out) == 100
    job = _wait_status(flaky_id, {S.FAILED, S.SUCCEEDED}, timeout=120)
    assert job["status"] is S.SUCCEEDED and job["attempt"] == 3
    assert job["restarts_on_error"] == 0 and job["recovery_count"] == 2
    assert _clusters(home) == [] and _local_dirs(home) == []


def _fired(faults: Path) -> int:
    path = faults.with_name(faults.name + ".fired.json")
    return sum(json.loads(path.read_text()).values()) if path.exists() else 0


def _gated_task(gate: Path, extra: str = "") -> sky.Task:
    task = sky.Task(run=f"{extra}while [ ! -f {gate} ]; do sleep 0.1; done; echo through")
    task.set_resources(sky.Resources(infra="local"))
    return task


def test_observation_timeouts_never_start_a_recovery(home: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"op": "observe", "cluster": "mj-1-1", "error": "timeout",
                                  "times": 20}))
    monkeypatch.setenv("SKYSTATE_FAULTS", str(faults))
    monkeypatch.setenv("SKYSTATE_JOBS_UNKNOWN_WINDOW_SECONDS", "3600")
    gate = tmp_path / "gate"
    job_id, _ = sky.get(sky.jobs.launch(_gated_task(gate), name="steady"))
    assert job_id == 1
    seen_reason = False
    deadline = time.time() + 90
    while _fired(faults) < 20:
        assert time.time() < deadline, f"only {_fired(faults)} timeouts were injected"
        job = _job(job_id)
        seen_reason = seen_reason or "unreachable since" in (job["failure_reason"] or "")
        assert job["status"] in (S.PENDING, S.STARTING, S.RUNNING) and job["attempt"] == 1
        time.sleep(0.05)
    assert seen_reason  # the job shows the condition while it lasts
    state = json.loads((home / "state.json").read_text())
    [cluster] = state["clusters"].values()  # an ordinary recorded cluster, owned by jobs
    assert cluster["name"] == "mj-1-1" and cluster["managed_by"] == "jobs"
    assert cluster["autostop"]["down"] is True and cluster["status"] == "UP"
    gate.touch()
    job = _wait_status(job_id, {S.SUCCEEDED, S.FAILED})
    assert job["status"] is S.SUCCEEDED
    assert job["recovery_count"] == 0 and job["attempt"] == 1 and job["unknown_since"] is None


def test_unknown_past_the_window_recovers(home: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"op": "observe", "cluster": "mj-1-1", "error": "transient"}))
    monkeypatch.setenv("SKYSTATE_FAULTS", str(faults))
    monkeypatch.setenv("SKYSTATE_JOBS_UNKNOWN_WINDOW_SECONDS", "30")  # 1 s at scale 30
    gate = tmp_path / "gate"
    gate.touch()
    job_id, _ = sky.get(sky.jobs.launch(_gated_task(gate, "sleep 3; "), name="lost"))
    job = _wait_status(job_id, {S.SUCCEEDED, S.FAILED}, timeout=90)
    assert job["status"] is S.SUCCEEDED and job["recovery_count"] == 1
    assert "past the unknown window" in job["attempts"][0]["outcome"]
    assert _clusters(home) == [] and _local_dirs(home) == []


def _server_pid(home: Path) -> int:
    return int(json.loads((home / "api_server.json").read_text())["pid"])


def test_sigkill_of_the_api_server_resumes_every_job_none_twice(home: Path,
                                                               tmp_path: Path) -> None:
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    runs.mkdir()
    task = _gated_task(gate, f"echo start >> {runs}/$SKYPILOT_MANAGED_JOB_ID; ")
    ids = [sky.get(sky.jobs.launch(task, name=f"resume-{n}"))[0] for n in range(5)]
    deadline = time.time() + 120
    while not any(j["status"] is S.RUNNING for j in
                  sky.get(sky.jobs.queue(refresh=False)) if j["job_id"] in ids):
        assert time.time() < deadline, "no job started"
        time.sleep(0.05)
    old = _server_pid(home)
    os.kill(old, signal.SIGKILL)  # mid-flight: some jobs run, others may be launching
    deadline = time.time() + 30
    while Path(f"/proc/{old}").exists() and time.time() < deadline:
        time.sleep(0.05)
    gate.touch()
    for job_id in ids:  # the first call starts a new server; its controller resumes
        job = _wait_status(job_id, {S.SUCCEEDED, S.FAILED, S.CANCELLED}, timeout=180)
        assert job["status"] is S.SUCCEEDED, job
        assert job["recovery_count"] == 0 and job["attempt"] == 1
    assert _server_pid(home) != old
    assert sorted(p.name for p in runs.iterdir()) == sorted(map(str, ids))
    for path in runs.iterdir():
        assert path.read_text() == "start\n", f"job {path.name} ran twice"
    assert _clusters(home) == [] and _local_dirs(home) == []


def test_cancel_of_many_jobs_leaves_none_cancelling_and_no_cluster(home: Path,
                                                                  tmp_path: Path) -> None:
    task = _gated_task(tmp_path / "never")
    ids = [sky.get(sky.jobs.launch(task, name=f"c-{n}"))[0] for n in range(8)]
    deadline = time.time() + 120
    while sum(j["status"] is S.RUNNING for j in sky.get(sky.jobs.queue(refresh=False))) < 2:
        assert time.time() < deadline, "jobs never started"
        time.sleep(0.05)
    started = time.time()
    assert sorted(sky.get(sky.jobs.cancel(all=True))) == ids
    deadline = time.time() + 120
    while True:
        statuses = [j["status"] for j in sky.get(sky.jobs.queue(refresh=False))]
        if all(s.is_terminal() for s in statuses):
            break
        assert time.time() < deadline, f"still not cancelled: {statuses}"
        time.sleep(0.1)
    took = time.time() - started
    assert set(statuses) == {S.CANCELLED}
    assert _clusters(home) == [] and _local_dirs(home) == []
    print(f"cancelled {len(ids)} managed jobs in {took:.1f}s")
    assert sky.get(sky.jobs.cancel(all=True)) == []  # nothing left to cancel
    out = io.StringIO()
    assert sky.jobs.tail_logs(job_id=ids[0], follow=True, output_stream=out) == 103


def test_two_stores_on_one_file_add_events_without_id_clashes(tmp_path: Path) -> None:
    from skystate.reconcile.store import Store

    first, second = Store(tmp_path / "state.json"), Store(tmp_path / "state.json")
    for n in range(3):  # each sees the other's flush and must not reuse its ids
        for store in (first, second):
            with store.transaction():
                store.add_event("Cluster/a", "down", "succeeded", f"{n}")
    assert len(Store(tmp_path / "state.json").events()) == 6


def test_cli_launch_streams_queue_lists_logs_and_cancel(home: Path, tmp_path: Path) -> None:
    from helpers import run_cli

    task = tmp_path / "task.yaml"
    task.write_text("name: hello\nresources: {infra: local}\nrun: echo hello from the cli\n")
    launched = run_cli(home, "jobs", "launch", str(task), "-n", "cli-job", timeout=120)
    assert "hello from the cli" in launched.stdout and "=== attempt-1 ===" in launched.stdout
    [record] = json.loads(run_cli(home, "jobs", "queue", "--json").stdout)
    assert record["status"] == "SUCCEEDED" and record["job_name"] == "cli-job"
    assert set(record) >= SEED_KEYS
    table = run_cli(home, "jobs", "queue").stdout
    assert "RECOVERIES" in table and "cli-job" in table
    controller = run_cli(home, "jobs", "logs", str(record["job_id"]), "--controller",
                         "--no-follow").stdout
    assert "finished: SUCCEEDED" in controller
    gated = tmp_path / "gated.yaml"
    gated.write_text(f"resources: {{infra: local}}\nrun: while [ ! -f {tmp_path}/never ]; "
                     "do sleep 0.1; done\n")
    assert "submitted" in run_cli(home, "jobs", "launch", str(gated), "-n", "wait", "-d").stderr
    assert "Cancelling" in run_cli(home, "jobs", "cancel", "-n", "wait").stdout
    deadline = time.time() + 90
    while True:
        rows = json.loads(run_cli(home, "jobs", "queue", "--json").stdout)
        job = next(r for r in rows if r["job_name"] == "wait")
        if job["status"] == "CANCELLED":
            break
        assert time.time() < deadline, job
        time.sleep(0.2)
    logs = run_cli(home, "jobs", "logs", str(job["job_id"]), "--no-follow", check=103)
    assert logs.returncode == 103
    assert _clusters(home) == [] and _local_dirs(home) == []


def test_launch_raises_for_a_bad_task_and_infeasible_ends_in_no_resource(home: Path) -> None:
    bad = sky.Task.from_yaml_config({"run": "true", "resources": {
        "infra": "local", "job_recovery": {"strategy": "SOMETIMES"}}})
    with pytest.raises(ValueError, match="EAGER_NEXT_REGION"):
        sky.get(sky.jobs.launch(bad))
    with pytest.raises(ValueError, match="run command"):
        sky.get(sky.jobs.launch(sky.Task(setup="true")))
    infeasible = sky.Task(run="true")
    infeasible.set_resources(sky.Resources(infra="local", accelerators="H100:8"))
    job_id, _ = sky.get(sky.jobs.launch(infeasible, name="never"))
    job = _wait_status(job_id, {S.FAILED_NO_RESOURCE, S.FAILED_PRECHECKS, S.SUCCEEDED})
    assert job["status"] is S.FAILED_NO_RESOURCE and "no offer" in job["failure_reason"]
    assert _clusters(home) == []


def test_no_capacity_waits_pending_with_the_reason_then_runs(home: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.setenv("SKYSTATE_JOBS_LAUNCH_RETRIES", "1000")  # never FAILED_NO_RESOURCE
    (home / "config.yaml").write_text("providers:\n  local: {accelerators: {A100: 1}}\n")
    gate = tmp_path / "gate"
    first = _gated_task(gate)
    first.set_resources(sky.Resources(infra="local", accelerators="A100:1"))
    second = sky.Task(run="echo second")
    second.set_resources(sky.Resources(infra="local", accelerators="A100:1"))
    first_id, _ = sky.get(sky.jobs.launch(first, name="holder"))
    _wait_status(first_id, {S.RUNNING})
    second_id, _ = sky.get(sky.jobs.launch(second, name="waiter"))
    deadline = time.time() + 60
    while "no capacity" not in (_job(second_id)["failure_reason"] or ""):
        assert time.time() < deadline, _job(second_id)
        time.sleep(0.1)
    assert _job(second_id)["status"] is S.PENDING
    gate.touch()
    assert _wait_status(first_id, {S.SUCCEEDED, S.FAILED})["status"] is S.SUCCEEDED
    job = _wait_status(second_id, {S.SUCCEEDED, S.FAILED}, timeout=120)
    assert job["status"] is S.SUCCEEDED and job["recovery_count"] == 0
    assert job["failure_reason"] is None
    assert _clusters(home) == [] and _local_dirs(home) == []


def test_a_hanging_observation_is_unknown_within_its_bound(home: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    faults = tmp_path / "faults.json"  # observe answers only after 5 s, twice
    faults.write_text(json.dumps({"op": "observe", "cluster": "mj-1-1", "error": "transient",
                                  "delay": 5, "times": 2}))
    monkeypatch.setenv("SKYSTATE_FAULTS", str(faults))
    monkeypatch.setenv("SKYSTATE_JOBS_OBSERVE_TIMEOUT_SECONDS", "0.5")
    gate = tmp_path / "gate"
    job_id, _ = sky.get(sky.jobs.launch(_gated_task(gate), name="slow"))
    deadline = time.time() + 60
    while "did not answer within" not in (_job(job_id)["failure_reason"] or ""):
        assert time.time() < deadline, _job(job_id)
        time.sleep(0.05)
    gate.touch()
    job = _wait_status(job_id, {S.SUCCEEDED, S.FAILED})
    assert job["status"] is S.SUCCEEDED and job["recovery_count"] == 0
