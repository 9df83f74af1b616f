"""Nothing executes from the wire: the request codec builds only allow-listed classes.

Both directions run for real: a real API server refuses hostile request arguments with a
422, and a hostile HTTP server (a real one on 127.0.0.1 answering the client's routes)
cannot make ``sky.get`` build anything. Every payload would leave a marker file if any
callable it names ran; the tests prove none does."""

from __future__ import annotations

import builtins
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import skystate as sky
from skystate.enums import JobStatus
from skystate.exceptions import ResourcesUnavailableError
from skystate.reconcile.handles import ResourceHandle
from skystate.server.client import _CLIENTS
from skystate.server.codec import (
    CodecError,
    decode,
    decode_error,
    encode,
    encode_error,
)

STDLIB_CALLABLES = ["os:system", "posix:system", "subprocess:getoutput", "subprocess:run",
                    "shutil:rmtree", "importlib:import_module", "pickle:loads",
                    "pathlib:Path", "io:open", "code:interact", "runpy:run_path",
                    "ctypes:CDLL", "skystate.runtime.procs:os", "skystate:__builtins__"]


def _callables() -> list[str]:
    return [f"builtins:{name}" for name in dir(builtins)] + STDLIB_CALLABLES


def _payloads(marker: Path) -> Iterator[tuple[str, Any]]:
    """Every tag naming every callable, with arguments that would create ``marker``."""
    code = f"open({str(marker)!r}, 'w').write('ran')"
    kwargs = {"file": str(marker), "mode": "w", "args": f"touch {marker}",
              "cmd": f"touch {marker}", "path": str(marker)}
    for name in _callables():
        yield name, {"__enum__": name, "value": code}
        yield name, {"__obj__": name, "data": {"__map__": kwargs}}
        yield name, {"__dc__": name, "fields": kwargs}
        yield name, {"__model__": name, "data": kwargs}
        yield name, {"__exc__": {"type": name, "message": code, "args": [code],
                                 "attrs": {"__class__": {"__enum__": name, "value": code}}}}


def test_values_of_allowed_types_round_trip() -> None:
    value = {"jobs": (1, JobStatus.RUNNING), 7: [ResourceHandle("c", "local", [], None, 1)]}
    back = decode(json.loads(json.dumps(encode(value))))
    assert back["jobs"] == (1, JobStatus.RUNNING)
    assert back[7][0].cluster_name == "c"
    error = ResourcesUnavailableError("none left", failover_history=[ValueError("us-east-1")])
    got = decode_error(json.loads(json.dumps(encode_error(error))))
    assert type(got) is ResourcesUnavailableError
    assert [str(e) for e in got.failover_history] == ["us-east-1"]


def test_an_error_of_a_foreign_type_arrives_as_its_nearest_allowed_base() -> None:
    class ForeignError(KeyError):
        pass

    got = decode_error(json.loads(json.dumps(encode_error(ForeignError("k")))))
    assert type(got) is KeyError and "ForeignError" in str(got)


def test_a_type_off_the_allow_list_cannot_be_sent() -> None:
    class Stranger:
        def to_dict(self) -> dict[str, Any]:
            return {}

    with pytest.raises(TypeError, match="allow-list"):
        encode(Stranger())


def test_no_builtin_or_stdlib_callable_runs_when_decoded(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    for name, payload in _payloads(marker):
        if "__exc__" in payload:
            got = decode_error(payload["__exc__"])
            assert isinstance(got, BaseException), name
            assert type(got).__module__ == "builtins" and type(got).__name__ in (
                "RuntimeError", name.partition(":")[2]), name
        else:
            with pytest.raises(CodecError):
                decode(payload)
        assert not marker.exists(), f"{name} ran"


def test_deep_nesting_is_refused_not_a_crash() -> None:
    value: Any = 1
    for _ in range(10_000):
        value = {"__tuple__": [value]}
    with pytest.raises(CodecError, match="deeper"):
        decode(value)


def test_the_server_refuses_hostile_arguments_with_422(home: Path, tmp_path: Path) -> None:
    from skystate.server.client import client

    marker = tmp_path / "marker"
    http = client().http
    every = list(_payloads(marker))
    stdlib = [(name, payload) for name, payload in every if name in STDLIB_CALLABLES]
    for request_name, payloads in (("status", every), ("no_such_request", stdlib)):
        for name, payload in payloads:
            reply = http.post("/api/v1/requests", json={
                "name": request_name, "args": {"cluster_names": payload},
                "user_name": "attacker"})
            assert reply.status_code == 422, (request_name, name, reply.text)
            assert not marker.exists(), f"{name} ran on the server"
    # the server is still healthy and answers an honest request
    assert sky.get(sky.status()) == []


class _HostileServer(ThreadingHTTPServer):
    payload: Any = None


class _Hostile(BaseHTTPRequestHandler):
    """Answers every request lookup with a row whose value or error is the payload."""

    server: _HostileServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        request_id = self.path.split("?")[0].rsplit("/", 1)[-1]
        payload = self.server.payload
        row = {"request_id": request_id, "name": "status", "status": "SUCCEEDED",
               "return_value": payload}
        if "__exc__" in payload:
            row.update(status="FAILED", return_value=None, error=payload["__exc__"])
        body = json.dumps(row).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_hostile_server_cannot_make_the_client_run_anything(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = _HostileServer(("127.0.0.1", 0), _Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SKYSTATE_API_SERVER_URL", f"http://127.0.0.1:{server.server_port}")
    marker = tmp_path / "marker"
    request_id = "0" * 8 + "-0000-0000-0000-" + "0" * 12
    try:
        for name, payload in _payloads(marker):
            server.payload = payload
            with pytest.raises(Exception) as caught:  # noqa: B017 - the type is checked below
                sky.get(request_id)
            if "__exc__" in payload:
                assert type(caught.value).__module__ == "builtins", name
            else:
                assert isinstance(caught.value, CodecError), (name, caught.value)
            assert not marker.exists(), f"{name} ran in the client"
    finally:
        cached = _CLIENTS.pop(f"http://127.0.0.1:{server.server_port}", None)
        if cached is not None:
            cached.http.close()  # its keep-alive socket would be collected in a later test
        server.shutdown()
        server.server_close()
