"""Hardening, on a real API server: whose requests ``api_cancel`` may cancel, the request-ID
prefix rules, other users' clusters (``ClusterOwnerIdentityMismatchError``) and the request
body limit (413 before the body is read and before the token is checked).

Two users are simulated the way the client names its user: ``SKYSTATE_USER``.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import deadline, kill_everything_under, run_cli, wait_until

import skystate as sky
from skystate import exceptions
from skystate.server.client import stop_server

pytestmark = pytest.mark.slow

FIFTY_MB = 50 * 1024 * 1024
TOKEN = "t0ken-for-body-tests"
AUTH = b"Authorization: Bearer %s\r\n" % TOKEN.encode()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SKYSTATE_HOME", str(home))
    monkeypatch.setenv("SKYSTATE_USER", "alice")
    for name in ("SKYSTATE_API_TOKEN", "SKYSTATE_API_SERVER_URL",
                 "SKYSTATE_API_MAX_BODY_BYTES"):
        monkeypatch.delenv(name, raising=False)
    yield home
    stop_server(home)
    kill_everything_under(tmp_path)


def _local(run: str | None = None) -> sky.Task:
    return sky.Task(run=run).set_resources(sky.Resources(infra="local"))


def _status(request_id: str) -> str:
    return sky.api_status([request_id], all_status=True)[0]["status"].value


def _long_request(cluster: str) -> str:
    """A request that keeps running: following the log of a job that sleeps."""
    from skystate.server.client import client

    job_id, _ = sky.get(sky.launch(_local("sleep 300"), cluster_name=cluster))
    request_id = client().submit("tail_logs", {"cluster_name": cluster, "job_id": job_id,
                                               "follow": True})
    wait_until(lambda: _status(request_id) == "RUNNING", 30, "the request to run")
    return request_id


# --- api_cancel: whose requests, which IDs --------------------------------------------


def test_cancel_with_empty_short_or_ambiguous_ids_cancels_nothing(home: Path) -> None:
    mine = _long_request("c-prefix")
    url = sky.api_info()["url"]
    for ids in ([""], ["a"], [mine[:7]], ["%%%%%%%"], [mine, ""]):
        reply = httpx.post(f"{url}/api/v1/cancel",
                           json={"request_ids": ids, "user_name": "alice"})
        assert reply.status_code == 422, (ids, reply.text)
        assert "too short" in reply.json()["detail"]
    with pytest.raises(ValueError, match="too short"):
        sky.api_cancel("", silent=True)
    with pytest.raises(ValueError, match="too short"):
        sky.api_cancel(mine[:4], silent=True)
    assert httpx.get(f"{url}/api/v1/requests", params={"prefix": ""}).status_code == 422
    assert httpx.get(f"{url}/api/v1/requests", params={"prefix": mine[:7]}).status_code == 422
    # an explicit empty list names no request: nothing is cancelled
    reply = httpx.post(f"{url}/api/v1/cancel", json={"request_ids": [], "user_name": "alice"})
    assert reply.status_code == 200 and sky.get(reply.json()["request_id"]) == []
    # an 8-character prefix that no request has: nothing to cancel (the SDK says so)
    reply = httpx.post(f"{url}/api/v1/cancel",
                       json={"request_ids": ["zzzzzzzz"], "user_name": "alice"})
    assert reply.status_code == 200 and sky.get(reply.json()["request_id"]) == []
    with pytest.raises(ValueError, match="no request"):
        sky.api_cancel("zzzzzzzz", silent=True)
    assert _status(mine) == "RUNNING"
    assert sky.get(sky.api_cancel(mine[:8], silent=True)) == [mine]  # 8 characters suffice
    assert _status(mine) == "CANCELLED"


def test_another_users_requests_are_cancelled_only_with_all_users(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alices = _long_request("c-alice")
    monkeypatch.setenv("SKYSTATE_USER", "bob")
    bobs = _long_request("c-bob")
    url = sky.api_info()["url"]
    with pytest.raises(exceptions.ApiServerError, match="403.*belongs to user 'alice'"):
        sky.api_cancel(alices, silent=True)
    with pytest.raises(exceptions.ApiServerError, match="403"):
        sky.api_cancel([bobs, alices[:8]], silent=True)  # one refused: none cancelled
    reply = httpx.post(f"{url}/api/v1/cancel",
                       json={"request_ids": [alices[:8]], "user_name": "bob"})
    assert reply.status_code == 403 and "nothing was cancelled" in reply.json()["detail"]
    # a client that names no user is "anonymous", never the server's own user
    reply = httpx.post(f"{url}/api/v1/cancel", json={"request_ids": [alices]})
    assert reply.status_code == 403 and "'anonymous'" in reply.json()["detail"]
    assert _status(alices) == _status(bobs) == "RUNNING"
    assert sky.get(sky.api_cancel(silent=True)) == [bobs]  # no IDs: all of bob's own
    assert _status(alices) == "RUNNING"
    assert sky.get(sky.api_cancel(alices, all_users=True, silent=True)) == [alices]
    assert _status(alices) == "CANCELLED"
    [row] = [r for r in sky.api_status(all_status=True) if r["name"] == "api_cancel"][:1]
    assert row["user_name"] == "bob"  # the cancel itself is recorded as bob's


# --- clusters: only their owner changes them ------------------------------------------


def test_a_user_cannot_change_another_users_cluster(home: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    job_id, _ = sky.get(sky.launch(_local("sleep 120"), cluster_name="alices"))
    monkeypatch.setenv("SKYSTATE_USER", "bob")
    attempts = {
        "stop": lambda: sky.stop("alices"),
        "start": lambda: sky.start("alices", force=True),
        "down": lambda: sky.down("alices"),
        "down purge": lambda: sky.down("alices", purge=True),
        "exec": lambda: sky.exec(_local("echo bob"), cluster_name="alices"),
        "launch onto": lambda: sky.launch(_local("echo bob"), cluster_name="alices"),
        "autostop": lambda: sky.autostop("alices", 1, down=True),
        "cancel": lambda: sky.cancel("alices", all_users=True),
        "cancel ids": lambda: sky.cancel("alices", job_ids=[job_id]),
    }
    for _what, call in attempts.items():  # (_what: shown by pytest --showlocals)
        with pytest.raises(exceptions.ClusterOwnerIdentityMismatchError,
                           match="owned by user 'alice'.*you \\('bob'\\)"):
            sky.get(call())
    refused = run_cli(home, "down", "alices", check=1)  # the CLI says it once, no traceback
    assert "owned by user 'alice'" in refused.stderr and "Traceback" not in refused.stderr
    assert sky.get(sky.status()) == []  # bob's own clusters: none
    [record] = sky.get(sky.status(all_users=True))
    assert record["user_name"] == "alice" and record["status"] is sky.ClusterStatus.UP
    assert record["autostop"] == -1
    # bob may still read it (status, queue) and nothing of his ran on it
    assert [j["job_id"] for j in sky.get(sky.queue("alices", all_users=True))] == [job_id]
    assert sky.get(sky.job_status("alices", [job_id]))[job_id] is sky.JobStatus.RUNNING
    monkeypatch.setenv("SKYSTATE_USER", "alice")
    sky.get(sky.cancel("alices", all=True))
    sky.get(sky.down("alices"))
    assert sky.get(sky.status(all_users=True)) == []


def test_state_directory_clusters_belong_to_their_project_not_a_user(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever may apply a state directory may act on its clusters (as before)."""
    state = tmp_path / "team"
    state.mkdir()
    (state / "skystate.yaml").write_text("kind: Project\nname: team\n")
    (state / "c.yaml").write_text("kind: Cluster\nname: shared\nresources: {infra: local}\n")
    sky.get(sky.apply(state))
    [record] = sky.get(sky.status(all_users=True))
    assert record["metadata"] == {"owner": "team", "managed_by": "state"}
    assert record["user_name"] == "alice"  # who applied it
    monkeypatch.setenv("SKYSTATE_USER", "bob")
    job_id, _ = sky.get(sky.exec(_local("echo from-bob"), cluster_name="shared"))
    assert job_id is not None
    sky.get(sky.stop("shared"))
    assert sky.get(sky.status(all_users=True))[0]["status"] is sky.ClusterStatus.STOPPED


