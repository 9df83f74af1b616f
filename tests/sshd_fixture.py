"""A real sshd for the SSH provider's tests (``.ci/sshd.sh``), plus helpers.

``sshd`` (session scope): an sshd of this test process's own (one per xdist worker), started
on a free loopback port with the script (which installs openssh-server with apt if it is
missing; ``.ci/run`` installs it first, so parallel workers never race on apt) and stopped
at the end with the sessions it still serves. Outside a parallel run,
``SKYSTATE_TEST_SSHD_DIR`` names the folder of an sshd already running (started by
``.ci/sshd.sh start DIR``) to use instead. Tests skip only if sshd cannot be
installed/started for lack of root or packages. Every test's nodes have a folder of their
own under its ``tmp_path`` (``remote_dir``) and, with ``isolate_home``, their own HOME, so
tests sharing one sshd's login never share files.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import in_parallel_run

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / ".ci" / "sshd.sh"


@dataclass(frozen=True)
class SSHD:
    dir: Path
    port: int
    address: str = "127.0.0.1"

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def user(self) -> str:
        return getpass.getuser()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _running(folder: Path) -> bool:
    try:
        os.kill(int((folder / "sshd.pid").read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


_STARTED: list[SSHD] = []  # this process's sshd, however many test modules bind the fixture
_USERS = [0]


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHD]:
    """Test modules bind this fixture under their own name (``sshd = sshd_fixture.sshd``),
    which makes one session fixture per module: they all share one sshd, stopped when the
    last of them is torn down (at the end of the session)."""
    existing = os.environ.get("SKYSTATE_TEST_SSHD_DIR")
    if existing and not in_parallel_run():
        folder = Path(existing)
        yield SSHD(folder, int((folder / "port").read_text().strip()))
        return
    if not _STARTED:
        _STARTED.append(_start(tmp_path_factory.mktemp("sshd")))
    _USERS[0] += 1
    try:
        yield _STARTED[0]
    finally:
        _USERS[0] -= 1
        if not _USERS[0]:
            subprocess.run(["bash", str(SCRIPT), "stop", str(_STARTED.pop().dir)], check=False,
                           timeout=30)  # fmt: skip


def _start(folder: Path) -> SSHD:
    if os.geteuid() != 0:
        pytest.skip("the test sshd needs root (it logs in as the current user via sshd)")
    for _ in range(5):  # another process may take the free port before sshd binds it
        port = _free_port()
        done = subprocess.run(
            ["bash", str(SCRIPT), "start", str(folder), str(port)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
        )  # fmt: skip
        if done.returncode == 0 and _running(folder):
            return SSHD(folder, port)
        if not Path("/usr/sbin/sshd").exists():
            pytest.skip(f"openssh-server cannot be installed here: {done.stderr.strip()[-500:]}")
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], check=False, timeout=30)
    raise RuntimeError(f".ci/sshd.sh start failed: {done.stdout}\n{done.stderr}")
