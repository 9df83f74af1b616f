"""Host control for SSH nodes: scan, claim, start, stop, down — one process per call.

Self-contained (stdlib only, no ``skystate`` import at module level) so the controller
can run it on a host that has no skystate yet, by sending its source:
``python3 -c "$SOURCE" OP 'JSON'``; it prints one JSON line. Once a node folder exists,
the same file is also in the node's package copy, so the head's self-stop (autostop)
runs it as ``python3 -m skystate.runtime.hostctl selfstop stop|down NODE_DIR``.

A host's node folders live in a *base* folder (``~/.skystate-node`` by default); the
node folder of cluster ``c`` is ``<base>/c`` with the layout of ``skystate.runtime``
plus ``tags.json`` (the allocation: cluster, owner, rank, ...) and ``pkg/`` (the copy of
the runtime the agent runs from, on ``PYTHONPATH``). A host belongs to at most one
cluster: ``claim`` checks that under an ``flock`` of ``<base>/.lock``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

TAGS = "tags.json"
READY_TIMEOUT = 20.0


def _expand(base: str, host: str = "") -> Path:
    return Path(os.path.expanduser(base.replace("{host}", host))).resolve()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _gone(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text[text.rfind(")") + 2 :].split()[0] in ("Z", "X")


def agent_pid(node_dir: Path) -> int | None:
    """The live agent of a node folder (same rules as ``skystate.runtime.procs``)."""
    try:
        pid = int((node_dir / "runtime" / "agent.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    line = _cmdline(pid)
    if "skystate.runtime" not in line or str(node_dir) not in line or _gone(pid):
        return None
    return pid


def _node(node_dir: Path) -> dict[str, Any] | None:
    tags = _read_json(node_dir / TAGS)
    if not isinstance(tags, dict):
        return None
    return {
        "dir": str(node_dir),
        "tags": tags,
        "agent": agent_pid(node_dir),
        "autostopped": (node_dir / "runtime" / "autostopped").exists(),
    }


# --- operations ---------------------------------------------------------------------


def op_scan(args: dict[str, Any]) -> dict[str, Any]:
    """Every tagged node folder under the base folder."""
    base = _expand(args["base"], args.get("host", ""))
    clusters = {}
    if base.is_dir():
        for entry in sorted(base.iterdir()):
            node = _node(entry) if entry.is_dir() else None
            if node is not None:
                clusters[entry.name] = node
    return {"home": os.path.expanduser("~"), "base": str(base), "clusters": clusters,
            "cpus": os.cpu_count() or 1, "memory_gib": machine_memory_gib()}  # fmt: skip


def machine_memory_gib() -> float:
    """Total RAM from /proc/meminfo (also the local provider's default node size)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return 1.0


def op_claim(args: dict[str, Any]) -> dict[str, Any]:
    """Tag this host for a cluster unless another cluster holds it (atomic, idempotent)."""
    import fcntl

    base = _expand(args["base"], args.get("host", ""))
    base.mkdir(parents=True, exist_ok=True)
    cluster, owner = args["cluster"], args["owner"]
    with open(base / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for entry in sorted(base.iterdir()):
            tags = _read_json(entry / TAGS) if entry.is_dir() else None
            if not isinstance(tags, dict):
                continue
            if entry.name != cluster:
                return {"taken_by": entry.name, "owner": tags.get("owner")}
            if tags.get("owner") != owner:
                return {"taken_by": entry.name, "owner": tags.get("owner")}
            return {"dir": str(entry), "tags": tags, "home": os.path.expanduser("~")}
        node_dir = base / cluster
        _write_json(node_dir / TAGS, args["tags"])
    return {"dir": str(node_dir), "tags": args["tags"], "home": os.path.expanduser("~")}


def op_start(args: dict[str, Any]) -> dict[str, Any]:
    """Unpack the runtime, write node.json (+ key, known_hosts), start the agent, wait."""
    node_dir = Path(args["dir"])
    for sub in ("home", "root", "runtime/exit", "logs/jobs", "ssh"):
        (node_dir / sub).mkdir(parents=True, exist_ok=True)
    if args.get("package"):
        pkg = node_dir / "pkg"
        shutil.rmtree(pkg, ignore_errors=True)
        with tarfile.open(args["package"]) as tar:
            try:
                tar.extractall(pkg, filter="data")
            except TypeError:  # Python without extraction filters
                tar.extractall(pkg)
        os.unlink(args["package"])
    for name, text in (args.get("files") or {}).items():
        path = node_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o600)
    _write_json(node_dir / "node.json", args["node"])
    (node_dir / "runtime" / "autostopped").unlink(missing_ok=True)
    pid = agent_pid(node_dir)
    if pid is None:
        pid = _start_agent(node_dir, args.get("env") or {})
    return {"agent": pid}


def _start_agent(node_dir: Path, extra_env: dict[str, str]) -> int:
    (node_dir / "runtime" / "agent.pid").unlink(missing_ok=True)
    env = dict(os.environ, **extra_env, PYTHONPATH=str(node_dir / "pkg"))
    argv = [sys.executable, "-m", "skystate.runtime", "agent", "--node-dir", str(node_dir)]
    with open(node_dir / "logs" / "agent.log", "ab") as log:
        subprocess.Popen(
            argv, cwd=str(node_dir), env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=log, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        pid = agent_pid(node_dir)
        if pid is not None:
            return pid
        time.sleep(0.02)
    try:
        tail = (node_dir / "logs" / "agent.log").read_text(errors="replace")[-2000:]
    except OSError:
        tail = ""
    raise RuntimeError(f"agent of {node_dir} did not start within {READY_TIMEOUT:.0f}s:\n{tail}")


def _kill(pid: int, timeout: float = 5.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline += timeout
        time.sleep(0.02)


def _cancel_jobs(node_dir: Path) -> None:
    """Cancel the head's active jobs with the node's own runtime copy."""
    if not (node_dir / "runtime" / "jobs.db").exists() or not (node_dir / "pkg").is_dir():
        return
    sys.path.insert(0, str(node_dir / "pkg"))
    from skystate.runtime import api  # type: ignore[import-not-found]

    api.cancel(node_dir, all_jobs=True)


def op_stop(args: dict[str, Any]) -> dict[str, Any]:
    """Cancel jobs (head), end the agent; the folder (and the allocation) stays."""
    node_dir = Path(args["dir"])
    if (node_dir / TAGS).exists() and args.get("cancel", True):
        _cancel_jobs(node_dir)
    pid = agent_pid(node_dir)
    if pid is not None:
        _kill(pid)
    if args.get("clear_marker"):  # stopped by the controller, not by autostop
        (node_dir / "runtime" / "autostopped").unlink(missing_ok=True)
    return {"stopped": pid}


def op_down(args: dict[str, Any]) -> dict[str, Any]:
    """Stop, then remove the node folder (releases the host)."""
    node_dir = Path(args["dir"])
    tags = _read_json(node_dir / TAGS)
    if isinstance(tags, dict) and args.get("owner") and tags.get("owner") != args["owner"]:
        raise RuntimeError(f"{node_dir} belongs to owner {tags.get('owner')!r}, not ours")
    result = op_stop(args)
    shutil.rmtree(node_dir, ignore_errors=True)
    return {**result, "removed": str(node_dir)}


OPS = {"scan": op_scan, "claim": op_claim, "start": op_start, "stop": op_stop, "down": op_down}


# --- self-stop (autostop) on the head --------------------------------------------------


def selfstop(action: str, head_dir: Path) -> int:
    """Stop or down the whole cluster from its head: workers over ``ssh``, then itself.

    Runs from the node's package copy (``-m``), so it may import the runtime's modules.
    """
    from skystate.runtime.ssh_command import ssh_argv

    node = _read_json(head_dir / "node.json") or {}
    _cancel_jobs(head_dir)
    options = node.get("runner_options") or {}
    failures = 0
    for ref in node.get("nodes") or []:
        if int(ref["rank"]) == int(node.get("rank", 0)) or not ref.get("dir"):
            continue
        remote = (
            f"PYTHONPATH={_q(ref['dir'] + '/pkg')} python3 -m skystate.runtime.hostctl "
            f"{action} {_q(json.dumps({'dir': ref['dir'], 'cancel': False}))}"
        )
        argv = ssh_argv(head_dir, options, ref) + [remote]
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        print(f"{action} rank {ref['rank']} ({ref['ip']}): rc={done.returncode} "
              f"{done.stdout.strip()} {done.stderr.strip()}", flush=True)  # fmt: skip
        failures += done.returncode != 0
    pid = agent_pid(head_dir)
    if pid is not None:
        _kill(pid)
    if action == "down":
        shutil.rmtree(head_dir, ignore_errors=True)
    print(f"{action}: {head_dir} done ({failures} worker failures)", flush=True)
    return 1 if failures else 0


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _private_umask() -> None:
    """As ``layout.enter_private_umask`` (this file imports no skystate module)."""
    inherited = os.umask(0o077)
    os.environ.setdefault("SKYSTATE_JOB_UMASK", f"{inherited:03o}")


def main(argv: list[str]) -> int:
    _private_umask()
    if len(argv) == 3 and argv[0] == "selfstop" and argv[1] in ("stop", "down"):
        return selfstop(argv[1], Path(argv[2]).resolve())
    if len(argv) != 2 or argv[0] not in OPS:
        print("usage: hostctl scan|claim|start|stop|down JSON | selfstop stop|down DIR",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        result = OPS[argv[0]](json.loads(argv[1]))
    except Exception as exc:  # one JSON line either way
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
