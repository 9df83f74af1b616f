"""Services (``sky.serve``) end to end: the API server's embedded controller launching real
local replicas (real HTTP processes: examples/serve-http/server.py) behind the real load
balancer, probing, replacing, autoscaling, updating, rolling back and resuming."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import REPO, deadline, processes_under, wait_until

import skystate as sky
from skystate.serve import ReplicaStatus as R

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "serve-http"
SEED_KEYS = {"name", "active_versions", "controller_job_id", "uptime", "status",
             "controller_port", "load_balancer_port", "endpoint", "policy",
             "requested_resources_str", "load_balancing_policy", "replica_info"}
REPLICA_KEYS = {"replica_id", "name", "status", "version", "launched_at", "handle",
                "endpoint"}


@pytest.fixture
def home(serve_home: Path) -> Path:
    return serve_home


def _task(version: int = 1, replicas: int = 2, probe: str = "/health",
          policy: dict[str, Any] | None = None, delay: int = 600) -> sky.Task:
    service: dict[str, Any] = {"readiness_probe": {"path": probe,
                                                   "initial_delay_seconds": delay}}
    if policy:
        service["replica_policy"] = policy
    else:
        service["replicas"] = replicas
    return sky.Task.from_yaml_config({
        "name": "hello", "workdir": str(EXAMPLE), "envs": {"VERSION": str(version)},
        "resources": {"infra": "local", "ports": 8080}, "service": service,
        "run": "exec python3 server.py --port 8080"})


def _status(name: str = "svc") -> dict[str, Any]:
    return sky.get(sky.serve.status([name]))[0]


def _wait(name: str, ready: int, *, version: int | None = None, timeout: float = 60,
          exact: bool = True) -> dict[str, Any]:
    """Until ``ready`` replicas (of ``version``) are READY and, with ``exact``, no other
    replica is live."""
    end = deadline(timeout)
    while True:
        record = _status(name)
        live = [r for r in record["replica_info"] if not r["status"].is_terminal()]
        good = [r for r in live if r["status"] is R.READY
                and (version is None or r["version"] == version)]
        if len(good) >= ready and (not exact or len(live) == ready):
            return record
        assert time.monotonic() < end, f"not {ready} ready: {json.dumps(record, default=str)}"
        time.sleep(0.2)


class Load:
    """``clients`` threads sending GET / to the endpoint until stopped."""

    def __init__(self, endpoint: str, clients: int, pause: float = 0.0) -> None:
        self.endpoint, self.pause = endpoint, pause
        self.codes: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        with httpx.Client(trust_env=False, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.get(self.endpoint + "/")
                    version = response.json().get("version") if response.status_code == 200 \
                        else None
                    with self._lock:
                        self.codes[response.status_code] += 1
                        if version:
                            self.versions[version] += 1
                except Exception as exc:  # noqa: BLE001 - counted as a failure
                    with self._lock:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                if self.pause:
                    time.sleep(self.pause)

    def stop(self) -> Load:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        return self

    @property
    def failures(self) -> int:
        return sum(n for code, n in self.codes.items() if code != 200) + len(self.errors)


def _nothing_left(home: Path) -> None:
    state = json.loads((home / "state.json").read_text())
    assert not (state.get("clusters") or {}), state.get("clusters")
    assert not (state.get("services") or {})
    root = home / "local"
    assert not (root.is_dir() and any(p.is_dir() for p in root.iterdir()))
    assert not (home / "serve" / "svc").exists(), list((home / "serve" / "svc").iterdir())
    assert not [p for p in processes_under(home / "serve")], "a load balancer is left"
    assert not [c for _, c in processes_under(home / "local")], "a replica is left"


def _get_ok(endpoint: str, count: int) -> Counter[int]:
    codes: Counter[int] = Counter()
    with httpx.Client(trust_env=False, timeout=30) as client:
        for _ in range(count):
            codes[client.get(endpoint + "/").status_code] += 1
    return codes


def test_seed_calls_three_replicas_2000_requests_logs_and_down_leaves_nothing(
        home: Path) -> None:
    name, endpoint = sky.get(sky.serve.up(_task(replicas=3), "svc"))
    assert name == "svc" and endpoint.startswith("http://127.0.0.1:")
    record = _wait("svc", 3)
    assert set(record) >= SEED_KEYS
    assert record["status"] is sky.ServiceStatus.READY and record["active_versions"] == [1]
    assert record["endpoint"] == endpoint and record["policy"] == "Fixed 3 replica(s)"
    assert record["load_balancing_policy"] == "least_load"
    for replica in record["replica_info"]:
        assert set(replica) >= REPLICA_KEYS and replica["handle"] is not None
        assert replica["endpoint"] != endpoint  # each replica on its own port
    assert len({r["endpoint"] for r in record["replica_info"]}) == 3
    from skystate.reconcile.store import Store

    # The ready set the load balancer reads is published one step after the replicas
    # read READY: only then has the controller converged.
    wait_until(lambda: Store(home / "state.json").service("svc")["ready_ids"] == [1, 2, 3],
               30, "the ready set to be published")
    version = Store(home / "state.json").version  # steady state writes nothing, so a
    time.sleep(2.0)  # saved plan (skystate apply) is not made stale by the controller
    assert Store(home / "state.json").version == version
    load = Load(endpoint, 8)
    while sum(load.codes.values()) + len(load.errors) < 2000:
        time.sleep(0.05)
    load.stop()
    assert load.failures == 0, (load.codes, load.errors[:3])
    out = io.StringIO()
    sky.serve.tail_logs("svc", target=sky.serve.ServiceComponent.CONTROLLER, follow=False,
                        output_stream=out)
    assert "launch replica 1" in out.getvalue()
    out = io.StringIO()
    sky.serve.tail_logs("svc", target="replica", follow=False, replica_id=2,
                        output_stream=out)
    assert "serving on 127.0.0.1:" in out.getvalue() and "version 1" in out.getvalue()
    out = io.StringIO()
    sky.serve.tail_logs("svc", target="load_balancer", follow=False, output_stream=out)
    with pytest.raises(ValueError, match="replica_id"):
        sky.serve.tail_logs("svc", target="replica", follow=False)
    with pytest.raises(ValueError, match="already exists"):
        sky.get(sky.serve.up(_task(), "svc"))
    with pytest.raises(ValueError, match="service section"):  # the seed's Request Raises
        sky.get(sky.serve.up(sky.Task(run="true"), "other"))
    with pytest.raises(ValueError, match="names or all"):
        sky.get(sky.serve.down(None))
    with pytest.raises(ValueError, match="invalid"):
        sky.get(sky.serve.up(_task(), "Bad_Name"))
    following = io.StringIO()
    follower = threading.Thread(target=sky.serve.tail_logs, args=("svc", "controller"),
                                kwargs={"output_stream": following}, daemon=True)
    follower.start()
    assert sky.get(sky.serve.down(["svc"])) is None
    follower.join(60)
    assert not follower.is_alive(), "following the controller log did not end at down"
    assert sky.get(sky.serve.status(None)) == []
    _nothing_left(home)
    with pytest.raises(httpx.ConnectError):
        httpx.get(endpoint, trust_env=False, timeout=5)


def _program_pid(port: int) -> int:
    with os.scandir("/proc") as entries:
        pids = [e.name for e in entries if e.name.isdigit()]
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"server.py" in command and str(port).encode() in command:
            return int(pid)
    raise AssertionError(f"no replica program on port {port}")


def test_a_killed_replica_under_20_clients_fails_no_request_and_is_replaced(
        home: Path) -> None:
    _, endpoint = sky.get(sky.serve.up(_task(replicas=3), "svc"))
    before = _wait("svc", 3)
    victim = before["replica_info"][0]
    load = Load(endpoint, 20)
    time.sleep(1.0)
    os.kill(_program_pid(int(victim["endpoint"].rsplit(":", 1)[1])), signal.SIGKILL)
    end = deadline(60)
    while True:
        record = _status()
        ids = {r["replica_id"] for r in record["replica_info"] if r["status"] is R.READY}
        if len(ids) == 3 and victim["replica_id"] not in ids:
            break
        assert time.monotonic() < end, json.dumps(record, default=str)
        time.sleep(0.2)
    time.sleep(1.0)
    load.stop()
    assert sum(load.codes.values()) > 20
    assert load.failures == 0, (load.codes, load.errors[:3])
    failed = next(r for r in record["replica_info"] if r["replica_id"] == victim["replica_id"])
    assert failed["status"] is R.FAILED and "exited" in failed["failure_reason"]
    sky.get(sky.serve.down("svc"))
    _nothing_left(home)


def test_autoscaler_scales_up_above_target_qps_after_the_delay_and_down_when_idle(
        home: Path) -> None:
    policy = {"min_replicas": 1, "max_replicas": 3, "target_qps_per_replica": 5,
              "upscale_delay_seconds": 30, "downscale_delay_seconds": 60}
    _, endpoint = sky.get(sky.serve.up(_task(policy=policy), "svc"))
    _wait("svc", 1)
    assert _status()["policy"].startswith("Autoscaling from 1 to 3")
    load = Load(endpoint, 4, pause=0.05)  # far above 5 qps per replica
    try:
        record = _wait("svc", 2, timeout=90, exact=False)
        assert record["target_replicas"] >= 2
    finally:
        load.stop()
    assert load.failures == 0, (load.codes, load.errors[:3])
    record = _wait("svc", 1, timeout=120)  # idle: back to min_replicas
    assert record["target_replicas"] == 1
    sky.get(sky.serve.down("svc"))
    _nothing_left(home)


@pytest.mark.parametrize("mode", [sky.serve.UpdateMode.ROLLING,
                                  sky.serve.UpdateMode.BLUE_GREEN])
def test_update_under_constant_load_fails_no_request_and_moves_1_to_2(
        home: Path, mode: Any) -> None:
    _, endpoint = sky.get(sky.serve.up(_task(1), "svc"))
    _wait("svc", 2, version=1)
    load = Load(endpoint, 6, pause=0.01)
    time.sleep(1.0)
    sky.get(sky.serve.update(_task(2), "svc", mode=mode))
    record = _wait("svc", 2, version=2, timeout=120)
    time.sleep(1.0)
    load.stop()
    assert load.failures == 0, (load.codes, load.errors[:3])
    assert load.versions["1"] > 0 and load.versions["2"] > 0, load.versions
    assert record["active_versions"] == [2] and record["status"] is sky.ServiceStatus.READY
    assert {json.loads(httpx.get(endpoint, trust_env=False).text)["version"]
            for _ in range(10)} == {"2"}
    log = io.StringIO()
    sky.serve.tail_logs("svc", "controller", follow=False, output_stream=log)
    word = "blue-green" if mode is sky.serve.UpdateMode.BLUE_GREEN else "rolling"
    assert word in log.getvalue()
    sky.get(sky.serve.down("svc"))
    _nothing_left(home)


def test_an_update_that_never_gets_ready_rolls_back_and_stays_ready_on_v1(
        home: Path) -> None:
    _, endpoint = sky.get(sky.serve.up(_task(1), "svc"))
    _wait("svc", 2, version=1)
    load = Load(endpoint, 4, pause=0.02)
    sky.get(sky.serve.update(_task(2, probe="/never", delay=60), "svc"))
    end = deadline(90)
    while "rolled back" not in str(_status().get("reason")):
        assert time.monotonic() < end, json.dumps(_status(), default=str)
        time.sleep(0.2)
    record = _wait("svc", 2, version=1)
    load.stop()
    assert load.failures == 0, (load.codes, load.errors[:3])
    assert set(load.versions) == {"1"}
    assert record["status"] is sky.ServiceStatus.READY and record["active_versions"] == [1]
    assert any(r["status"] is R.FAILED_INITIAL_DELAY and r["version"] == 2
               for r in record["replica_info"])
    sky.get(sky.serve.down("svc"))
    _nothing_left(home)


def _server_pid(home: Path) -> int:
    return int(json.loads((home / "api_server.json").read_text())["pid"])


def test_sigkill_of_the_api_server_keeps_serving_and_the_controller_resumes(
        home: Path) -> None:
    _, endpoint = sky.get(sky.serve.up(_task(replicas=2), "svc"))
    before = _wait("svc", 2)
    old = _server_pid(home)
    os.kill(old, signal.SIGKILL)
    end = deadline(30)
    while Path(f"/proc/{old}").exists() and time.monotonic() < end:
        time.sleep(0.05)
    assert _get_ok(endpoint, 200) == Counter({200: 200})  # no API server: still serving
    victim = before["replica_info"][0]
    os.kill(_program_pid(int(victim["endpoint"].rsplit(":", 1)[1])), signal.SIGKILL)
    end = deadline(90)  # the first call starts a new server; its controller resumes
    while True:
        record = _status()
        ids = sorted(r["replica_id"] for r in record["replica_info"]
                     if r["status"] is R.READY)
        if len(ids) == 2 and victim["replica_id"] not in ids:
            break
        assert time.monotonic() < end, json.dumps(record, default=str)
        time.sleep(0.2)
    assert _server_pid(home) != old
    assert max(ids) == 3, "a replica was launched twice after the restart"
    assert record["load_balancer_port"] == before["load_balancer_port"]
    assert _get_ok(endpoint, 100) == Counter({200: 100})
    sky.get(sky.serve.down("svc"))
    _nothing_left(home)
