"""Node command runners and the bash wrapper every job phase runs under.

The head agent runs each job phase (setup, then run) as *one* detached bash process on
the head, in its own session, so cancelling is a single ``killpg``. That wrapper starts
the phase on every node of the job through a ``NodeRunner`` (the seam: ``LocalRunner``
runs in a node folder on this machine; ``SSHRunner`` returns ``ssh host -- ...`` text
for the other hosts of an SSH cluster), collects the output into the job log (prefixed
``(rank N)`` for multi-node jobs), and writes the phase's exit code to a file. The exit
file, not the agent's memory, is the record of the outcome, so an agent restart loses nothing.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from skystate.runtime.layout import NodeConfig, NodePaths, NodeRef
from skystate.runtime.ssh_command import ssh_argv


class NodeRunner(Protocol):
    """Turns "run this script on that node" into shell text the head's bash can run.

    ``secrets`` are not in the text: the head's bash has them in its environment (never
    on a command line, which every local user can read); a runner passes them on only
    to a node that does not inherit that environment.
    """

    def shell(self, node: NodeRef, script: str, env: Mapping[str, str], cwd: str | None,
              secrets: Mapping[str, str] | None = None) -> str: ...


class LocalRunner:
    """Nodes are folders on this machine: cd into the node's folder, set HOME to its home.

    ``cwd`` is a path as the job sees it (``~/sky_workdir``); it is resolved inside the
    node folder. HOME points at the node's home so ``~/x`` file mounts are found.
    """

    def shell(self, node: NodeRef, script: str, env: Mapping[str, str], cwd: str | None,
              secrets: Mapping[str, str] | None = None) -> str:
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


def _cd(cwd: str | None) -> str:
    """``cd`` to a path as a job on a real host sees it (``~/x`` is under ``$HOME``)."""
    if not cwd:
        return 'cd "$HOME"'
    if cwd == "~" or cwd.startswith("~/"):
        target = '"$HOME"/' + shlex.quote(cwd[2:]) if cwd[2:] else '"$HOME"'
    elif cwd.startswith("/"):
        target = shlex.quote(cwd)
    else:
        target = '"$HOME"/' + shlex.quote(cwd)
    return f'cd {target} 2>/dev/null || cd "$HOME"'


# Runs on a worker host around a phase: the phase gets its own session (one killpg ends
# it), and when the connection's stdin hits EOF — the head's ssh client was killed
# (cancel, a failing rank) or the connection dropped — the session is killed too.
# (Background jobs of a non-interactive bash read /dev/null, hence stdin saved as fd 3.)
_REMOTE_WATCHDOG = (
    "exec 3<&0\n"
    "setsid bash -c {inner} </dev/null 3<&- & p=$!\n"
    "( cat <&3 >/dev/null; kill -TERM -- -$p; sleep 2; kill -KILL -- -$p ) >/dev/null 2>&1 &\n"
    "w=$!\n"
    "wait $p; s=$?\n"
    "kill $w 2>/dev/null\n"
    "exit $s\n"
)


class SSHRunner:
    """Nodes are SSH hosts; the head (this host) runs its own rank directly.

    Other ranks run through the ``ssh`` binary (``-o BatchMode=yes``, the pool's key
    copied to the head with mode 0600, the host-key policy from ``runner_options``;
    argv built by ``ssh_command.ssh_argv``). The ssh client's stdin is a pipe held open by
    ``tail --pid`` of the client itself, so it never ends while the client lives; when
    the client is killed, the remote watchdog sees EOF and kills the remote session.

    Paths: by default jobs see the host's real home and file system; with
    ``isolate_home`` (pool option) HOME and absolute mounts live in the node folder, as
    on local nodes (``LocalRunner``) — for hosts shared with other work, and tests.
    """

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.options = dict(config.runner_options or {})

    def _on_node(self, node: NodeRef, script: str, env: Mapping[str, str], cwd: str | None) -> str:
        if self.options.get("isolate_home"):
            return LocalRunner().shell(node, script, env, cwd)
        exports = "".join(f"export {k}={shlex.quote(str(v))}; " for k, v in env.items())
        return f"{exports}{_cd(cwd)}; exec bash -c {shlex.quote(script)}"

    def shell(self, node: NodeRef, script: str, env: Mapping[str, str], cwd: str | None,
              secrets: Mapping[str, str] | None = None) -> str:
        if node.rank == self.config.rank:
            return self._on_node(node, script, env, cwd)
        # Another host: it cannot inherit them (known gap: they are in ssh's command line).
        inner = self._on_node(node, script, {**env, **(secrets or {})}, cwd)
        head = next((n for n in self.config.nodes if n.rank == self.config.rank), None)
        head_dir = Path(head.dir if head is not None and head.dir else ".")
        argv = ssh_argv(head_dir, self.options, node.__dict__)
        remote = "bash -c " + shlex.quote(_REMOTE_WATCHDOG.format(inner=shlex.quote(inner)))
        ssh = " ".join(shlex.quote(a) for a in argv) + " " + shlex.quote(remote)
        return (
            "p=$BASHPID; exec " + ssh + " < <(exec tail --pid=$p -s 0.2 -f /dev/null 2>/dev/null)"
        )


def runner_for(config: NodeConfig) -> NodeRunner:
    if config.runner == "local":
        return LocalRunner()
    if config.runner == "ssh":
        return SSHRunner(config)
    raise ValueError(f"unknown node runner {config.runner!r} in node.json")


def wrapper_argv(text: str, path: Path) -> list[str]:
    """``bash`` argv running wrapper ``text`` from a file (it removes the file first).

    Never ``bash -c text``: the text holds every node's copy of the script, and Linux
    refuses an argument over 128 KiB (MAX_ARG_STRLEN), so a 20 KiB script on 8 nodes
    would fail to start. bash keeps reading the unlinked file through its open fd.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"rm -f -- {shlex.quote(str(path))}\n{text}", encoding="utf-8")
    return ["bash", str(path)]


def phase_wrapper(node_shells: Sequence[str], log: Path, exit_file: Path,
                  job_umask: int | None = None) -> str:
    """Bash text running one phase on every node; writes the first failing exit code.

    One node: output straight to the log. Several: each line is prefixed ``(rank N)``;
    the first node to fail fails the phase, and the wrapper then ends the others.
    With ``job_umask`` the log and exit files are owner-only and each node's command
    runs under ``job_umask``.
    """
    qlog, qexit = shlex.quote(str(log)), shlex.quote(str(exit_file))
    if job_umask is not None:
        head = "umask 077\n"
        node_shells = [f"umask {job_umask:03o}; {text}" for text in node_shells]
    else:
        head = ""
    if len(node_shells) == 1:
        return f'{head}( {node_shells[0]} ) >>{qlog} 2>&1 </dev/null\necho "$?" >{qexit}\n'
    lines = [head] if head else []
    for rank, text in enumerate(node_shells):
        prefix = shlex.quote(f"s/^/(rank {rank}) /")
        lines.append(
            f"( ( {text} ) 2>&1 </dev/null | sed -u {prefix} >>{qlog}; s=${{PIPESTATUS[0]}}; "
            f'if [ "$s" -ne 0 ]; then echo "$s" >{qexit}; '
            "trap '' TERM; kill -TERM 0; sleep 1; kill -KILL 0; fi ) &"
        )
    lines += ["wait", f"[ -s {qexit} ] || echo 0 >{qexit}"]
    return "\n".join(lines) + "\n"

