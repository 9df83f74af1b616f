"""Files at rest and what crosses process boundaries: SKYSTATE_HOME is owner-only, task
secrets are stored nowhere but the one owner-only file a running job needs, and the API
token never leaves the server (real server, real workers, real local cluster agents)."""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path

import pytest
from helpers import run_cli, wait_until

import skystate as sky
from skystate.exceptions import InsecureHomeError
from skystate.home import secure_home

pytestmark = pytest.mark.slow


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _job_content(home: Path, path: Path) -> bool:
    """What a local node's jobs see as ``~`` and ``/`` (theirs, not skystate's)."""
    parts = path.relative_to(home).parts
    return (len(parts) >= 4 and parts[0] == "local" and parts[2].startswith("node-")
            and parts[3] in ("home", "root"))


def _wider_than_owner(home: Path) -> list[str]:
    return [f"{oct(_mode(p))} {p}" for p in [home, *home.rglob("*")]
            if not p.is_symlink() and not _job_content(home, p) and _mode(p) & 0o077]


def _cluster(name: str) -> None:
    task = sky.Task(run="true").set_resources(sky.Resources(infra="local", cpus="1+"))
    sky.get(sky.launch(task, cluster_name=name))


def _finished(cluster: str, job_id: int) -> sky.JobStatus:
    status: dict[int, sky.JobStatus] = {}

    def done() -> bool:
        status.update(sky.get(sky.job_status(cluster, [job_id])))
        return status[job_id] is not None and status[job_id].is_terminal()

    wait_until(done, 60, f"job {job_id} on {cluster} to finish")
    return status[job_id]


def _log(home: Path, cluster: str, job_id: int) -> str:
    return (home / "local" / cluster / "node-0" / "logs" / "jobs" / f"{job_id}.log").read_text()


def _cmdlines() -> str:
    lines = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                lines.append(Path(entry.path, "cmdline").read_bytes().decode(errors="replace"))
            except OSError:
                pass
    return "\n".join(lines)


def _environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def test_task_secrets_reach_the_job_and_are_stored_nowhere_under_the_home(home: Path) -> None:
    secret = f"hf-{uuid.uuid4().hex}"
    _cluster("sec")
    task = sky.Task(run='test -n "$HF_TOKEN" && echo "HF_TOKEN is set (${#HF_TOKEN} chars)"; '
                        "sleep 4").update_secrets({"HF_TOKEN": secret})
    request_id = sky.exec(task, cluster_name="sec")
    job_id, _ = sky.get(request_id)
    node = home / "local" / "sec" / "node-0"
    # While it runs: the one place the job needs them, owner-only, and no command line.
    secrets_file = node / "runtime" / "secrets" / f"{job_id}.json"
    wait_until(lambda: sky.get(sky.job_status("sec", [job_id]))[job_id]
               is sky.JobStatus.RUNNING, 30, "the job to run")
    assert secrets_file.exists() and _mode(secrets_file) == 0o600
    assert secret not in _cmdlines()
    assert _finished("sec", job_id) is sky.JobStatus.SUCCEEDED
    assert f"HF_TOKEN is set ({len(secret)} chars)" in _log(home, "sec", job_id)
    listed = json.dumps(sky.api_status([request_id], all_status=True), default=str)
    assert secret not in listed and "<redacted>" in listed
    wait_until(lambda: not secrets_file.exists(), 30, "the job's secrets file to go")
    assert not list(home.rglob("*.secrets.json"))
    # Every byte of every file: state, request DB + WAL + shm, logs, the job DB + WAL.
    run_cli(home, "api", "stop")
    files = [p for p in home.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.name == "requests.db-wal" for p in files)
    assert any(p.name == "jobs.db" for p in files)
    holding = [str(p) for p in files if secret.encode() in p.read_bytes()]
    assert holding == []


