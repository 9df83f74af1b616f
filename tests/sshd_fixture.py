"""A real sshd for the SSH provider's tests (``.ci/sshd.sh``), plus helpers.

``sshd`` (session scope): if ``SKYSTATE_TEST_SSHD_DIR`` is set, the sshd already running
from that folder (started by ``.ci/sshd.sh start DIR``) is used; otherwise one is started
on a free loopback port with the script (which installs openssh-server with apt if it is
missing) and stopped at the end. Tests skip only if sshd cannot be installed/started for
lack of root or packages.
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


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHD]:
    existing = os.environ.get("SKYSTATE_TEST_SSHD_DIR")
    if existing:
        folder = Path(existing)
        yield SSHD(folder, int((folder / "port").read_text().strip()))
        return
    if os.geteuid() != 0:
        pytest.skip("the test sshd needs root (it logs in as the current user via sshd)")
    folder = tmp_path_factory.mktemp("sshd")
    port = _free_port()
    done = subprocess.run(
        ["bash", str(SCRIPT), "start", str(folder), str(port)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        if not Path("/usr/sbin/sshd").exists():
            pytest.skip(f"openssh-server cannot be installed here: {done.stderr.strip()[-500:]}")
        raise RuntimeError(f".ci/sshd.sh start failed: {done.stdout}\n{done.stderr}")
    try:
        yield SSHD(folder, port)
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], check=False, timeout=30)

