"""The one-node local cluster the SDK benchmarks run on: a fresh SKYSTATE_HOME, the
cluster launched through the API server, its agent for direct calls; downed (and the
server stopped) afterwards."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def bench_cluster(name: str = "bench") -> Iterator[Any]:
    """Yields the cluster's runtime agent (a ``ClusterAgent``)."""
    os.environ["SKYSTATE_HOME"] = tempfile.mkdtemp(prefix="skystate-bench-")
    import skystate as sky
    from skystate.reconcile.imperative import up_cluster_agent

    sky.get(sky.launch(sky.Task(), cluster_name=name))
    try:
        yield up_cluster_agent(name)[1]
    finally:
        sky.get(sky.down(name))
        sky.api_stop()
