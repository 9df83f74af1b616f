"""TLS at the load balancer: a self-signed certificate made here, real replicas (plain
HTTP) behind a real HTTPS load balancer, then ``sky.serve.up`` with ``service.tls`` end to
end through the API server (https endpoint, bad files refused at ``serve up``)."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import httpx
import lb_replicas
import pytest
from helpers import REPO, deadline, wait_until
from lb_replicas import Replicas
from tls_cert import make_certificate, trusting

from skystate.exceptions import LoadBalancerError
from skystate.serve.lb_process import (
    load_balancer_scheme,
    start_load_balancer,
    write_ready_set,
)

service = lb_replicas.service  # the fixtures
replicas = lb_replicas.replicas


def test_https_through_the_load_balancer_to_plain_http_replicas(
        service: Path, replicas: Replicas, tmp_path: Path) -> None:
    keyfile, certfile = make_certificate(tmp_path)
    write_ready_set(service, "round_robin", [replicas.start(i) for i in (1, 2, 3)], 1)
    _, port = start_load_balancer(service, tls=(str(keyfile), str(certfile)))
    assert load_balancer_scheme(service) == "https"
    url = f"https://127.0.0.1:{port}"
    with httpx.Client(base_url=url, verify=trusting(certfile), timeout=30) as client:
        responses = [client.get("/id") for _ in range(300)]
        assert collections.Counter(r.status_code for r in responses) == {200: 300}
        spread = collections.Counter(int(r.text.split()[1]) for r in responses)
        assert spread == {1: 100, 2: 100, 3: 100}
        sent = dict(client.get("/headers").json())
        assert sent["x-forwarded-proto"] == "https"
        assert client.get("/id").http_version == "HTTP/1.1"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(url + "/id", timeout=30)  # the system CAs do not know this certificate
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/id", timeout=30)  # no plain HTTP on that port


def test_a_key_that_is_not_the_certificates_is_a_clear_start_error(
        service: Path, tmp_path: Path) -> None:
    keyfile, _ = make_certificate(tmp_path, "one")
    _, certfile = make_certificate(tmp_path, "two")
    with pytest.raises(LoadBalancerError, match=f"keyfile {keyfile} is not the key of"):
        start_load_balancer(service, tls=(str(keyfile), str(certfile)))
    with pytest.raises(LoadBalancerError, match=f"certfile {tmp_path}/gone.crt: no such"):
        start_load_balancer(service, tls=(str(keyfile), str(tmp_path / "gone.crt")))


def test_without_tls_the_scheme_is_http(service: Path, replicas: Replicas) -> None:
    write_ready_set(service, "round_robin", [replicas.start(1)], 1)
    _, port = start_load_balancer(service)
    assert load_balancer_scheme(service) == "http"
    assert httpx.get(f"http://127.0.0.1:{port}/id", timeout=30).status_code == 200


# --- end to end: sky.serve.up with service.tls --------------------------------------------

EXAMPLE = REPO / "examples" / "serve-http"


def _task(tls: dict[str, str] | None, version: int = 1):  # type: ignore[no-untyped-def]
    import skystate as sky

    service: dict = {"readiness_probe": {"path": "/health", "initial_delay_seconds": 600},
                     "replicas": 2}
    if tls is not None:
        service["tls"] = tls
    return sky.Task.from_yaml_config({
        "name": "hello", "workdir": str(EXAMPLE), "envs": {"VERSION": str(version)},
        "resources": {"infra": "local", "ports": 8080}, "service": service,
        "run": "exec python3 server.py --port 8080"})


@pytest.mark.slow
def test_serve_up_with_tls_serves_https_end_to_end(home: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import skystate as sky

    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text("providers:\n  local: {}\n")
    monkeypatch.setenv("SKYSTATE_TIME_SCALE", "30")
    keyfile, certfile = make_certificate(tmp_path)
    _, other_cert = make_certificate(tmp_path, "other")
    monkeypatch.chdir(tmp_path)  # relative paths are the caller's: the SDK resolves them
    bad = {"keyfile": str(keyfile), "certfile": str(other_cert)}
    with pytest.raises(Exception, match=f"keyfile {keyfile} is not the key of"):
        sky.get(sky.serve.up(_task(bad), "svc"))
    with pytest.raises(Exception, match=f"certfile {tmp_path}/missing.crt: no such file"):
        sky.get(sky.serve.up(_task({"keyfile": "lb.key", "certfile": "missing.crt"}), "svc"))
    assert sky.get(sky.serve.status(["svc"])) == []  # nothing was recorded
    tls = {"keyfile": "lb.key", "certfile": "lb.crt"}
    name, endpoint = sky.get(sky.serve.up(_task(tls), "svc"))
    assert name == "svc" and endpoint.startswith("https://127.0.0.1:")
    try:
        end = deadline(90)
        while True:
            [record] = sky.get(sky.serve.status(["svc"]))
            ready = [r for r in record["replica_info"] if r["status"].value == "READY"]
            if len(ready) == 2:
                break
            assert time.monotonic() < end, record
            time.sleep(0.3)
        assert record["endpoint"] == endpoint
        assert all(r["endpoint"].startswith("http://") for r in ready)  # plain behind it
        with httpx.Client(verify=trusting(certfile), timeout=30, trust_env=False) as client:
            # READY in the controller's record first, then in the load balancer's next sync:
            # until then it answers 503 (no ready replica), as SkyPilot's does.
            wait_until(lambda: client.get(endpoint + "/").status_code == 200, timeout=60,
                       what="the load balancer's first ready replica")
            codes = collections.Counter(client.get(endpoint + "/").status_code
                                        for _ in range(200))
        assert codes == {200: 200}
        with pytest.raises(Exception, match="service.tls cannot change in an update"):
            sky.get(sky.serve.update(_task(None, version=2), "svc"))
        from typer.testing import CliRunner

        from skystate.cli import app

        shown = CliRunner().invoke(app, ["serve", "status", "svc", "--endpoint"])
        assert shown.exit_code == 0 and shown.output.strip() == endpoint, shown.output
    finally:
        sky.get(sky.serve.down(["svc"]))