def test_a_pending_request_keeps_its_secrets_across_a_server_restart(home: Path) -> None:
    """A request queued when the server stopped runs after a restart with its secrets."""
    from skystate.server.client import user_name
    from skystate.server.codec import encode
    from skystate.server.records import RequestDB, RequestStatus
    from skystate.server.scheduler import Scheduler

    secret = f"pending-{uuid.uuid4().hex}"
    _cluster("later")
    run_cli(home, "api", "stop")
    task = sky.Task(run='test -n "$API_KEY" && echo "API_KEY has ${#API_KEY} chars"')
    task.update_secrets({"API_KEY": secret})
    db = RequestDB(home / "requests.db")
    stopped = Scheduler(db, home, max_workers=0, warm=0)  # runs nothing: the request waits
    args = {"task": encode(task.to_yaml_config()), "cluster_name": encode("later")}
    request_id = stopped.submit("exec", args, user_name())  # the cluster's owner
    stopped.close()
    side_file = home / "requests" / f"{request_id}.secrets.json"
    assert side_file.exists() and _mode(side_file) == 0o600
    row = db.get(request_id)
    assert row is not None and row["status"] == "PENDING" and secret not in json.dumps(row)
    restarted = Scheduler(db, home, max_workers=2, warm=0)
    try:
        restarted.requeue_unfinished()
        wait_until(lambda: RequestStatus((db.get(request_id) or {})["status"]).is_finished(),
                   60, "the requeued request")
        row = db.get(request_id) or {}
        assert row["status"] == "SUCCEEDED", row.get("error")
    finally:
        restarted.close()
        db.close()
    assert not side_file.exists()
    job_id = 2  # the launch ran job 1
    assert _finished("later", job_id) is sky.JobStatus.SUCCEEDED
    assert f"API_KEY has {len(secret)} chars" in _log(home, "later", job_id)
    run_cli(home, "api", "stop")
    assert [p for p in home.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()] == []


def test_a_fresh_home_and_everything_skystate_makes_in_it_is_owner_only(home: Path) -> None:
    _cluster("modes")
    job_id, _ = sky.get(sky.exec(
        sky.Task(setup="echo setup", run="echo out > ~/made-by-job.txt; umask"),
        cluster_name="modes"))
    assert _finished("modes", job_id) is sky.JobStatus.SUCCEEDED
    run_cli(home, "api", "stop")
    assert _mode(home) == 0o700
    assert _wider_than_owner(home) == []
    for name in ("requests.db", "requests.db-wal", "api_server.log", "state.json"):
        assert _mode(home / name) == 0o600, name
    node = home / "local" / "modes" / "node-0"
    for path in (node / "runtime" / "jobs.db", node / "logs" / "agent.log",
                 node / "logs" / "jobs" / f"{job_id}.log", node / "node.json"):
        assert _mode(path) == 0o600, path
    assert _mode(node) == 0o700 and _mode(node / "runtime" / "secrets") == 0o700


def test_a_home_that_exists_with_wider_modes_is_made_owner_only(home: Path) -> None:
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    notes = home / "config.yaml"
    notes.write_text("# mine\n")
    notes.chmod(0o644)
    old_logs = home / "requests"
    old_logs.mkdir()
    old_logs.chmod(0o755)
    job_file = home / "local" / "old" / "node-0" / "home" / "result.txt"
    job_file.parent.mkdir(parents=True)
    job_file.write_text("a job's own output\n")
    job_file.chmod(0o644)
    run_cli(home, "api", "start")
    try:
        assert _mode(home) == 0o700
        assert _mode(notes) == 0o600 and _mode(old_logs) == 0o700
        assert _mode(job_file) == 0o644  # the job's own file is left as it made it
        assert _wider_than_owner(home) == []
    finally:
        run_cli(home, "api", "stop")


