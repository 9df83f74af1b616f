"""Compute Engine calls for the GCP provider: clients, operation waits, error mapping.

``google.cloud.compute_v1`` costs 1.2 s to import (FACTS.md), so it is imported only
here, when a GCP call is actually made. Clients use the REST transport; with a plain
``http://`` ``api_endpoint`` (a local emulator or the tests' fake) they send no
credentials at all (anonymous), since a token must never travel over plain HTTP.

Operations are waited for through ``ZoneOperationsClient.wait`` /
``GlobalOperationsClient.wait`` on the same endpoint (``insert().result()`` would poll
the real Google host whatever ``client_options`` say — FACTS.md), and a finished
operation's ``error`` is checked here: the client raises only for some of them.

Errors become skystate's typed errors:

* capacity — ``ZONE_RESOURCE_POOL_EXHAUSTED[_WITH_DETAILS]``, ``QUOTA_EXCEEDED``
  (``quotaExceeded``), stockouts, ``UNSUPPORTED_OPERATION`` (the type or accelerator is not
  offered in that zone) → ``ResourcesUnavailableError``: the failover loop tries the next
  offer;
* a timeout, a connection error, HTTP 5xx/429 or a rate limit → ``ProviderError(transient=
  True)`` — never a sign that anything is gone;
* anything else (bad image, permission) → ``ProviderError`` that is not transient.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from skystate.exceptions import ProviderError, ResourcesUnavailableError

CALL_TIMEOUT = 60.0  # seconds per HTTP call
OPERATION_TIMEOUT = 900.0  # seconds to wait for one operation (GPU VMs can be slow)
READ_RETRY_SECONDS = 60.0  # reads retry 503/429 this long (the client's default: 600 s)

CAPACITY_CODES = frozenset(code.lower() for code in (
    "ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
    "QUOTA_EXCEEDED", "quotaExceeded", "RESOURCE_EXHAUSTED", "STOCKOUT",
    "resourcePoolExhausted", "UNSUPPORTED_OPERATION", "ZONE_RESOURCE_POOL_EXHAUSTED_FOR_SPOT",
))  # fmt: skip
TRANSIENT_CODES = frozenset(code.lower() for code in (
    "RESOURCE_OPERATION_RATE_EXCEEDED", "rateLimitExceeded", "userRateLimitExceeded",
    "RESOURCE_NOT_READY", "INTERNAL_ERROR", "backendError", "SERVICE_UNAVAILABLE",
))  # fmt: skip


def classify(codes: list[str], http_status: int | None, message: str, where: str) -> Exception:
    """The typed error for a failed call or operation (see the module docstring)."""
    lowered = {c.lower() for c in codes if c}
    detail = f"GCP {where}: {message.strip()}" + (f" [{', '.join(codes)}]" if codes else "")
    if lowered & CAPACITY_CODES:
        return ResourcesUnavailableError(detail)
    if lowered & TRANSIENT_CODES or (http_status is not None and
                                     (http_status >= 500 or http_status == 429)):
        return ProviderError(detail, transient=True)
    return ProviderError(detail)


def read_retry() -> Any:
    """Reads (get, list) retry an unavailable API briefly, then report a transient error."""
    from google.api_core import exceptions as gexc
    from google.api_core import retry

    return retry.Retry(initial=0.2, maximum=5.0, multiplier=2.0, timeout=READ_RETRY_SECONDS,
                       predicate=retry.if_exception_type(
                           gexc.ServiceUnavailable, gexc.TooManyRequests,
                           gexc.DeadlineExceeded))  # fmt: skip


class NotFoundError(Exception):
    """HTTP 404 from the API: the resource positively does not exist."""


@contextmanager
def translated(where: str) -> Iterator[None]:
    """Turn google-api-core / transport exceptions into skystate's (404 → NotFoundError)."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    try:
        yield
    except gexc.NotFound as exc:
        raise NotFoundError(str(exc)) from exc
    except gexc.GoogleAPICallError as exc:
        codes = [str(e.get("reason") or e.get("code") or "") for e in (exc.errors or [])
                 if isinstance(e, Mapping)]  # fmt: skip
        status = int(exc.code) if isinstance(exc.code, int) else None
        raise classify(codes, status, exc.message or str(exc), where) from exc
    except (gexc.RetryError, auth_exc.TransportError, OSError) as exc:  # requests' too
        raise ProviderError(f"GCP {where}: {type(exc).__name__}: {exc}", transient=True) from exc
    except auth_exc.DefaultCredentialsError as exc:
        raise ProviderError(
            f"GCP {where}: no credentials ({exc}); run `gcloud auth application-default "
            "login` or set GOOGLE_APPLICATION_CREDENTIALS") from exc


