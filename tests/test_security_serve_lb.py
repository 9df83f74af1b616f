"""Security regressions of the load balancer's TLS: no protocol older than TLS 1.2, an
encrypted key is refused at once (never an interactive passphrase prompt in a detached
process), and the key's content never reaches the process's command line."""

from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path

import httpx
import lb_replicas
import pytest
from lb_replicas import Replicas
from tls_cert import make_certificate, trusting

from skystate.exceptions import LoadBalancerError
from skystate.runtime.procs import cmdline
from skystate.serve.lb_process import start_load_balancer, write_ready_set
from skystate.serve.lb_tls import TLSFileError, server_context

service = lb_replicas.service  # the fixtures
replicas = lb_replicas.replicas


def test_tls_older_than_1_2_is_refused_and_the_key_stays_off_the_command_line(
        service: Path, tmp_path: Path) -> None:
    keyfile, certfile = make_certificate(tmp_path)
    # the client side of this Python refuses TLS 1.1 itself, so the server's floor is
    # checked on its context (the same function the load balancer uses)
    assert server_context(str(keyfile), str(certfile)).minimum_version \
        == ssl.TLSVersion.TLSv1_2
    replicas = Replicas(tmp_path)
    try:
        write_ready_set(service, "round_robin", [replicas.start(1)], 1)
        pid, port = start_load_balancer(service, tls=(str(keyfile), str(certfile)))
        ok = httpx.get(f"https://127.0.0.1:{port}/id", verify=trusting(certfile), timeout=30)
        assert ok.status_code == 200
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
                trusting(certfile).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        line = cmdline(pid) or ""
        assert str(keyfile) in line and "PRIVATE KEY" not in line
    finally:
        replicas.stop_all()


def test_an_encrypted_key_is_refused_without_a_prompt(service: Path, tmp_path: Path) -> None:
    keyfile, certfile = make_certificate(tmp_path)
    locked = tmp_path / "locked.key"
    subprocess.run(["openssl", "pkey", "-in", str(keyfile), "-aes256", "-passout",
                    "pass:secret", "-out", str(locked)], check=True, capture_output=True)
    with pytest.raises(TLSFileError, match="is encrypted"):
        server_context(str(locked), str(certfile))
    with pytest.raises(LoadBalancerError, match="is encrypted"):
        start_load_balancer(service, tls=(str(locked), str(certfile)), timeout=30)
