"""The fixture most tests share: a private ``SKYSTATE_HOME`` whose processes (API server,
workers, cluster agents) are all killed afterwards. Test files that need more (a config,
no token) define their own ``home``.

Also, for the whole session: no cloud metadata probe may leave the machine (boto3's
instance-metadata lookup and google-auth's GCE check are off, and their hosts point at a
closed loopback port), any process a test left behind is reported and killed, and Ctrl-C
reaches the CLIs the tests start (a shell's background job, e.g. ``.ci/run &``, ignores
SIGINT, and so would every process it starts: Python then installs no KeyboardInterrupt).

``.ci/run`` runs the suite in two parts: in parallel (pytest-xdist, ``--dist loadgroup``: a
file's tests stay on one worker, so its module fixtures are built once), then the few tests
marked ``alone`` (those that measure the machine, e.g. memory) with nothing else running.
The AWS and SSH tests run in the parallel part: every worker has its own moto server and
sshd (``moto_fixture``, ``sshd_fixture``), and every test its own node folders and HOME."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import kill_everything_under, processes_under

DURATIONS = Path(__file__).with_name("durations.json")  # written by .ci/durations.py
NO_METADATA_PROBES = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_GCE_CHECK": "True",
    "GCE_METADATA_HOST": "127.0.0.1:9",  # the discard port: closed here, and loopback
    "GCE_METADATA_IP": "127.0.0.1:9",
}
os.environ.update(NO_METADATA_PROBES)  # before any test imports boto3 or google.auth
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # a handler is reset at exec; an
    signal.signal(signal.SIGINT, signal.default_int_handler)  # ignored signal stays so


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects on the marks added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``alone`` are one xdist group (.ci/run runs them by themselves after the
    parallel part); a test marked ``spread`` is a group of its own (its file's tests share no
    module fixture, so they may run on different workers at once); every other file is one
    xdist group."""
    groups = {}
    for item in items:
        if item.get_closest_marker("alone"):
            groups[item.nodeid] = "alone"
        elif item.get_closest_marker("spread"):
            groups[item.nodeid] = item.nodeid
        else:
            groups[item.nodeid] = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))
    _longest_groups_first(items, groups)


def _longest_groups_first(items: list[pytest.Item], groups: dict[str, str]) -> None:
    """Order the groups by their time in the last measured run (``tests/durations.json``,
    longest first; .ci/run passes ``--no-loadscope-reorder`` so xdist keeps this order): the
    slowest files start first instead of ending the run alone on one worker. A group not in
    the file counts as the median; tests keep their order inside a group."""
    try:
        seconds: dict[str, float] = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return
    known = sorted(seconds.values())
    median = known[len(known) // 2] if known else 0.0
    first = {}
    for index, item in enumerate(items):
        first.setdefault(groups[item.nodeid], index)
    items.sort(key=lambda item: (-seconds.get(groups[item.nodeid], median),
                                 first[groups[item.nodeid]]))


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


@pytest.fixture
def serve_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``home`` with the local provider configured and a minute lasting two seconds
    (``SKYSTATE_TIME_SCALE=30``: a service probes every 0.33 s): the services' tests."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text("providers:\n  local: {}\n")
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "30")
    return home
