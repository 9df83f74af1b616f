"""A local stand-in for the Compute Engine REST API, for the GCP provider's tests.

No usable GCE emulator exists (FACTS.md: ``gcplocal`` lacks stop/start and breaks the
client's id parsing), so this stdlib HTTP server answers exactly the REST calls the
provider makes, with the real API's JSON shapes, and the real ``google-cloud-compute``
client talks to it over HTTP (``transport="rest"``, ``client_options={"api_endpoint":
url}``, anonymous credentials)::

    /compute/v1/projects/{p}/zones/{z}/instances            GET list, POST insert
    /compute/v1/projects/{p}/zones/{z}/instances/{n}        GET, DELETE
    /compute/v1/projects/{p}/zones/{z}/instances/{n}/start|stop|setLabels   POST
    /compute/v1/projects/{p}/aggregated/instances|disks     GET (label filter)
    /compute/v1/projects/{p}/zones/{z}/disks[/{n}]          GET
    /compute/v1/projects/{p}/global/firewalls[/{n}]         GET, POST, DELETE
    /compute/v1/projects/{p}/zones/{z}/operations/{op}[/wait]    GET / POST
    /compute/v1/projects/{p}/global/operations/{op}[/wait]       GET / POST

What it models because the provider's correctness depends on it: operations start
``RUNNING`` and only take effect when polled (a provider that does not wait sees
``PROVISIONING``/``STOPPING``); ``filter=labels.k=v [AND ...]``; GCE's name and label
rules (a bad one is HTTP 400); ``labelFingerprint`` checks on ``setLabels`` (412);
boot disks with their own labels, deleted with the instance; and injected faults —
an operation that fails with an error code (``ZONE_RESOURCE_POOL_EXHAUSTED``, 503) or
an HTTP error on the request itself (``QUOTA_EXCEEDED`` 403, a bare 503).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
PREFIX = "/compute/v1/projects/"


class HTTPError(Exception):
    def __init__(self, status: int, message: str, reason: str = "invalid") -> None:
        self.status, self.message, self.reason = status, message, reason
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.status, "message": self.message,
                          "errors": [{"message": self.message, "domain": "global",
                                      "reason": self.reason}]}}  # fmt: skip


@dataclass
class Fault:
    """One injected failure: ``method`` (insert/start/stop/delete/list/get) in ``zone``."""

    method: str
    zone: str | None
    code: str
    http_status: int
    on_request: bool  # True: the HTTP call itself fails; False: its operation does
    times: int


class FakeCompute:
    """The fake's state (thread-safe) and its server; ``url`` once started."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.instances: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.disks: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.firewalls: dict[tuple[str, str], dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.effects: dict[str, Any] = {}  # op name -> callable run when the op is polled
        self.faults: list[Fault] = []
        self.calls: list[tuple[str, str]] = []  # (method, path) of every request
        self._ids = itertools.count(1000)
        self._server: ThreadingHTTPServer | None = None
        self.stopped = False

    # --- control (tests) ----------------------------------------------------------------

    def start(self) -> str:
        fake = self

        class Handler(_Handler):
            compute = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop answering: open keep-alive connections are dropped too (an outage)."""
        self.stopped = True
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def fail(self, method: str, zone: str | None = None, code: str = "ZONE_RESOURCE_POOL_EXHAUSTED",
             http_status: int = 503, on_request: bool = False, times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` (in ``zone``, or anywhere) fail."""
        with self.lock:
            self.faults.append(Fault(method, zone, code, http_status, on_request, times))

    def reset(self) -> None:
        with self.lock:
            for table in (self.instances, self.disks, self.firewalls, self.operations,
                          self.effects):  # fmt: skip
                table.clear()
            self.faults.clear()
            self.calls.clear()

    def set_status(self, zone: str, name: str, status: str, project: str | None = None) -> None:
        """Change an instance behind the provider's back (preemption, console stop)."""
        with self.lock:
            for (p, z, n), inst in self.instances.items():
                if z == zone and n == name and project in (None, p):
                    inst["status"] = status

    # --- internals ------------------------------------------------------------------------

    def _take_fault(self, method: str, zone: str | None, on_request: bool) -> Fault | None:
        for fault in self.faults:
            if (fault.method == method and fault.on_request == on_request
                    and fault.zone in (None, zone) and fault.times > 0):  # fmt: skip
                fault.times -= 1
                return fault
        return None

    def _new_id(self) -> str:
        return str(next(self._ids) * 7919)

    def operation(self, project: str, zone: str | None, kind: str, target: str,
                  effect: Any = None, fault: Fault | None = None) -> dict[str, Any]:
        name = f"operation-{self._new_id()}-{hashlib.md5(target.encode()).hexdigest()[:8]}"
        scope = f"zones/{zone}" if zone else "global"
        op: dict[str, Any] = {
            "kind": "compute#operation", "id": self._new_id(), "name": name,
            "operationType": kind, "status": "RUNNING", "progress": 0,
            "targetLink": target, "selfLink": f"{PREFIX}{project}/{scope}/operations/{name}",
        }  # fmt: skip
        if zone:
            op["zone"] = f"{PREFIX}{project}/zones/{zone}"
        self.operations[name] = op
        if fault is not None:
            self.effects[name] = ("fault", fault)
        elif effect is not None:
            self.effects[name] = ("effect", effect)
        return op

    def settle(self, name: str) -> dict[str, Any]:
        """An operation is polled: it completes now (its effect or its fault)."""
        op = self.operations.get(name)
        if op is None:
            raise HTTPError(404, f"The resource 'operations/{name}' was not found", "notFound")
        kind, what = self.effects.pop(name, (None, None))
        if kind == "effect":
            what()
        elif kind == "fault":
            op["error"] = {"errors": [{"code": what.code, "message":
                                       f"fake: {what.code} in {what.zone or 'this zone'}"}]}
            op["httpErrorStatusCode"] = what.http_status
            op["httpErrorMessage"] = "SERVICE UNAVAILABLE" if what.http_status == 503 else "ERROR"
        op["status"], op["progress"] = "DONE", 100
        return op