class ComputeAPI:
    """The handful of Compute Engine calls the provider makes, each waited for."""

    def __init__(self, project: str, api_endpoint: str | None = None) -> None:
        self.project = project
        self.api_endpoint = api_endpoint
        self._clients: dict[str, Any] = {}

    @property
    def anonymous(self) -> bool:
        return bool(self.api_endpoint and self.api_endpoint.startswith("http://"))

    def _client(self, kind: str) -> Any:
        client = self._clients.get(kind)
        if client is None:
            from google.cloud import compute_v1

            kwargs: dict[str, Any] = {"transport": "rest"}
            if self.api_endpoint:
                kwargs["client_options"] = {"api_endpoint": self.api_endpoint}
            if self.anonymous:
                from google.auth.credentials import AnonymousCredentials

                kwargs["credentials"] = AnonymousCredentials()
            with translated("client setup"):
                client = getattr(compute_v1, kind)(**kwargs)
            self._clients[kind] = client
        return client

    # --- operations -----------------------------------------------------------------

    def wait(self, operation: Any, zone: str | None, where: str) -> None:
        """Wait until the operation is DONE; its error → a typed exception."""
        from google.cloud import compute_v1

        done = compute_v1.Operation.Status.DONE
        deadline = time.monotonic() + OPERATION_TIMEOUT
        while operation.status != done:
            if time.monotonic() > deadline:
                raise ProviderError(f"GCP {where}: operation {operation.name} did not finish "
                                    f"in {OPERATION_TIMEOUT:.0f}s", transient=True)
            with translated(where):
                if zone:
                    operation = self._client("ZoneOperationsClient").wait(
                        project=self.project, zone=zone, operation=operation.name,
                        timeout=CALL_TIMEOUT)
                else:
                    operation = self._client("GlobalOperationsClient").wait(
                        project=self.project, operation=operation.name, timeout=CALL_TIMEOUT)
        errors = list(operation.error.errors) if operation.error else []
        if errors:
            status = operation.http_error_status_code or None
            raise classify([e.code for e in errors], status,
                           "; ".join(e.message for e in errors), where)

    # --- instances ------------------------------------------------------------------

    def insert_instance(self, zone: str, body: Mapping[str, Any]) -> Any:
        """Start inserting; returns the operation (wait with ``wait``)."""
        from google.cloud import compute_v1

        where = f"insert {body.get('name')} in {zone}"
        with translated(where):
            return self._client("InstancesClient").insert_unary(
                project=self.project, zone=zone, instance_resource=compute_v1.Instance(body),
                timeout=CALL_TIMEOUT)

    def instance_call(self, method: str, zone: str, name: str, **extra: Any) -> Any:
        """``start``/``stop``/``delete``/``set_labels`` (``*_unary``); the operation."""
        with translated(f"{method} {name} in {zone}"):
            call = getattr(self._client("InstancesClient"), f"{method}_unary")
            return call(project=self.project, zone=zone, instance=name, timeout=CALL_TIMEOUT,
                        **extra)

    def get_instance(self, zone: str, name: str) -> Any | None:
        try:
            with translated(f"get {name} in {zone}"):
                return self._client("InstancesClient").get(
                    project=self.project, zone=zone, instance=name, timeout=CALL_TIMEOUT,
                    retry=read_retry())
        except NotFoundError:
            return None

    def list_instances(self, labels: Mapping[str, str]) -> list[tuple[str, Any]]:
        """(zone, instance) of every instance carrying all ``labels``, in every zone."""
        from google.cloud import compute_v1

        text = " AND ".join(f"labels.{k}={v}" for k, v in sorted(labels.items()))
        request = compute_v1.AggregatedListInstancesRequest(project=self.project, filter=text)
        found = []
        with translated("list instances"):
            pager = self._client("InstancesClient").aggregated_list(
                request=request, timeout=CALL_TIMEOUT, retry=read_retry())
            for scope, scoped in pager:
                found.extend((scope.rsplit("/", 1)[-1], inst) for inst in scoped.instances)
        return found

    def set_labels(self, zone: str, name: str, labels: Mapping[str, str]) -> None:
        """Replace an instance's labels (retried once on a stale fingerprint)."""
        from google.cloud import compute_v1

        for attempt in (1, 2):
            instance = self.get_instance(zone, name)
            if instance is None:
                raise NotFoundError(f"instance {name} in {zone}")
            request = compute_v1.InstancesSetLabelsRequest(
                labels=dict(labels), label_fingerprint=instance.label_fingerprint)
            try:
                op = self.instance_call("set_labels", zone, name,
                                        instances_set_labels_request_resource=request)
                self.wait(op, zone, f"set labels of {name}")
                return
            except ProviderError:
                if attempt == 2:
                    raise

    # --- firewalls ------------------------------------------------------------------

    def ensure_firewall(self, body: Mapping[str, Any]) -> None:
        """Create the rule unless it exists (idempotent)."""
        from google.cloud import compute_v1

        name = str(body["name"])
        client = self._client("FirewallsClient")
        try:
            with translated(f"get firewall {name}"):
                client.get(project=self.project, firewall=name, timeout=CALL_TIMEOUT,
                           retry=read_retry())
            return
        except NotFoundError:
            pass
        with translated(f"insert firewall {name}"):
            op = client.insert_unary(project=self.project,
                                     firewall_resource=compute_v1.Firewall(body),
                                     timeout=CALL_TIMEOUT)  # fmt: skip
        self.wait(op, None, f"insert firewall {name}")

    def delete_firewall(self, name: str) -> None:
        """Delete the rule; a rule that is not there is fine."""
        try:
            with translated(f"delete firewall {name}"):
                op = self._client("FirewallsClient").delete_unary(
                    project=self.project, firewall=name, timeout=CALL_TIMEOUT)
            self.wait(op, None, f"delete firewall {name}")
        except NotFoundError:
            return
