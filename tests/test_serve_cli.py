"""``skystate serve …`` on examples/serve-http (the example runs here, as CI runs it):
up, status (tables and JSON), a real request through the endpoint, logs, down."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from helpers import REPO, deadline, run_cli

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "serve-http"


@pytest.fixture
def home(serve_home: Path) -> Path:
    return serve_home


def test_the_serve_http_example_serves_through_the_cli(home: Path) -> None:
    up = run_cli(home, "serve", "up", "service.yaml", "-n", "hello", cwd=EXAMPLE,
                 timeout=120)
    endpoint = up.stdout.strip().rsplit(" ", 1)[-1]
    assert endpoint.startswith("http://127.0.0.1:"), up.stdout
    end = deadline(60)
    while True:
        records = json.loads(run_cli(home, "serve", "status", "hello", "--json").stdout)
        ready = [r for r in records[0]["replica_info"] if r["status"] == "READY"]
        if len(ready) == 2:
            break
        assert time.monotonic() < end, records
        time.sleep(0.3)
    answers = {httpx.get(endpoint + "/", trust_env=False, timeout=30).json()["replica"]
               for _ in range(10)}
    assert answers == {"1", "2"}  # both replicas serve, each on its own port
    assert httpx.get(endpoint + "/health", trust_env=False).json() == {"status": "ok"}
    table = run_cli(home, "serve", "status").stdout
    assert "Services" in table and "Service Replicas" in table and "READY" in table
    assert endpoint in table
    logs = run_cli(home, "serve", "logs", "hello", "1", "--no-follow").stdout
    assert "serving on 127.0.0.1:" in logs
    decisions = run_cli(home, "serve", "logs", "hello", "--controller", "--no-follow").stdout
    assert "launch replica 2" in decisions
    run_cli(home, "serve", "logs", "hello", check=2)  # no component given
    run_cli(home, "serve", "down", "hello", timeout=120)
    assert json.loads(run_cli(home, "serve", "status", "--json").stdout) == []
    state = json.loads((home / "state.json").read_text())
    assert not (state.get("clusters") or {})
    with pytest.raises(httpx.ConnectError):
        httpx.get(endpoint, trust_env=False, timeout=5)
