"""A moto EC2 server for the AWS provider's tests: a real HTTP EC2 API on loopback.

``moto_url`` (session): the server ``.ci/run`` started (``SKYSTATE_TEST_MOTO_URL``, see
``.ci/moto.sh``), or an in-process ``ThreadedMotoServer`` on a free port when the tests
run alone. ``aws`` (per test): fake credentials in the environment (inherited by the CLI
and agents the test starts) and a fresh, empty server (``POST /moto-api/reset``).
"""

from __future__ import annotations

import os
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

URL_ENV = "SKYSTATE_TEST_MOTO_URL"
REGIONS = ["us-east-1", "us-west-2"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    existing = os.environ.get(URL_ENV)
    if existing:
        yield existing.rstrip("/")
        return
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", data=b""), timeout=30)


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
