"""Autostop of a GCP cluster from its own head node (stdlib only, sent as ``python3 -c``).

The head's runtime agent runs this when autostop fires (``self_stop`` in node.json),
right after ``hostctl selfstop`` has cancelled the jobs and ended the runtime on every
node::

    python3 -c "$SOURCE" stop|down '{"api": ..., "project": ..., "nodes": [...], ...}'

* ``stop`` labels the head ``skystate-autostopped=true`` (so ``observe`` can tell an
  autostop from an external stop, and the reconciler leaves it stopped), then stops
  every instance through the Compute API, workers first, the head last;
* ``down`` deletes every instance the same way (a guest cannot delete itself otherwise).

Credentials: the instances are created with the default service account and the
``compute`` scope; the token comes from the metadata server. With a plain ``http://``
API endpoint (a local emulator, the tests' fake) no token is sent. If the API refuses a
``stop`` (e.g. a scope was removed) and ``shutdown_fallback`` is set, the head powers
itself off with ``sudo -n shutdown -h now`` — a guest shutdown is a stop on GCE.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

METADATA_TOKEN = ("http://metadata.google.internal/computeMetadata/v1/instance/"
                  "service-accounts/default/token")  # fmt: skip
AUTOSTOPPED_LABEL = "skystate-autostopped"
WAIT_SECONDS = 600.0


def _token(api: str) -> str | None:
    if api.startswith("http://"):
        return None
    request = urllib.request.Request(METADATA_TOKEN, headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return str(json.loads(reply.read())["access_token"])


def _call(config: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    url = f"{config['api'].rstrip('/')}/compute/v1/projects/{config['project']}/{path}"
    headers = {"Content-Type": "application/json"}
    if config.get("token"):
        headers["Authorization"] = f"Bearer {config['token']}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.loads(reply.read() or b"{}")


def _wait(config: dict[str, Any], zone: str, operation: dict[str, Any]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while operation.get("status") != "DONE" and time.monotonic() < deadline:
        operation = _call(config, "POST", f"zones/{zone}/operations/{operation['name']}/wait")
    errors = (operation.get("error") or {}).get("errors") or []
    if errors:
        raise RuntimeError(f"operation {operation.get('name')}: {errors}")


def _mark_autostopped(config: dict[str, Any], node: dict[str, str]) -> None:
    base = f"zones/{node['zone']}/instances/{node['name']}"
    instance = _call(config, "GET", base)
    labels = {**(instance.get("labels") or {}), AUTOSTOPPED_LABEL: "true"}
    body = {"labels": labels, "labelFingerprint": instance.get("labelFingerprint")}
    _wait(config, node["zone"], _call(config, "POST", f"{base}/setLabels", body))


def run(action: str, config: dict[str, Any]) -> int:
    """Stop or delete every node (config ``nodes``: head first); 0 when all went well."""
    config = {**config, "token": _token(config["api"])}
    nodes = list(config["nodes"])
    failures = 0
    if action == "stop":
        try:
            _mark_autostopped(config, nodes[0])
        except (OSError, ValueError, RuntimeError) as exc:
            print(f"could not label the head autostopped: {exc}", flush=True)
    for node in nodes[1:] + nodes[:1]:  # workers first: the head's own stop ends this script
        path = f"zones/{node['zone']}/instances/{node['name']}"
        try:
            if action == "stop":
                operation = _call(config, "POST", f"{path}/stop")
            else:
                operation = _call(config, "DELETE", path)
            _wait(config, node["zone"], operation)
            print(f"{action} {node['name']}: done", flush=True)
        except (OSError, ValueError, RuntimeError) as exc:  # urllib errors are OSErrors
            failures += 1
            print(f"{action} {node['name']} failed: {exc}", flush=True)
    if failures and action == "stop" and config.get("shutdown_fallback"):
        print("falling back to a guest shutdown of the head", flush=True)
        subprocess.run(["sudo", "-n", "shutdown", "-h", "now"], check=False)
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("stop", "down"):
        print("usage: gcp_selfstop stop|down CONFIG_JSON", file=sys.stderr)
        return 2
    return run(argv[0], json.loads(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
