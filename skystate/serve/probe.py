"""One look at a replica: its readiness probe and, if that fails, its cluster and program.

The probe is the service's ``readiness_probe`` (GET, or POST with ``post_data``) with its
``timeout_seconds``; any 2xx passes. A probe that fails is followed by one look at the
replica's cluster (the provider) and job (the agent): only a fresh, successful answer
says the cluster is gone or the program exited; an error or a timeout there is UNKNOWN:
the replica leaves the ready set but is never failed or replaced for it
(``decide.transition``).
"""

from __future__ import annotations

from typing import Any

import httpx

from skystate.providers.base import NodeState
from skystate.providers.registry import Providers
from skystate.serve.decide import Evidence
from skystate.serve.policy import Probe

Record = dict[str, Any]
_DONE = ("SUCCEEDED", "FAILED", "FAILED_SETUP", "FAILED_DRIVER", "CANCELLED")


def probe(url: str, spec: Probe, client: httpx.Client | None = None) -> tuple[bool, str]:
    """(passed, detail) of one readiness probe of ``url``."""
    target = url.rstrip("/") + spec.path
    own = client is None
    client = client or httpx.Client(trust_env=False, verify=False)
    try:
        if spec.post_data is not None:
            data = spec.post_data
            response = (client.post(target, json=data, headers=spec.headers,
                                    timeout=spec.timeout) if not isinstance(data, str)
                        else client.post(target, content=data, headers=spec.headers,
                                         timeout=spec.timeout))
        else:
            response = client.get(target, headers=spec.headers, timeout=spec.timeout)
    except httpx.HTTPError as exc:
        return False, f"{spec.path}: {type(exc).__name__}: {exc}"
    finally:
        if own:
            client.close()
    if 200 <= response.status_code < 300:
        return True, f"{spec.path}: {response.status_code}"
    return False, f"{spec.path}: HTTP {response.status_code}"


def look(replica: Record, cluster: Record | None, spec: Probe, providers: Providers,
         client: httpx.Client | None = None) -> Evidence:
    """The evidence of one replica that runs (STARTING, READY or NOT_READY)."""
    if not replica.get("url"):
        return Evidence()
    ok, detail = probe(replica["url"], spec, client)
    if ok:
        return Evidence(probe_ok=True, detail=detail)
    if cluster is None:
        return Evidence(False, gone=True, detail=f"{detail}; cluster {replica['cluster']} "
                                                 "is no longer recorded")
    try:
        provider = providers.of_record(cluster)
        found = provider.observe([cluster["name"]])
    except Exception as exc:  # noqa: BLE001 - unknown: the probe alone counts
        return Evidence(False, unknown=True,
                        detail=f"{detail}; observing its cluster: {type(exc).__name__}: {exc}")
    seen = next((o for o in found if o.name == cluster["name"]), None)
    if seen is None or seen.state is NodeState.TERMINATED:
        return Evidence(False, gone=True, detail=f"{detail}; its cluster is gone")
    if seen.state is not NodeState.RUNNING or replica.get("job_id") is None:
        return Evidence(False, detail=f"{detail}; its cluster is {seen.state.value}")
    try:
        rows = provider.agent(seen).queue([int(replica["job_id"])], detailed=True)
    except Exception as exc:  # noqa: BLE001 - an agent that does not answer is unknown
        return Evidence(False, unknown=True,
                        detail=f"{detail}; its agent: {type(exc).__name__}: {exc}")
    row = next((r for r in rows if int(r["job_id"]) == int(replica["job_id"])), None)
    if row is not None and str(row.get("status")) in _DONE:
        code = row.get("exit_code")
        return Evidence(False, exited=True,
                        detail=f"its program exited ({row.get('status')}, code {code})")
    return Evidence(False, detail=detail)
