"""The fixture most tests share: a private ``SKYSTATE_HOME`` whose processes (API server,
workers, cluster agents) are all killed afterwards. Test files that need more (a config,
no token) define their own ``home``.

Also, for the whole session: no cloud metadata probe may leave the machine (boto3's
instance-metadata lookup and google-auth's GCE check are off, and their hosts point at a
closed loopback port), and any process a test left behind is reported and killed.

``.ci/run`` runs the suite in two parts: in parallel (pytest-xdist, ``--dist loadgroup``: a
file's tests stay on one worker, so its module fixtures are built once), then the tests marked
``alone`` one at a time with nothing else running: every test of the one shared moto server or
sshd (moto is reset per test; the test sshd's nodes share the login's home; under parallel load
their AWS/SSH timing races), and tests that measure the machine (memory)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import kill_everything_under, processes_under

NO_METADATA_PROBES = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_GCE_CHECK": "True",
    "GCE_METADATA_HOST": "127.0.0.1:9",  # the discard port: closed here, and loopback
    "GCE_METADATA_IP": "127.0.0.1:9",
}
os.environ.update(NO_METADATA_PROBES)  # before any test imports boto3 or google.auth


SHARED_SERVERS = ("moto_url", "sshd")  # session fixtures of servers every worker shares


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects on the marks added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of the shared servers, and tests marked ``alone``, are marked ``alone``: .ci/run
    runs them by themselves after the parallel part. Every other file is one xdist group."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if item.get_closest_marker("alone") or any(n in names for n in SHARED_SERVERS):
            item.add_marker(pytest.mark.alone)
            item.add_marker(pytest.mark.xdist_group("alone"))
        else:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Report and kill what the tests left running under pytest's temporary folder."""
    base = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    left = processes_under(base)
    if left:
        print(f"\nleftover processes killed after the session ({len(left)}):")
        for pid, command in left:
            print(f"  {pid} {command[:160]}")
        kill_everything_under(base)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private home reached through its own local server (no token, no remote URL)."""
    from skystate.server.client import stop_server

    monkeypatch.setenv("SKYSTATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SKYSTATE_API_TOKEN", raising=False)
    monkeypatch.delenv("SKYSTATE_API_SERVER_URL", raising=False)
    yield tmp_path / "home"
    stop_server(tmp_path / "home")
    kill_everything_under(tmp_path)