# --- request bodies: a size limit before the body and before the token ---------------


@pytest.fixture
def token_server(home: Path) -> Iterator[tuple[int, int]]:
    """A loopback server with a token and the default body limit: (port, pid)."""
    env = {**os.environ, "SKYSTATE_API_TOKEN": TOKEN}
    server = subprocess.Popen([sys.executable, "-m", "skystate.server", "--port", "0"],
                              env=env, cwd=home, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: (home / "api_server.json").exists(), 60, "the server")
        info = json.loads((home / "api_server.json").read_text())
        yield int(info["port"]), server.pid
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(x for x in status if x.startswith("VmRSS:"))
    return int(line.split()[1])


def _settled_rss_kb(port: int, pid: int) -> int:
    """The server's RSS once its lazy imports are done (a request served, the embedded
    controllers' first steps taken): what a body could add is measured from there."""
    good = {"Authorization": f"Bearer {TOKEN}"}
    httpx.post(f"http://127.0.0.1:{port}/api/v1/requests", headers=good, timeout=60,
               json={"name": "status", "args": {}, "user_name": "alice"})
    last = _rss_kb(pid)
    stop = time.monotonic() + deadline(10)
    while time.monotonic() < stop:
        time.sleep(1)
        now = _rss_kb(pid)
        if abs(now - last) < 1024:
            return now
        last = now
    return last


