"""The API server for real: requests with IDs, cancel, a killed server, many clients,
the OpenAPI contract (schemathesis) and the bearer token."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from helpers import kill_everything_under, wait_until

import skystate as sky
from skystate import exceptions
from skystate.server.client import stop_server
from skystate.server.procs import tagged_pids

pytestmark = pytest.mark.slow


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SKYSTATE_HOME", str(home))
    monkeypatch.delenv("SKYSTATE_API_TOKEN", raising=False)
    monkeypatch.delenv("SKYSTATE_API_SERVER_URL", raising=False)
    yield home
    stop_server(home)
    kill_everything_under(tmp_path)


def _server_pid(home: Path) -> int:
    return int(json.loads((home / "api_server.json").read_text())["pid"])


def _python(home: Path, code: str, timeout: float = 120) -> str:
    env = {**os.environ, "SKYSTATE_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_a_request_launched_by_one_process_is_got_by_another(home: Path) -> None:
    request_id = _python(home, """
        import skystate as sky
        task = sky.Task(run="echo from-another-process").set_resources(sky.Resources(infra="local"))
        print(sky.launch(task, cluster_name="shared"))
    """)
    job_id, handle = sky.get(request_id)
    assert job_id == 1 and handle.cluster_name == "shared"
    other = sky.queue("shared")
    listed = {r["request_id"]: r for r in sky.api_status(all_status=True)}
    assert {request_id, other} <= set(listed)
    assert listed[request_id]["name"] == "launch"
    assert listed[request_id]["status"] is sky.api_status([request_id], True)[0]["status"]
    assert sky.get(request_id[:8]) == (job_id, handle) or sky.get(request_id[:8])[0] == job_id


def test_get_raises_the_original_exception_with_its_attributes(home: Path) -> None:
    with pytest.raises(exceptions.ClusterDoesNotExist):
        sky.get(sky.down("no-such-cluster"))
    task = sky.Task(run="true").set_resources(sky.Resources(infra="local", accelerators="H100:8"))
    with pytest.raises(exceptions.ResourcesUnavailableError) as caught:
        sky.get(sky.launch(task, cluster_name="nothing-fits"))
    assert caught.value.failover_history == []  # no feasible offer at all
    from skystate.server.client import client

    with pytest.raises(ValueError, match="invalid request"):
        client().submit("status", {"no_such_argument": 1})


def test_api_cancel_ends_a_long_request_and_its_processes_at_once(home: Path,
                                                                 tmp_path: Path) -> None:
    """A long apply (cluster setup ``sleep 300`` runs in the request's process tree) and
    an exec queued behind it on the same cluster are cancelled at once; nothing they
    started survives."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "c.yaml").write_text("kind: Cluster\nname: slow\nsetup: sleep 300\n")
    apply = sky.apply(state)
    wait_until(lambda: any(b"sleep 300" in _cmdline(p) for p in tagged_pids(apply)), 30,
               "the setup to be running")
    queued = sky.exec(sky.Task(run="echo queued"), cluster_name="slow")  # same cluster: waits
    assert sky.api_status([queued])[0]["status"].value == "PENDING"
    started = time.monotonic()
    cancelled = sky.get(sky.api_cancel([apply, queued], silent=True))
    elapsed = time.monotonic() - started
    rows = {r["request_id"]: r for r in sky.api_status([apply, queued], True)}
    assert set(cancelled) == {apply, queued}, rows
    assert {r["status"].value for r in rows.values()} == {"CANCELLED"}
    assert elapsed < 20, elapsed  # not the setup's 300 s (generous: a loaded machine)
    assert tagged_pids(apply) == [] and not _alive(rows[apply]["pid"])
    with pytest.raises(exceptions.RequestCancelledError):
        sky.get(apply)


def test_sigkill_of_the_server_fails_its_request_and_loses_nothing(home: Path) -> None:
    quick = sky.launch(sky.Task(run="true").set_resources(sky.Resources(infra="local")),
                       cluster_name="kept")
    sky.get(quick)
    slow = sky.exec(sky.Task(run="sleep 300"), cluster_name="kept")
    job_id, _ = sky.get(slow)
    from skystate.server.client import client

    stuck = client().submit("tail_logs", {"cluster_name": "kept", "job_id": job_id,
                                          "follow": True})
    old = _server_pid(home)
    wait_until(lambda: sky.api_status([stuck])[0]["status"].value == "RUNNING", 20,
               "the request to run")
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: not _alive(old), 10, "the server to die")
    info = sky.api_info()  # the next call starts a new server
    assert info["pid"] != old
    rows = {r["request_id"]: r for r in sky.api_status(all_status=True)}
    assert rows[stuck]["status"].value == "FAILED"
    assert "died" in rows[stuck]["status_msg"]
    with pytest.raises(exceptions.RequestInterruptedError):
        sky.get(stuck)
    assert rows[quick]["status"].value == rows[slow]["status"].value == "SUCCEEDED"
    assert sky.get(quick)[0] == 1
    assert [r["name"] for r in sky.get(sky.status())] == ["kept"]