def label_filter(text: str) -> list[tuple[str, str]]:
    """``labels.a=b AND (labels.c = d)`` → [(a, b), (c, d)]; anything else is HTTP 400."""
    terms = [t.strip(" ()") for t in re.split(r"\s+AND\s+", text.strip()) if t.strip(" ()")]
    result = []
    for term in terms:
        match = re.fullmatch(r"labels\.([a-z0-9_-]+)\s*=\s*\"?([a-z0-9_-]*)\"?", term)
        if match is None:
            raise HTTPError(400, f"Invalid value for field 'filter': {text!r}")
        result.append((match.group(1), match.group(2)))
    return result


def _matches(resource: dict[str, Any], terms: list[tuple[str, str]]) -> bool:
    labels = resource.get("labels") or {}
    return all(labels.get(k) == v for k, v in terms)


def _check_labels(labels: dict[str, Any]) -> None:
    for key, value in labels.items():
        if not LABEL_KEY.match(key) or not LABEL_VALUE.match(str(value)):
            raise HTTPError(400, f"Invalid value for field 'labels': {key}={value!r}")


def _check_name(name: str) -> None:
    if not NAME.match(name or ""):
        raise HTTPError(400, f"Invalid value for field 'resource.name': {name!r}. Must be a "
                             "match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")


class _Handler(BaseHTTPRequestHandler):
    compute: FakeCompute
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        if self.compute.stopped:
            self.close_connection = True
            return
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        try:
            with self.compute.lock:
                self.compute.calls.append((method, url.path))
                status, reply = _route(self.compute, method, url.path, query, body)
        except HTTPError as exc:
            status, reply = exc.status, exc.body()
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _route(fake: FakeCompute, method: str, path: str, query: dict[str, str],
           body: dict[str, Any]) -> tuple[int, Any]:
    if not path.startswith(PREFIX):
        raise HTTPError(404, f"no such path {path}", "notFound")
    parts = path[len(PREFIX):].split("/")
    project, rest = parts[0], parts[1:]
    if rest[:1] == ["aggregated"] and method == "GET" and len(rest) == 2:
        return 200, _aggregated(fake, project, rest[1], query)
    if rest[:1] == ["global"]:
        return _global(fake, project, method, rest[1:], body)
    if rest[:1] == ["zones"] and len(rest) >= 3:
        zone, collection, tail = rest[1], rest[2], rest[3:]
        if collection == "operations":
            return 200, _poll(fake, tail)
        if collection == "disks" and method == "GET":
            return 200, _disks(fake, project, zone, tail, query)
        if collection == "instances":
            return _instances(fake, project, zone, method, tail, query, body)
    raise HTTPError(404, f"no such path {path}", "notFound")


def _poll(fake: FakeCompute, tail: list[str]) -> dict[str, Any]:
    if len(tail) not in (1, 2) or (len(tail) == 2 and tail[1] != "wait"):
        raise HTTPError(404, "no such operation path", "notFound")
    return fake.settle(tail[0])


