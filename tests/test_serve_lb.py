"""The service load balancer as a real process in front of real HTTP replicas
(tests/lb_replica.py), driven through skystate.serve.lb_process."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import lb_replicas
import pytest
from helpers import deadline
from lb_replicas import Replicas

from skystate.exceptions import LoadBalancerError
from skystate.runtime.procs import is_zombie_or_gone
from skystate.serve.lb_process import (
    ReadyReplica,
    load_balancer_running,
    read_stats,
    start_load_balancer,
    stop_load_balancer,
    write_ready_set,
)

service = lb_replicas.service  # the fixtures
replicas = lb_replicas.replicas


def _lb(service: Path, policy: str, ready: list[ReadyReplica],
        generation: int = 1) -> str:
    write_ready_set(service, policy, ready, generation)
    _, port = start_load_balancer(service)
    return f"http://127.0.0.1:{port}"


def _which(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    return int(response.text.split()[1])


def _wait_for(check: Callable[[], bool], seconds: float = 10) -> None:
    end = deadline(seconds)
    while not check():
        assert time.monotonic() < end, "the event did not happen in time"
        time.sleep(0.02)


def test_round_robin_spreads_2000_requests_evenly(service: Path, replicas: Replicas) -> None:
    url = _lb(service, "round_robin", [replicas.start(i) for i in (1, 2, 3)])
    counts: collections.Counter[int] = collections.Counter()
    began = time.time()
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(2000):
            counts[_which(client.get("/id"))] += 1
    assert sum(counts.values()) == 2000
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    _wait_for(lambda: (s := read_stats(service)) is not None and s.requests_total == 2000)
    stats = read_stats(service)
    assert stats is not None
    assert {k: v.requests for k, v in stats.per_replica.items()} == {
        str(k): v for k, v in counts.items()}
    # ``recent`` is the last minute, per second: all 2000 if the run took less
    assert all(second > stats.updated_at - 61 for second, _ in stats.recent)
    assert 0 < sum(n for _, n in stats.recent) <= 2000
    if time.time() - began < 50:
        assert sum(n for _, n in stats.recent) == 2000


def test_least_load_avoids_a_busy_replica(service: Path, replicas: Replicas,
                                          tmp_path: Path) -> None:
    url = _lb(service, "least_load", [replicas.start(i) for i in (1, 2, 3)])
    gate = tmp_path / "gate"
    with httpx.Client(base_url=url, timeout=60) as holder, \
            holder.stream("GET", "/stream", params={"gate": str(gate), "chunks": 1}) as held:
        busy, parts = int(held.headers["x-replica"]), held.iter_bytes()
        assert next(parts).startswith(b"first")  # in flight until the gate opens
        with httpx.Client(base_url=url, timeout=60) as client:
            counts = collections.Counter(_which(client.get("/id")) for _ in range(100))
        gate.touch()
        b"".join(parts)
    assert counts[busy] == 0, counts  # round robin would have sent it 33
    assert sorted(counts.values()) == [50, 50], counts  # the two idle ones, in turn
    with httpx.Client(base_url=url, timeout=60) as client:
        assert {_which(client.get("/id")) for _ in range(30)} == {1, 2, 3}


def test_a_replica_that_breaks_off_before_its_body_costs_a_retry_not_the_request(
        service: Path, replicas: Replicas) -> None:
    """Replica 2 sends its headers (``Content-Length: 9``) and hangs up before its body."""
    url = _lb(service, "round_robin", [replicas.start(2, hang_up=True), replicas.start(1)])
    with httpx.Client(base_url=url, timeout=30) as client:
        answered = [_which(client.get("/id")) for _ in range(20)]
    assert answered == [1] * 20  # every one answered whole, by the good replica
    _wait_for(lambda: (s := read_stats(service)) is not None and
              any(f.replica_id == 2 for f in s.failed))  # the broken one was tried


def test_killed_replica_costs_no_client_request(service: Path, replicas: Replicas) -> None:
    url = _lb(service, "round_robin", [replicas.start(i) for i in (1, 2, 3)])
    stop = threading.Event()
    results: list[tuple[int, int]] = []  # (status, replica)
    errors: list[str] = []

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                try:
                    response = client.get("/id")
                    results.append((response.status_code, _which(response)
                                    if response.status_code == 200 else 0))
                except Exception as exc:  # a failed client request: what the test counts
                    errors.append(repr(exc))

    threads = [threading.Thread(target=client_loop) for _ in range(20)]
    for thread in threads:
        thread.start()
    _wait_for(lambda: len(results) >= 300)
    replicas.kill(2)
    killed_at = len(results)
    _wait_for(lambda: len(results) >= killed_at + 600, 30)
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(status == 200 for status, _ in results), collections.Counter(results)
    # after the retries of the requests in flight at the kill, replica 2 gets nothing
    assert all(rid != 2 for _, rid in results[killed_at + 100:])
    stats = read_stats(service)
    _wait_for(lambda: (s := read_stats(service)) is not None and
              any(f.replica_id == 2 for f in s.failed))
    stats = read_stats(service)
    assert stats is not None and stats.per_replica["2"].failures >= 1


def test_ready_set_changes_are_followed(service: Path, replicas: Replicas) -> None:
    one, two, three = (replicas.start(i) for i in (1, 2, 3))
    url = _lb(service, "round_robin", [one, two])
    with httpx.Client(base_url=url, timeout=30) as client:
        assert {_which(client.get("/id")) for _ in range(20)} == {1, 2}
        write_ready_set(service, "least_load", [two, three], generation=2)
        _wait_for(lambda: _which(client.get("/id")) == 3)
        seen = collections.Counter(_which(client.get("/id")) for _ in range(100))
    assert seen[1] == 0 and seen[3] > 0 and seen[2] > 0, seen


def test_no_replica_is_503(service: Path, replicas: Replicas) -> None:
    _, port = start_load_balancer(service)  # no ready_set.json at all
    url = f"http://127.0.0.1:{port}"
    response = httpx.get(url + "/id", timeout=30)
    assert response.status_code == 503 and "no ready replica" in response.text
    write_ready_set(service, "round_robin", [replicas.start(1)], generation=1)
    _wait_for(lambda: httpx.get(url + "/id", timeout=30).status_code == 200)
    write_ready_set(service, "round_robin", [], generation=2)
    _wait_for(lambda: httpx.get(url + "/id", timeout=30).status_code == 503)


def test_all_replicas_down_is_503_for_the_client(service: Path, replicas: Replicas) -> None:
    url = _lb(service, "round_robin", [replicas.start(1), replicas.start(2)])
    replicas.kill(1)
    replicas.kill(2)
    response = httpx.get(url + "/id", timeout=30)
    assert response.status_code == 503
    assert "no replica could take the request" in response.text
    assert "Cannot connect" in response.text


def test_responses_and_request_bodies_are_streamed(service: Path, replicas: Replicas,
                                                   tmp_path: Path) -> None:
    url = _lb(service, "round_robin", [replicas.start(1)])
    gate, seen = tmp_path / "gate", tmp_path / "seen"
    with httpx.Client(base_url=url, timeout=60) as client:
        with client.stream("GET", "/stream", params={"gate": str(gate), "chunks": 64,
                                                      "size": 65536}) as response:
            parts = response.iter_bytes()
            # the replica sends the rest only after the gate: a buffering proxy hangs here
            assert next(parts).startswith(b"first\n")
            gate.touch()
            rest = b"".join(parts)
        assert len(rest) + len(b"first\n") == 6 + 64 * 65536

        def upload() -> Iterator[bytes]:
            yield b"x" * 1000
            _wait_for(seen.exists)  # the replica has read the start before the end is sent
            yield b"y" * 500_000

        response = client.post("/upload", params={"seen": str(seen), "first": 1000},
                               content=upload())
        assert response.status_code == 200 and response.text.split()[0] == "501000"


def test_headers_pass_through_and_hop_by_hop_ones_are_dropped(service: Path,
                                                              replicas: Replicas) -> None:
    url = _lb(service, "round_robin", [replicas.start(1)])
    response = httpx.get(url + "/headers", timeout=30, headers={
        "X-Custom": "kept", "Connection": "keep-alive, X-Private-Hop", "X-Private-Hop": "1",
        "Proxy-Authorization": "Basic c2VjcmV0", "X-Forwarded-For": "10.1.2.3"})
    sent = dict(response.json())
    assert sent["x-custom"] == "kept"
    assert "x-private-hop" not in sent and "proxy-authorization" not in sent
    assert sent["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-host"] == url.removeprefix("http://")
    assert response.headers["x-replica"] == "1"


def test_load_balancer_outlives_the_process_that_started_it(service: Path,
                                                           replicas: Replicas) -> None:
    write_ready_set(service, "round_robin", [replicas.start(1)], generation=1)
    starter = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from skystate.serve.lb_process import start_load_balancer
        print(*start_load_balancer({str(service)!r}), flush=True)
        time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True, env={**os.environ})
    assert starter.stdout is not None
    pid, port = map(int, starter.stdout.readline().split())
    starter.stdout.close()
    starter.send_signal(signal.SIGKILL)
    starter.wait()
    time.sleep(0.5)
    assert not is_zombie_or_gone(pid)
    assert load_balancer_running(service) == (pid, port)
    response = httpx.get(f"http://127.0.0.1:{port}/id", timeout=30)
    assert _which(response) == 1
    assert start_load_balancer(service) == (pid, port)  # idempotent: the same one


def test_stop_finishes_requests_in_flight_then_frees_everything(service: Path,
                                                               replicas: Replicas) -> None:
    url = _lb(service, "round_robin", [replicas.start(1)])
    running = load_balancer_running(service)
    assert running is not None
    pid, port = running
    answer: list[httpx.Response] = []
    slow = threading.Thread(target=lambda: answer.append(
        httpx.get(url + "/slow", params={"s": 1.0}, timeout=60)))
    slow.start()
    _wait_for(lambda: (s := read_stats(service)) is not None and s.requests_total >= 1)
    stop_load_balancer(service)
    slow.join()
    assert answer and answer[0].status_code == 200
    assert is_zombie_or_gone(pid)
    assert load_balancer_running(service) is None
    assert not (service / "lb.pid").exists() and not (service / "lb.port").exists()
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))  # nothing listens there any more
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # its TIME_WAITs stay
        sock.bind(("127.0.0.1", port))  # the port is free again
    stop_load_balancer(service)  # idempotent


def test_start_on_a_busy_port_says_why(service: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(LoadBalancerError, match="cannot listen"):
            start_load_balancer(service, sock.getsockname()[1])
    assert load_balancer_running(service) is None


def test_service_files_are_owner_only(service: Path, replicas: Replicas) -> None:
    _lb(service, "round_robin", [replicas.start(1)])
    _wait_for(lambda: (service / "lb_stats.json").exists())
    for name in ("ready_set.json", "lb.pid", "lb.port", "lb.log", "lb_stats.json"):
        assert (service / name).stat().st_mode & 0o077 == 0, name
