"""A 2-node SSH cluster on two "hosts" with their own addresses (network namespaces).

Two namespaces joined by a bridge (10.200.N.1/24 in the root namespace, veth pairs),
an sshd in each on 10.200.N.11:22 and 10.200.N.12:22 with the test sshd's keys. N is a
subnet this run claims with a lock file, so two suites on one machine never share a bridge
or addresses. The file
system is shared, so the pool's ``remote_dir`` has ``{host}`` (as for NFS homes).
Everything is torn down in a finalizer; skipped where ``ip netns add`` is not permitted.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sshd_fixture
from helpers import deadline, kill_everything_under
from sshd_fixture import SCRIPT, SSHD

from skystate.enums import JobStatus
from skystate.providers.base import JobRequest, NodeState, OfferQuery, ProvisionRequest
from skystate.providers.ssh import SSHProvider

sshd = sshd_fixture.sshd
LOCKS = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")


@contextlib.contextmanager
def _claimed_subnet() -> Iterator[int]:
    """A third octet N for 10.200.N.0/24 no other run holds (lock file) or has configured."""
    configured = _ip("-o", "addr", "show", check=False).stdout
    links = _ip("-o", "link", "show", check=False).stdout
    for n in range(0, 250):
        if f" 10.200.{n}." in configured or f": sst{n}v" in links or f": sstbr{n}:" in links:
            continue
        with open(LOCKS / f"skystate-netns-{n}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            yield n
            return
    pytest.skip("no free 10.200.N.0/24 subnet for the namespaces")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def two_hosts(sshd: SSHD, tmp_path: Path) -> Iterator[list[str]]:
    if shutil.which("ip") is None:
        pytest.skip("no 'ip' command (iproute2) here")
    dirs: list[Path] = []
    with _claimed_subnet() as n, contextlib.ExitStack() as cleanup:
        tag, bridge = f"{n}", f"sstbr{n}"  # names are the claimed subnet's: unique too
        namespaces = [f"sst{tag}a", f"sst{tag}b"]
        probe = _ip("netns", "add", namespaces[0], check=False)
        if probe.returncode != 0:
            pytest.skip(f"'ip netns add' is not permitted here: {probe.stderr.strip()}")
        cleanup.callback(_ip, "link", "del", bridge, check=False)
        veths = [f"sst{tag}v{i}" for i in range(len(namespaces))]
        cleanup.callback(_teardown, namespaces, veths, dirs, tmp_path)
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"10.200.{n}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        addresses = [f"10.200.{n}.11", f"10.200.{n}.12"]
        for i, (ns, address) in enumerate(zip(namespaces, addresses, strict=True)):
            if i:
                _ip("netns", "add", ns)
            outer, inner = veths[i], f"sst{tag}p{i}"
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", ns)
            _ip("link", "set", outer, "master", bridge)
            _ip("link", "set", outer, "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            folder = tmp_path / f"sshd-{i}"
            folder.mkdir()
            for name in ("ssh_host_ed25519_key", "id_ed25519", "id_ed25519.pub"):
                shutil.copy2(sshd.dir / name, folder / name)
            dirs.append(folder)
            subprocess.run(
                ["ip", "netns", "exec", ns, "bash", str(SCRIPT), "start", str(folder), "22",
                 address],  # fmt: skip
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        yield addresses


def _teardown(namespaces: list[str], veths: list[str], dirs: list[Path], tmp_path: Path) -> None:
    kill_everything_under(tmp_path)
    for folder in dirs:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], check=False)
    for ns in namespaces:
        for pid in _ip("netns", "pids", ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)  # sshd sessions left in the namespace
        _ip("netns", "del", ns, check=False)
    for veth in veths:  # a namespace takes its veth pair along only once the kernel frees it
        _ip("link", "del", veth, check=False)


@pytest.mark.slow
def test_two_node_job_across_namespaced_hosts(
    two_hosts: list[str], sshd: SSHD, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKYSTATE_HOME", str(tmp_path / "home"))
    pool = {
        "hosts": two_hosts,
        "user": sshd.user,
        "identity_file": str(sshd.key),
        "remote_dir": str(tmp_path / "remote" / "{host}"),
        "isolate_home": True,
    }
    provider = SSHProvider({"net": pool})
    try:
        (offer,) = provider.offers(OfferQuery(num_nodes=2))
        started = time.monotonic()
        obs = provider.provision(ProvisionRequest("mn", "me", offer, 2))
        print(f"2-node provision over the bridge: {time.monotonic() - started:.2f}s")
        assert obs.state is NodeState.RUNNING
        assert [(n.rank, n.ip, n.ssh_port) for n in obs.nodes] == [
            (0, two_hosts[0], 22),
            (1, two_hosts[1], 22),
        ]
        agent = provider.agent(obs)
        run = (
            'echo "rank $SKYPILOT_NODE_RANK of $SKYPILOT_NUM_NODES ips $(echo $SKYPILOT_NODE_IPS)"'
        )
        job_id = agent.submit(JobRequest(name="mn", num_nodes=2, run=run))
        until = deadline(20)
        while not agent.queue([job_id])[0]["status"].is_terminal():
            assert time.monotonic() < until, "2-node job did not finish"
            time.sleep(0.1)
        assert agent.queue([job_id])[0]["status"] is JobStatus.SUCCEEDED
        log = agent.read_log(job_id)
        ips = " ".join(two_hosts)
        assert f"(rank 0) rank 0 of 2 ips {ips}" in log
        assert f"(rank 1) rank 1 of 2 ips {ips}" in log
        provider.terminate("mn", "me")
        assert provider.observe() == []
    finally:
        provider.close()
