"""A moto EC2 server for the AWS provider's tests: a real HTTP EC2 API on loopback.

``moto_url`` (session): a ``moto_server`` of this test process's own (one per xdist worker,
on a free loopback port, stopped at the end), so tests in parallel never reset each other's
server. Outside a parallel run, ``SKYSTATE_TEST_MOTO_URL`` (see ``.ci/moto.sh``) names an
already running server to use instead. ``aws`` (per test): fake credentials in the
environment (inherited by the CLI and agents the test starts) and a fresh, empty server
(``POST /moto-api/reset``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import in_parallel_run

URL_ENV = "SKYSTATE_TEST_MOTO_URL"
REGIONS = ["us-east-1", "us-west-2"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", data=b""), timeout=30)


def _warm(url: str) -> None:
    """Load moto's EC2 backend now (seconds on a loaded machine), not in a test's first call
    (``skystate check`` probes an endpoint with a short read timeout)."""
    import boto3

    boto3.client(
        "ec2", region_name="us-east-1", endpoint_url=url,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    ).describe_regions()  # fmt: skip


def _start(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A moto_server on a free port, once it answers; retried if another took the port."""
    from skystate.server.procs import die_with_parent

    for _ in range(5):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with open(folder / "moto.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=folder,
                preexec_fn=die_with_parent,  # gone with this worker, whatever happens to it
            )  # fmt: skip
        until = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < until:
            try:
                reset(url)
            except OSError:
                time.sleep(0.05)
                continue
            _warm(url)
            return proc, url
        proc.kill()
        proc.wait()
    raise RuntimeError(f"moto_server did not start; log:\n{(folder / 'moto.log').read_text()}")


_STARTED: list[tuple[subprocess.Popen[bytes], str]] = []  # this process's server
_USERS = [0]


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Test modules bind this fixture under their own name (``moto_url =
    moto_fixture.moto_url``), which makes one session fixture per module: they all share one
    server, stopped when the last of them is torn down (at the end of the session)."""
    existing = os.environ.get(URL_ENV)
    if existing and not in_parallel_run():
        yield existing.rstrip("/")
        return
    if not _STARTED:
        _STARTED.append(_start(tmp_path_factory.mktemp("moto")))
    _USERS[0] += 1
    try:
        yield _STARTED[0][1]
    finally:
        _USERS[0] -= 1
        if not _USERS[0]:
            _stop(_STARTED.pop()[0])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The moto URL, with test credentials set and the server emptied."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    reset(moto_url)
    yield moto_url


def ec2(url: str, region: str) -> Any:
    """A plain boto3 client on the server, for looking behind the provider's back."""
    import boto3

    return boto3.client("ec2", region_name=region, endpoint_url=url)