def _send_until_answered(port: int, head: bytes, chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send ``head`` then the chunks, stopping as soon as the server answers; the answer and
    how many body bytes had been sent by then."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        for chunk in chunks:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        else:
            select.select([sock], [], [], 60)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    return answer, sent


def _body(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


def _chunked(total: int) -> Iterator[bytes]:
    for piece in _body(total):
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


@pytest.mark.alone  # it measures the server's memory growth
def test_an_oversized_body_is_refused_413_before_it_is_read_and_before_auth(
        token_server: tuple[int, int]) -> None:
    port, pid = token_server
    rss_before = _settled_rss_kb(port, pid)
    start = b"POST /api/v1/requests HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    declared = b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % FIFTY_MB
    chunked = b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer, sent = _send_until_answered(port, start + declared, _body(FIFTY_MB))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]  # not 401: no token was sent
    assert sent < FIFTY_MB // 2, sent  # answered long before the body was all sent
    answer, sent = _send_until_answered(port, start + AUTH + declared, _body(FIFTY_MB))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < FIFTY_MB // 2, sent
    # no Content-Length: an unauthenticated body is not read at all, an authenticated one
    # only up to the limit
    answer, sent = _send_until_answered(port, start + chunked, _chunked(FIFTY_MB))
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert sent < FIFTY_MB // 2, sent
    answer, sent = _send_until_answered(port, start + AUTH + chunked, _chunked(FIFTY_MB))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < FIFTY_MB, sent  # aborted while the body was still coming
    grown_mb = (_rss_kb(pid) - rss_before) / 1024
    assert grown_mb < 45, grown_mb  # never 50 MB taken in (at most the 32 MiB limit)
    # the server still answers, and still wants its token
    url = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{url}/api/health").status_code == 401
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{url}/api/health", headers=good).status_code == 200


def test_a_large_body_under_the_limit_reaches_the_app(token_server: tuple[int, int]) -> None:
    """20 MB (more than a saved plan of 10,000 resources) passes the limit: the arguments'
    validation answers it."""
    port, _ = token_server
    url = f"http://127.0.0.1:{port}"
    big = {"name": "status", "args": {"no_such_argument": "x" * (20 * 1024 * 1024)}}
    good = {"Authorization": f"Bearer {TOKEN}"}
    reply = httpx.post(f"{url}/api/v1/requests", json=big, headers=good, timeout=120)
    assert reply.status_code == 422 and "no_such_argument" in reply.text


def test_the_body_limit_is_configurable(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYSTATE_API_MAX_BODY_BYTES", "4096")
    url = sky.api_info()["url"]
    small = {"name": "status", "args": {}, "user_name": "alice"}
    assert httpx.post(f"{url}/api/v1/requests", json=small).status_code == 200
    big = {**small, "args": {"cluster_names": ["x" * 5000]}}
    reply = httpx.post(f"{url}/api/v1/requests", json=big)
    assert reply.status_code == 413 and "4096" in reply.json()["detail"]

    def streamed() -> Iterator[bytes]:
        yield json.dumps(big).encode()

    reply = httpx.post(f"{url}/api/v1/requests", content=streamed(),
                       headers={"content-type": "application/json"})
    assert reply.status_code == 413  # no Content-Length: counted as it streams
    with pytest.raises(exceptions.ApiServerError, match="413"):
        sky.status(["x" * 5000])
    assert sky.get(sky.status()) == []  # the server survived all of it
