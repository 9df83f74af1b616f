"""Real replicas (tests/lb_replica.py processes) for the load-balancer tests, and their
fixtures: ``service`` (a service folder whose load balancer is stopped at the end) and
``replicas``. A test module uses them with ``pytest_plugins = ["lb_replicas"]``."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import deadline

from skystate.serve.lb_process import ReadyReplica, stop_load_balancer

REPLICA = Path(__file__).resolve().parent / "lb_replica.py"


class Replicas:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.urls: dict[int, str] = {}

    def start(self, replica_id: int, delay: float = 0.0, port: int = 0,
              accelerator: str | None = None, hang_up: bool = False) -> ReadyReplica:
        """Start replica ``replica_id`` (on ``port``, 0: a free one) and wait until it
        listens (``hang_up``: it answers with headers only, then closes)."""
        port_file = self.root / f"replica-{replica_id}.port"
        port_file.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, str(REPLICA), "--id", str(replica_id),
                                 "--port-file", str(port_file), "--delay", str(delay),
                                 "--port", str(port)]
                                + (["--hang-up-after-headers"] if hang_up else []))
        self.procs[replica_id] = proc
        end = deadline(10)
        while not port_file.exists():
            assert proc.poll() is None and time.monotonic() < end, "replica did not start"
            time.sleep(0.01)
        self.urls[replica_id] = f"http://127.0.0.1:{port_file.read_text()}"
        return ReadyReplica(replica_id=replica_id, url=self.urls[replica_id], version=1,
                            accelerator=accelerator)

    def port(self, replica_id: int) -> int:
        return int(self.urls[replica_id].rsplit(":", 1)[1])

    def kill(self, replica_id: int) -> None:
        self.procs[replica_id].kill()
        self.procs[replica_id].wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait()


@pytest.fixture
def service(home: Path) -> Iterator[Path]:
    path = home / "serve" / "web"
    path.mkdir(parents=True)
    yield path
    stop_load_balancer(path)


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    started = Replicas(tmp_path)
    yield started
    started.stop_all()