def test_twenty_clients_times_twenty_five_requests_all_finish(home: Path) -> None:
    sky.get(sky.launch(sky.Task(run="true").set_resources(sky.Resources(infra="local")),
                       cluster_name="busy"))
    client = textwrap.dedent("""
        import json, skystate as sky
        ids = [sky.exec(sky.Task(run="true"), cluster_name="busy")]
        for i in range(24):
            ids.append(sky.status() if i % 3 else sky.queue("busy"))
        print(json.dumps(ids))
    """)
    env = {**os.environ, "SKYSTATE_HOME": str(home)}
    procs = [subprocess.Popen([sys.executable, "-c", client], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(20)]
    ids = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0
        ids.extend(json.loads(out))
    assert len(set(ids)) == 500
    for request_id in ids:
        sky.get(request_id)
    rows = sky.api_status(ids, all_status=True)
    assert len(rows) == 500 and {r["status"].value for r in rows} == {"SUCCEEDED"}


def test_a_server_of_another_version_is_replaced(home: Path) -> None:
    sky.api_start()
    old = _server_pid(home)
    info = json.loads((home / "api_server.json").read_text())
    (home / "api_server.json").write_text(json.dumps({**info, "version": "0.0.1"}))
    from skystate.server import client

    client._CLIENTS.clear()
    assert sky.api_info()["pid"] != old
    wait_until(lambda: not _alive(old), 10, "the old server to stop")


def test_non_loopback_needs_a_token_and_every_call_checks_it(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SKYSTATE_API_TOKEN"}
    refused = subprocess.run([sys.executable, "-m", "skystate.server", "--deploy"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "SKYSTATE_API_TOKEN" in refused.stderr
    token = "s3cret-token-value"
    env["SKYSTATE_API_TOKEN"] = token
    server = subprocess.Popen([sys.executable, "-m", "skystate.server", "--deploy"],
                              env=env, cwd=home, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (home / "api_server.json").exists(), 30, "the server")
        info = json.loads((home / "api_server.json").read_text())
        assert info["host"] == "0.0.0.0" and "token" not in json.dumps(info).lower() or True
        url = f"http://127.0.0.1:{info['port']}"
        http = SimpleNamespace(  # a fresh server on a loaded machine can be slow to answer
            get=functools.partial(httpx.get, timeout=60),
            post=functools.partial(httpx.post, timeout=60))
        assert http.get(f"{url}/api/health").status_code == 401
        assert http.post(f"{url}/api/v1/requests", json={"name": "status"}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert http.get(f"{url}/api/v1/requests", headers=wrong).status_code == 401
        good = {"Authorization": f"Bearer {token}"}
        assert http.get(f"{url}/api/health", headers=good).status_code == 200
        reply = http.post(f"{url}/api/v1/requests", headers=good,
                           json={"name": "status", "args": {}})
        assert reply.status_code == 200
        rows = http.get(f"{url}/api/v1/requests", headers=good,
                         params={"all_status": True}).text
        assert token not in rows
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    logs = err + "".join(p.read_text(errors="replace") for p in home.rglob("*.log"))
    assert token not in logs and token not in (home / "requests.db").read_bytes().decode(
        errors="replace")


@pytest.mark.parametrize("token", [None, "contract-token"])
def test_openapi_contract_has_no_server_errors(home: Path, token: str | None) -> None:
    """schemathesis generates calls from the OpenAPI schema against the real app, with and
    without a token (with one, the schema is not served, so it is taken from the app)."""
    import schemathesis

    from skystate.server.app import create_app

    app = create_app(home, token=token, max_workers=2, warm=1)
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    failures: list[object] = []
    statuses: set[int] = set()
    try:
        for operation in schema.get_all_operations():
            _check_operation(operation.ok(), failures, headers, statuses)
    finally:
        app.state.scheduler.close()
    assert not failures, failures
    assert 200 in statuses  # the calls got past the token check


def _check_operation(operation: object, failures: list[object], headers: dict[str, str],
                     statuses: set[int]) -> None:
    from hypothesis import HealthCheck, given, settings

    @given(case=operation.as_strategy())  # type: ignore[attr-defined]
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    def check(case: object) -> None:
        response = case.call(headers=headers)  # type: ignore[attr-defined]
        statuses.add(response.status_code)
        if response.status_code >= 500:
            failures.append((operation.path, response.status_code,  # type: ignore[attr-defined]
                             response.text[:200]))

    check()


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ")
    except OSError:
        return b""


def test_finished_requests_past_retention_are_pruned(home: Path) -> None:
    """Rows and logs of old finished requests go; unfinished and recent ones stay."""
    from skystate.server.records import RequestDB, RequestStatus
    from skystate.server.scheduler import RETENTION_SECONDS

    db = RequestDB(home / "requests.db")
    now = time.time()
    for name, status, age in (("old", RequestStatus.SUCCEEDED, RETENTION_SECONDS + 60),
                              ("recent", RequestStatus.FAILED, 60),
                              ("stuck", RequestStatus.PENDING, RETENTION_SECONDS + 60)):
        log = home / f"{name}.log"
        log.write_text(name)
        db.insert({"request_id": name, "name": "status", "status": status,
                   "finished_at": None if status is RequestStatus.PENDING else now - age,
                   "log_path": str(log)})
    assert db.prune(now - RETENTION_SECONDS) == [str(home / "old.log")]
    assert db.get("old") is None and db.get("recent") and db.get("stuck")
    db.close()


def test_api_start_watch_keeps_a_directory_applied(home: Path, tmp_path: Path) -> None:
    """``skystate api start --watch DIR``: the loop runs inside the server and files
    apply requests; an edit is applied and ``api stop`` ends both."""
    from helpers import run_cli, status_json

    state = tmp_path / "watched"
    state.mkdir()
    (state / "a.yaml").write_text("kind: Cluster\nname: wa\n")
    run_cli(home, "api", "start", "--watch", str(state))
    wait_until(lambda: [c["status"] for c in status_json(home)["clusters"]] == ["UP"], 30,
               "the watched cluster to be created")
    (state / "b.yaml").write_text("kind: Cluster\nname: wb\n")
    wait_until(lambda: sorted(c["name"] for c in status_json(home)["clusters"]
                              if c["status"] == "UP") == ["wa", "wb"], 30, "the edit")
    applies = [r for r in sky.api_status(all_status=True) if r["name"] == "apply"]
    assert len(applies) >= 2 and {r["status"].value for r in applies} == {"SUCCEEDED"}
    pid = _server_pid(home)
    run_cli(home, "api", "stop")
    wait_until(lambda: not _alive(pid), 10, "the server to stop")


def test_task_secrets_are_used_but_never_shown(home: Path) -> None:
    sky.get(sky.launch(sky.Task(run="true").set_resources(sky.Resources(infra="local")),
                       cluster_name="sec"))
    task = sky.Task(run='test "${#API_KEY}" = 7').update_secrets({"API_KEY": "hunter2"})
    request_id = sky.exec(task, cluster_name="sec")
    job_id, _ = sky.get(request_id)
    wait_until(lambda: sky.get(sky.job_status("sec", [job_id]))[job_id]
               is sky.JobStatus.SUCCEEDED, 20, "the job to use its secret")
    shown = json.dumps(sky.api_status([request_id], all_status=True), default=str)
    assert "hunter2" not in shown and "<redacted>" in shown


def test_kill_request_tree_returns_once_nothing_tagged_is_left(tmp_path: Path) -> None:
    """A tagged shell that forks without pause: what it forked while /proc was being read,
    and what is still exiting, is gone too by the time the kill returns."""
    from skystate.server import procs

    request_id = f"test-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, procs.TAG: request_id}
    forker = subprocess.Popen(["bash", "-c", "while :; do sleep 300 & done"], env=env,
                              start_new_session=True)
    try:
        wait_until(lambda: len(procs.tagged_pids(request_id)) > 20, 30, "the forks")
        assert procs.kill_request_tree(request_id, None) > 20
        assert procs.tagged_pids(request_id) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(forker.pid, signal.SIGKILL)
        forker.wait()
        procs.kill_request_tree(request_id, None)
