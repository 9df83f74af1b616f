"""The load balancer re-admits a replica it took out once connections to it succeed again
(never while they fail), and ``instance_aware_least_load`` spreads by capacity: real
replicas (tests/lb_replica.py) behind a real load-balancer process."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import lb_replicas
import pytest
from helpers import deadline
from lb_replicas import Replicas

from skystate.serve.lb_process import (
    ReadyReplica,
    read_stats,
    start_load_balancer,
    write_ready_set,
)

service = lb_replicas.service  # the fixtures
replicas = lb_replicas.replicas


def _which(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    return int(response.text.split()[1])


def _wait_for(check: Callable[[], bool], seconds: float = 30) -> None:
    end = deadline(seconds)
    while not check():
        assert time.monotonic() < end, "the event did not happen in time"
        time.sleep(0.05)


def _sent(service: Path, replica_id: int, total: int) -> tuple[int, int]:
    """(requests, failures) the stats show for the replica once they count ``total``."""
    _wait_for(lambda: (s := read_stats(service)) is not None and s.requests_total >= total)
    stats = read_stats(service)
    assert stats is not None
    counts = stats.per_replica.get(str(replica_id))
    return (counts.requests, counts.failures) if counts else (0, 0)


def test_a_replica_that_comes_back_gets_traffic_again_and_a_dead_one_none(
        service: Path, replicas: Replicas) -> None:
    ready = [replicas.start(i) for i in (1, 2, 3)]
    write_ready_set(service, "round_robin", ready, generation=1)
    _, port = start_load_balancer(service)
    ready_set = (service / "ready_set.json").read_bytes()
    total = 0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        def send(count: int) -> collections.Counter[int]:
            nonlocal total
            total += count
            return collections.Counter(_which(client.get("/id")) for _ in range(count))

        assert set(send(30)) == {1, 2, 3}
        back_port = replicas.port(2)
        replicas.kill(2)
        replicas.kill(3)
        assert set(send(30)) == {1}  # both taken out at their first failed connection
        assert _sent(service, 2, total)[1] >= 1 and _sent(service, 3, total)[1] >= 1
        replicas.start(2, port=back_port)  # back where it was; the controller says nothing
        _wait_for(lambda: 2 in send(5))
        seen = send(200)
        assert seen[2] >= 80 and seen[3] == 0, seen  # 2 is in turn again, 3 still out
        dead_before = _sent(service, 3, total)
        # several of the dead one's check backoffs go by (0.5, 1, 2, 4 s): it stays out
        end = time.monotonic() + 8
        while time.monotonic() < end:
            assert 3 not in send(10)
        assert _sent(service, 3, total) == dead_before  # not one request tried on it
    assert (service / "ready_set.json").read_bytes() == ready_set  # no new generation


def _spread(url: str, clients: int, each: int) -> collections.Counter[int]:
    counts: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()
    errors: list[str] = []

    def run() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(each):
                try:
                    rid = _which(client.get("/id"))
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(repr(exc))
                    continue
                with lock:
                    counts[rid] += 1

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return counts


def test_instance_aware_least_load_spreads_by_accelerator_qps(service: Path,
                                                              replicas: Replicas) -> None:
    # each answer takes 0.1 s, so requests pile up in flight and the weights decide
    fast = replicas.start(1, delay=0.1, accelerator="A100:1")
    slow = replicas.start(2, delay=0.1, accelerator="T4")
    weights = {"A100:1": 3.0, "T4": 1.0}
    write_ready_set(service, "instance_aware_least_load", [fast, slow], 1, weights)
    _, port = start_load_balancer(service)
    url = f"http://127.0.0.1:{port}"
    weighted = _spread(url, clients=8, each=20)
    assert sum(weighted.values()) == 160
    assert 2.0 <= weighted[1] / weighted[2] <= 4.5, weighted  # about 3:1 (6 and 2 in flight)
    write_ready_set(service, "least_load", [fast, slow], 2, weights)
    _wait_for(lambda: "ready set generation 2" in (service / "lb.log").read_text())
    plain = _spread(url, clients=8, each=20)
    assert 0.6 <= plain[1] / plain[2] <= 1.6, plain  # unweighted: about even


def test_an_unknown_accelerator_counts_as_one_qps(service: Path, replicas: Replicas) -> None:
    known = replicas.start(1, delay=0.1, accelerator="H100")
    unknown = ReadyReplica(**{**replicas.start(2, delay=0.1).model_dump(),
                              "accelerator": "V100"})
    write_ready_set(service, "instance_aware_least_load", [known, unknown], 1,
                    {"H100": 1.0, "A100": 4.0})
    _, port = start_load_balancer(service)
    counts = _spread(f"http://127.0.0.1:{port}", clients=6, each=20)
    assert 0.6 <= counts[1] / counts[2] <= 1.6, counts  # both weigh 1


@pytest.mark.slow
def test_the_controller_writes_each_replicas_accelerator_and_the_qps_weights(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from helpers import REPO

    import skystate as sky

    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(
        "providers:\n  local:\n    accelerators: {A100: 2}\n")
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "30")
    task = sky.Task.from_yaml_config({
        "name": "hello", "workdir": str(REPO / "examples" / "serve-http"),
        "resources": {"infra": "local", "ports": 8080, "accelerators": "A100:1"},
        "service": {"readiness_probe": {"path": "/health", "initial_delay_seconds": 600},
                    "load_balancing_policy": "instance_aware_least_load",
                    "replica_policy": {"min_replicas": 2, "max_replicas": 2,
                                       "target_qps_per_replica": {"A100": 3, "T4": 1}}},
        "run": "exec python3 server.py --port 8080"})
    sky.get(sky.serve.up(task, "svc"))
    try:
        path = home / "serve" / "svc" / "ready_set.json"

        def both_ready() -> bool:
            try:
                return len(json.loads(path.read_text())["replicas"]) == 2
            except (OSError, ValueError, KeyError):
                return False

        _wait_for(both_ready, 90)
        ready = json.loads(path.read_text())
        assert ready["policy"] == "instance_aware_least_load"
        assert ready["target_qps"] == {"A100": 3.0, "T4": 1.0}
        assert [r["accelerator"] for r in ready["replicas"]] == ["A100:1", "A100:1"]
    finally:
        sky.get(sky.serve.down(["svc"]))