def _aggregated(fake: FakeCompute, project: str, collection: str,
                query: dict[str, str]) -> dict[str, Any]:
    table = {"instances": fake.instances, "disks": fake.disks}.get(collection)
    if table is None:
        raise HTTPError(404, f"no aggregated {collection}", "notFound")
    terms = label_filter(query["filter"]) if query.get("filter") else []
    fault = fake._take_fault("list", None, on_request=True)
    if fault is not None:
        raise HTTPError(fault.http_status, f"fake: {fault.code}", fault.code)
    items: dict[str, dict[str, list[Any]]] = {}
    for (p, zone, _), resource in sorted(table.items()):
        if p == project and _matches(resource, terms):
            items.setdefault(f"zones/{zone}", {collection: []})[collection].append(resource)
    return {"kind": f"compute#{collection}AggregatedList", "items": items}


def _disks(fake: FakeCompute, project: str, zone: str, tail: list[str],
           query: dict[str, str]) -> dict[str, Any]:
    if tail:
        disk = fake.disks.get((project, zone, tail[0]))
        if disk is None:
            raise HTTPError(404, f"The resource 'disks/{tail[0]}' was not found", "notFound")
        return disk
    terms = label_filter(query["filter"]) if query.get("filter") else []
    found = [d for (p, z, _), d in sorted(fake.disks.items())
             if p == project and z == zone and _matches(d, terms)]  # fmt: skip
    return {"kind": "compute#diskList", "items": found}


def _instances(fake: FakeCompute, project: str, zone: str, method: str, tail: list[str],
               query: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    if not tail:
        if method == "GET":
            terms = label_filter(query["filter"]) if query.get("filter") else []
            found = [i for (p, z, _), i in sorted(fake.instances.items())
                     if p == project and z == zone and _matches(i, terms)]  # fmt: skip
            return 200, {"kind": "compute#instanceList", "items": found}
        if method == "POST":
            return 200, _insert(fake, project, zone, body)
    name = tail[0]
    key = (project, zone, name)
    instance = fake.instances.get(key)
    if instance is None:
        raise HTTPError(404, f"The resource 'projects/{project}/zones/{zone}/instances/"
                             f"{name}' was not found", "notFound")
    action = tail[1] if len(tail) == 2 else None
    if method == "GET" and action is None:
        return 200, instance
    if method == "DELETE" and action is None:
        return 200, _change(fake, project, zone, "delete", instance, "STOPPING",
                            lambda: _delete(fake, key))
    if method == "POST" and action in ("start", "stop"):
        final = "RUNNING" if action == "start" else "TERMINATED"
        transient = "STAGING" if action == "start" else "STOPPING"
        return 200, _change(fake, project, zone, action, instance, transient,
                            lambda: instance.update(status=final))
    if method == "POST" and action == "setLabels":
        return 200, _set_labels(fake, project, zone, instance, body)
    raise HTTPError(400, f"unsupported {method} {'/'.join(tail)}")


def _request_fault(fake: FakeCompute, method: str, zone: str) -> Fault | None:
    fault = fake._take_fault(method, zone, on_request=True)
    if fault is not None:
        raise HTTPError(fault.http_status, f"fake: {fault.code} in {zone}",
                        "quotaExceeded" if fault.code == "QUOTA_EXCEEDED" else fault.code)
    return fake._take_fault(method, zone, on_request=False)


def _insert(fake: FakeCompute, project: str, zone: str, body: dict[str, Any]) -> dict[str, Any]:
    name = str(body.get("name") or "")
    _check_name(name)
    _check_labels(body.get("labels") or {})
    for field in ("machineType", "disks", "networkInterfaces"):
        if not body.get(field):
            raise HTTPError(400, f"Required field 'resource.{field}' not specified")
    if (project, zone, name) in fake.instances:
        raise HTTPError(409, f"The resource 'projects/{project}/zones/{zone}/instances/{name}' "
                             "already exists", "alreadyExists")
    fault = _request_fault(fake, "insert", zone)
    self_link = f"{PREFIX}{project}/zones/{zone}/instances/{name}"
    if fault is not None:
        return fake.operation(project, zone, "insert", self_link, fault=fault)
    number = len(fake.instances) % 250 + 2
    instance = {
        **body, "kind": "compute#instance", "id": fake._new_id(), "status": "PROVISIONING",
        "zone": f"{PREFIX}{project}/zones/{zone}", "selfLink": self_link,
        "labels": dict(body.get("labels") or {}),
        "labelFingerprint": _fingerprint(body.get("labels") or {}),
        "networkInterfaces": [{
            **body["networkInterfaces"][0], "name": "nic0", "networkIP": f"10.128.0.{number}",
            "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT",
                               "natIP": f"34.1.0.{number}"}],
        }],  # fmt: skip
    }
    disks = []
    for index, disk in enumerate(body["disks"]):
        params = disk.get("initializeParams") or {}
        _check_labels(params.get("labels") or {})
        disk_name = params.get("diskName") or (name if index == 0 else f"{name}-{index}")
        disk_link = f"{PREFIX}{project}/zones/{zone}/disks/{disk_name}"
        fake.disks[(project, zone, disk_name)] = {
            "kind": "compute#disk", "name": disk_name, "id": fake._new_id(),
            "sizeGb": str(params.get("diskSizeGb") or 10), "labels": params.get("labels") or {},
            "sourceImage": params.get("sourceImage"), "selfLink": disk_link,
            "zone": f"{PREFIX}{project}/zones/{zone}", "users": [self_link],
        }  # fmt: skip
        disks.append({"source": disk_link, "boot": index == 0, "deviceName": disk_name,
                      "autoDelete": bool(disk.get("autoDelete"))})  # fmt: skip
    instance["disks"] = disks
    fake.instances[(project, zone, name)] = instance
    return fake.operation(project, zone, "insert", self_link,
                          effect=lambda: instance.update(status="RUNNING"))


