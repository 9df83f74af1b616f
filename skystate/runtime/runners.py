"""Node command runners and the bash wrapper every job phase runs under.

The head agent runs each job phase (setup, then run) as *one* detached bash process on
the head, in its own session, so cancelling is a single ``killpg``. That wrapper starts
the phase on every node of the job through a ``NodeRunner`` (the seam: ``LocalRunner``
runs in a node folder on this machine; an SSH runner would return ``ssh host -- ...``
text instead), collects the output into the job log (prefixed ``(rank N)`` for
multi-node jobs), and writes the phase's exit code to a file. The exit file, not the
agent's memory, is the record of the outcome, so an agent restart loses nothing.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from skystate.runtime.layout import NodeConfig, NodePaths, NodeRef


class NodeRunner(Protocol):
    """Turns "run this script on that node" into shell text the head's bash can run."""

    def shell(self, node: NodeRef, script: str, env: Mapping[str, str], cwd: str | None) -> str: ...


class LocalRunner:
    """Nodes are folders on this machine: cd into the node's folder, set HOME to its home.

    ``cwd`` is a path as the job sees it (``~/sky_workdir``); it is resolved inside the
    node folder. HOME points at the node's home so ``~/x`` file mounts are found.
    """

    def shell(self, node: NodeRef, script: str, env: Mapping[str, str], cwd: str | None) -> str:
        if node.dir is None:
            raise ValueError(f"node {node.rank} has no folder in node.json")
        paths = NodePaths(Path(node.dir))
        home = shlex.quote(str(paths.home))
        target = shlex.quote(str(paths.resolve(cwd))) if cwd else home
        exports = "".join(f"export {k}={shlex.quote(str(v))}; " for k, v in env.items())
        return (
            f"export HOME={home}; {exports}cd {target} 2>/dev/null || cd {home}; "
            f"exec bash -c {shlex.quote(script)}"
        )


def runner_for(config: NodeConfig) -> NodeRunner:
    if config.runner == "local":
        return LocalRunner()
    raise ValueError(f"unknown node runner {config.runner!r} in node.json")


def phase_wrapper(node_shells: Sequence[str], log: Path, exit_file: Path) -> str:
    """Bash text running one phase on every node; writes the first failing exit code.

    One node: output straight to the log. Several: each line is prefixed ``(rank N)``;
    the first node to fail fails the phase, and the wrapper then ends the others.
    """
    qlog, qexit = shlex.quote(str(log)), shlex.quote(str(exit_file))
    if len(node_shells) == 1:
        return f'( {node_shells[0]} ) >>{qlog} 2>&1 </dev/null\necho "$?" >{qexit}\n'
    lines = []
    for rank, text in enumerate(node_shells):
        prefix = shlex.quote(f"s/^/(rank {rank}) /")
        lines.append(
            f"( ( {text} ) 2>&1 </dev/null | sed -u {prefix} >>{qlog}; s=${{PIPESTATUS[0]}}; "
            f'if [ "$s" -ne 0 ]; then echo "$s" >{qexit}; '
            "trap '' TERM; kill -TERM 0; sleep 1; kill -KILL 0; fi ) &"
        )
    lines += ["wait", f"[ -s {qexit} ] || echo 0 >{qexit}"]
    return "\n".join(lines) + "\n"