def test_a_home_that_cannot_be_private_is_refused(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    user_home = tmp_path / "user"
    user_home.mkdir(mode=0o755)
    (user_home / "photo.jpg").write_text("x")
    monkeypatch.setenv("HOME", str(user_home))
    with pytest.raises(InsecureHomeError, match="home folder"):
        secure_home(user_home)
    assert _mode(user_home) == 0o755 and _mode(user_home / "photo.jpg") & 0o044
    monkeypatch.setenv("SKYSTATE_HOME", str(user_home))
    for mode in (0o755, 0o700):  # refused before anything is changed, private or not
        user_home.chmod(mode)
        refused = run_cli(user_home, "status", check=1)
        assert "SKYSTATE_HOME" in refused.stderr and "Traceback" not in refused.stderr
        assert _mode(user_home) == mode and not (user_home / "api_server.json").exists()


def test_the_api_token_never_reaches_workers_agents_setup_or_jobs(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("SKYSTATE_API_TOKEN", token)
    monkeypatch.setenv("SKYSTATE_API_EXTRA_SETTING", token)
    task = sky.Task(setup="env", run="env; sleep 1").set_resources(
        sky.Resources(infra="local", cpus="1+"))
    job_id, _ = sky.get(sky.launch(task, cluster_name="tok"))
    assert _finished("tok", job_id) is sky.JobStatus.SUCCEEDED
    log = _log(home, "tok", job_id)
    assert "SKYPILOT_NODE_RANK=0" in log and "HOME=" in log  # it printed its environment
    assert token not in log
    server = int(json.loads((home / "api_server.json").read_text())["pid"])
    assert token.encode() in _environ(server)  # the server itself has it, and only it
    agent = int((home / "local" / "tok" / "node-0" / "runtime" / "agent.pid").read_text())
    assert b"SKYSTATE_HOME=" in _environ(agent)
    assert token.encode() not in _environ(agent)
    workers = [int(e.name) for e in os.scandir("/proc") if e.name.isdigit()
               and b"skystate.server.worker" in _read(Path(e.path, "cmdline"))
               and _read(Path(e.path, "environ")).find(str(home).encode()) >= 0]
    assert workers, "no request worker found"
    assert all(token.encode() not in _environ(pid) for pid in workers)
    assert [p for p in home.rglob("*") if p.is_file() and token.encode() in p.read_bytes()
            ] == []


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_a_declarative_jobs_secrets_are_read_from_its_files_and_recorded_nowhere(
        home: Path, tmp_path: Path) -> None:
    secret = f"decl-{uuid.uuid4().hex}"
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "skystate.yaml").write_text(
        "kind: Project\nname: sec\ndefaults:\n  resources: {infra: local}\n")
    (state_dir / "cluster.yaml").write_text(
        "kind: Cluster\nname: decl\nresources:\n  cpus: 1+\n")
    (state_dir / "job.yaml").write_text(
        f"kind: Job\nname: uses-token\ncluster: decl\nsecrets: {{HF_TOKEN: {secret}}}\n"
        'run: test -n "$HF_TOKEN" && echo "HF_TOKEN is set (${#HF_TOKEN} chars)"\n')
    saved = tmp_path / "plan.json"
    shown = run_cli(home, "plan", str(state_dir), "-o", str(saved)).stdout
    assert "HF_TOKEN" in shown and secret not in shown
    assert secret not in saved.read_text()
    out = run_cli(home, "apply", str(saved)).stdout
    assert "submitted" in out and secret not in out
    job = next(j for j in sky.get(sky.queue("decl")) if j["job_name"] == "uses-token")
    assert _finished("decl", job["job_id"]) is sky.JobStatus.SUCCEEDED
    assert f"HF_TOKEN is set ({len(secret)} chars)" in _log(home, "decl", job["job_id"])
    plan_again = run_cli(home, "plan", str(state_dir), "--detailed-exitcode", check=0).stdout
    assert secret not in plan_again  # unchanged: the recorded job matches the files
    run_cli(home, "api", "stop")
    assert [str(p) for p in home.rglob("*") if p.is_file() and secret.encode() in
            p.read_bytes()] == []


def test_a_requests_own_secret_is_masked_in_its_recorded_error(tmp_path: Path) -> None:
    from skystate.server.codec import encode, encode_error
    from skystate.server.secret_args import SecretFiles

    secret = f"err-{uuid.uuid4().hex}"
    files = SecretFiles(tmp_path)
    task = sky.Task(run="true").update_secrets({"TOKEN": secret})
    stored = files.keep("r1", {"task": encode(task.to_yaml_config())})
    assert secret not in json.dumps(stored) and "<redacted>" in json.dumps(stored)
    assert _mode(tmp_path / "r1.secrets.json") == 0o600
    assert secret in json.dumps(files.restore("r1", stored))
    error = encode_error(ValueError(f"bad value {secret!r} in task"))
    value, scrubbed = files.scrub("r1", (None, error))
    assert value is None and secret not in json.dumps(scrubbed)
    assert "bad value '<redacted>' in task" in scrubbed["message"]
    files.drop("r1")
    assert list(tmp_path.iterdir()) == []