def _change(fake: FakeCompute, project: str, zone: str, method: str, instance: dict[str, Any],
            transient: str, effect: Any) -> dict[str, Any]:
    fault = _request_fault(fake, method, zone)
    if fault is None:
        instance["status"] = transient
    return fake.operation(project, zone, method, instance["selfLink"], effect=effect, fault=fault)


def _delete(fake: FakeCompute, key: tuple[str, str, str]) -> None:
    instance = fake.instances.pop(key)
    project, zone, _ = key
    for disk in instance.get("disks") or []:
        if disk.get("autoDelete"):
            fake.disks.pop((project, zone, disk["source"].rsplit("/", 1)[1]), None)


def _fingerprint(labels: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def _set_labels(fake: FakeCompute, project: str, zone: str, instance: dict[str, Any],
                body: dict[str, Any]) -> dict[str, Any]:
    if body.get("labelFingerprint") != instance["labelFingerprint"]:
        raise HTTPError(412, "Labels fingerprint either invalid or resource labels have "
                             "changed", "conditionNotMet")
    labels = dict(body.get("labels") or {})
    _check_labels(labels)

    def apply() -> None:
        instance["labels"] = labels
        instance["labelFingerprint"] = _fingerprint(labels)

    return fake.operation(project, zone, "setLabels", instance["selfLink"], effect=apply)


def _global(fake: FakeCompute, project: str, method: str, rest: list[str],
            body: dict[str, Any]) -> tuple[int, Any]:
    if rest[:1] == ["operations"] and len(rest) >= 2:
        return 200, _poll(fake, rest[1:])
    if rest[:1] != ["firewalls"]:
        raise HTTPError(404, f"no such path global/{'/'.join(rest)}", "notFound")
    if len(rest) == 1 and method == "GET":
        found = [f for (p, _), f in sorted(fake.firewalls.items()) if p == project]
        return 200, {"kind": "compute#firewallList", "items": found}
    if len(rest) == 1 and method == "POST":
        name = str(body.get("name") or "")
        _check_name(name)
        if (project, name) in fake.firewalls:
            raise HTTPError(409, f"The resource 'firewalls/{name}' already exists",
                            "alreadyExists")
        link = f"{PREFIX}{project}/global/firewalls/{name}"
        rule = {**body, "kind": "compute#firewall", "id": fake._new_id(), "selfLink": link}
        return 200, fake.operation(project, None, "insert", link,
                                   effect=lambda: fake.firewalls.__setitem__((project, name),
                                                                             rule))
    name = rest[1]
    rule = fake.firewalls.get((project, name))
    if rule is None:
        raise HTTPError(404, f"The resource 'firewalls/{name}' was not found", "notFound")
    if method == "GET":
        return 200, rule
    if method == "DELETE":
        return 200, fake.operation(project, None, "delete", rule["selfLink"],
                                   effect=lambda: fake.firewalls.pop((project, name), None))
    raise HTTPError(400, f"unsupported {method} firewalls/{name}")


def running(fake: FakeCompute) -> Iterator[FakeCompute]:
    """Start the fake, yield it, stop it (the body of a pytest fixture)."""
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
