"""Fault injection for tests: a Provider wrapper that fails chosen calls on purpose.

Enabled only when ``SKYSTATE_FAULTS`` names a JSON file holding one fault or a list::

    {"cluster": "a", "op": "provision", "error": "transient", "times": 3}

``op`` is a Provider call (offers, provision, start, stop, terminate, observe, agent)
or ``submit``, a job submit to a cluster's agent; ``cluster`` limits it to calls about
that cluster (omitted: every call; a call that names no cluster — ``offers``,
``observe`` of all — matches any); ``error`` is ``transient`` (a ``ProviderError``
marked transient, as a throttled cloud API gives) or ``timeout`` (``TimeoutError``, as
an unreachable host gives) or ``unavailable`` (a ``ResourcesUnavailableError``, as a
cloud out of capacity gives), raised after ``delay`` seconds (default 0); ``times`` is
how many matching calls fail (omitted or null: all).

Two errors stop the process instead, to test crash windows deterministically: ``kill``
(it SIGKILLs itself) and ``pause`` (it sleeps until killed; the test sees the fault
fired in the ledger below, then kills whatever it wants, e.g. the API server).
``after: true`` (``submit`` only) fires once the real call returned (its effect
happened, its answer is lost), e.g. ``{"op": "submit", "error": "pause", "after": true}``:
the agent queued the job but the apply never recorded its id.

The fault file is never changed; how many times each fault fired is counted in
``<file>.fired.json`` (under an ``flock``, so every process applying against the same
file shares the count, and tests read it). The wrapper is applied in one place,
``Providers.get``.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter

from skystate.exceptions import ProviderError, ResourcesUnavailableError
from skystate.providers.base import (
    ClusterAgent,
    ClusterObservation,
    JobRequest,
    Offer,
    OfferQuery,
    Provider,
    ProvisionRequest,
)

FAULTS_ENV = "SKYSTATE_FAULTS"

Op = Literal["offers", "provision", "start", "stop", "terminate", "observe", "agent", "submit"]


class Fault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Op
    error: Literal["transient", "timeout", "unavailable", "kill", "pause"]
    cluster: str | None = None
    times: int | None = None
    delay: float = 0.0
    after: bool = False

    def matches(self, op: str, clusters: Sequence[str] | None, after: bool = False) -> bool:
        if op != self.op or after != self.after:
            return False
        return self.cluster is None or clusters is None or self.cluster in clusters


_FAULTS = TypeAdapter(Fault | list[Fault])


def load_faults(path: Path) -> list[Fault]:
    loaded = _FAULTS.validate_json(path.read_text())
    return loaded if isinstance(loaded, list) else [loaded]


class FaultLedger:
    """How often each fault of a file has fired, shared by every process using it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts_path = path.with_name(path.name + ".fired.json")
        self.lock_path = path.with_name(path.name + ".lock")
        self.faults = load_faults(path)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, int]]:
        with open(self.lock_path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            counts = self.fired()
            yield counts
            temp = self.counts_path.with_name(f"{self.counts_path.name}.{os.getpid()}.tmp")
            temp.write_text(json.dumps(counts))
            os.replace(temp, self.counts_path)

    def fired(self) -> dict[str, int]:
        """Fault index (as a string) -> times it fired."""
        try:
            return {str(k): int(v) for k, v in json.loads(self.counts_path.read_text()).items()}
        except (OSError, ValueError):
            return {}

    def take(self, op: str, clusters: Sequence[str] | None,
             after: bool = False) -> Fault | None:
        """The first matching fault with firings left, counted as fired now."""
        candidates = [i for i, f in enumerate(self.faults) if f.matches(op, clusters, after)]
        if not candidates:
            return None
        with self._locked() as counts:
            for index in candidates:
                fault = self.faults[index]
                used = counts.get(str(index), 0)
                if fault.times is None or used < fault.times:
                    counts[str(index)] = used + 1
                    return fault
        return None


def _raise(fault: Fault, op: str, clusters: Sequence[str] | None) -> None:
    if fault.delay:
        time.sleep(fault.delay)
    what = f"{op} of {', '.join(clusters)}" if clusters else op
    if fault.error == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault.error == "pause":
        while True:  # until the test kills this process (or its parent, and so it)
            time.sleep(3600)
    if fault.error == "timeout":
        raise TimeoutError(f"injected timeout: {what} did not answer")
    if fault.error == "unavailable":
        raise ResourcesUnavailableError(f"injected capacity error: {what} has no capacity")
    raise ProviderError(f"injected transient error: {what} was throttled", transient=True)


class FaultyProvider:
    """Delegates to the real provider, failing the calls the fault file names."""

    def __init__(self, inner: Provider, ledger: FaultLedger) -> None:
        self.inner = inner
        self.ledger = ledger
        self.name = inner.name

    def _check(self, op: str, clusters: Sequence[str] | None) -> None:
        fault = self.ledger.take(op, clusters)
        if fault is not None:
            _raise(fault, op, clusters)

    def offers(self, query: OfferQuery) -> list[Offer]:
        self._check("offers", None)
        return self.inner.offers(query)

    def provision(self, request: ProvisionRequest) -> ClusterObservation:
        self._check("provision", [request.cluster_name])
        return self.inner.provision(request)

    def start(self, name: str, owner: str) -> ClusterObservation:
        self._check("start", [name])
        return self.inner.start(name, owner)

    def stop(self, name: str, owner: str) -> ClusterObservation:
        self._check("stop", [name])
        return self.inner.stop(name, owner)

    def terminate(self, name: str, owner: str) -> None:
        self._check("terminate", [name])
        self.inner.terminate(name, owner)

    def observe(self, names: Sequence[str] | None = None) -> list[ClusterObservation]:
        self._check("observe", list(names) if names is not None else None)
        return self.inner.observe(names)

    def agent(self, observation: ClusterObservation) -> ClusterAgent:
        self._check("agent", [observation.name])
        agent = self.inner.agent(observation)
        if not any(f.op == "submit" for f in self.ledger.faults):
            return agent
        return FaultyAgent(agent, self.ledger, observation.name)  # type: ignore[return-value]

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)  # provider-specific extras


class FaultyAgent:
    """A cluster agent whose ``submit`` fails (or stops the process) before or after the
    real call, as the fault file says; everything else is the real agent."""

    def __init__(self, inner: ClusterAgent, ledger: FaultLedger, cluster: str) -> None:
        self.inner, self.ledger, self.cluster = inner, ledger, cluster

    def submit(self, job: JobRequest) -> int:
        fault = self.ledger.take("submit", [self.cluster])
        if fault is not None:
            _raise(fault, "submit", [self.cluster])
        job_id = self.inner.submit(job)
        fault = self.ledger.take("submit", [self.cluster], after=True)
        if fault is not None:
            _raise(fault, "submit", [self.cluster])
        return job_id

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)


def with_faults(provider: Provider) -> Provider:
    """The provider itself, or wrapped when ``SKYSTATE_FAULTS`` names a fault file."""
    path = os.environ.get(FAULTS_ENV)
    if not path:
        return provider
    return FaultyProvider(provider, FaultLedger(Path(path)))
