"""The head-node runtime: job queue, scheduling by resources, logs, autostop.

It runs on cluster nodes (``python -m skystate.runtime agent --node-dir D``), so it
imports only the stdlib plus ``skystate.enums`` and ``skystate.exceptions`` — never the
reconciler, the specs, the providers, cloud SDKs or fabric.

Layout of a node folder ``D`` (one per node; the head is rank 0)::

    D/node.json             identity, written by the provider before the agent starts:
                            cluster, owner, rank, num_nodes, nodes [{rank, ip, dir}],
                            accelerators (per node, e.g. {"A100": 8}), cpus, memory_gib,
                            self_stop {"stop": argv, "down": argv}, runner ("local")
    D/tags.json             the provider's tag file (provider-owned; not read here)
    D/home/                 the node's home: HOME and default cwd of jobs; ~/x mounts
    D/home/sky_workdir/     a job's synced workdir (as on SkyPilot hosts)
    D/root/                 absolute-path file mounts (/data -> D/root/data)
    D/runtime/agent.pid     pid of the live agent, written once it is ready
    D/runtime/agent.lock    flock held by the agent (one agent per folder)
    D/runtime/jobs.db       sqlite (WAL) job table + settings (head only)
    D/runtime/exit/<id>.setup|run   exit code of each job phase, written by its wrapper
    D/runtime/autostopped   marker: the agent stopped/downed the cluster by autostop
    D/logs/agent.log        the agent's own output (redirected by the provider)
    D/logs/jobs/<id>.log    job logs (all ranks; "(rank N) " prefixes if multi-node)
    D/logs/setup-*.log      cluster-level setup runs (``run_on_nodes``)

Two front ends, one mechanism: the CLI (``python -m skystate.runtime submit|queue|
cancel|autostop|status|log|agent --node-dir D``, JSON on stdout) and the Python API
below, which the local provider calls in-process.
"""

from __future__ import annotations

from skystate.runtime.api import (
    agent_pid,
    cancel,
    log_path,
    queue,
    read_log,
    run_on_nodes,
    set_autostop,
    status,
    submit,
    wake,
)
from skystate.runtime.layout import NodeConfig, NodePaths, NodeRef, read_node_config

__all__ = [
    "NodeConfig",
    "NodePaths",
    "NodeRef",
    "agent_pid",
    "cancel",
    "log_path",
    "queue",
    "read_log",
    "read_node_config",
    "run_on_nodes",
    "set_autostop",
    "status",
    "submit",
    "wake",
]
