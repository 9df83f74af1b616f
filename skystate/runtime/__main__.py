"""``python -m skystate.runtime COMMAND --node-dir D``: the runtime's CLI, JSON on stdout.

A thin front end over ``skystate.runtime.api`` for use over SSH on remote heads.
argparse (stdlib) rather than typer keeps the agent's dependencies to the stdlib.
Errors print ``{"error": ..., "type": ...}`` on stdout and exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from skystate.runtime import api
from skystate.runtime.layout import enter_private_umask


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m skystate.runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("agent", "run the node daemon in the foreground"),
        ("submit", "queue the job given as JSON on stdin; prints its id"),
        ("queue", "print the job table"),
        ("cancel", "cancel jobs by id, or --all"),
        ("autostop", "set (or cancel with a negative -i) autostop"),
        ("status", "print the agent's status"),
        ("log", "print a job's log"),
        ("setup", "run {script, envs, workdir} (JSON on stdin) on every node now"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--node-dir", required=True, type=Path)
        if name in ("queue", "cancel"):
            cmd.add_argument("job_ids", nargs="*", type=int)
        if name == "queue":
            cmd.add_argument("--detailed", action="store_true")
        if name == "cancel":
            cmd.add_argument("--all", action="store_true", dest="all_jobs")
        if name == "autostop":
            cmd.add_argument("-i", "--idle-minutes", type=float, required=True)
            cmd.add_argument("--down", action="store_true")
            cmd.add_argument("--wait-for", default="jobs_and_ssh")
        if name == "log":
            cmd.add_argument("job_id", type=int)
    return parser


def _run(args: argparse.Namespace) -> Any:
    node_dir: Path = args.node_dir
    if args.command == "submit":
        return {"job_id": api.submit(node_dir, json.loads(sys.stdin.read()))}
    if args.command == "queue":
        return api.queue(node_dir, args.job_ids or None, detailed=args.detailed)
    if args.command == "cancel":
        return {"cancelled": api.cancel(node_dir, args.job_ids or None, args.all_jobs)}
    if args.command == "autostop":
        return api.set_autostop(node_dir, args.idle_minutes, args.down, args.wait_for)
    if args.command == "status":
        return api.status(node_dir)
    if args.command == "log":
        return {"log": api.read_log(node_dir, args.job_id)}
    if args.command == "setup":
        spec = json.loads(sys.stdin.read())
        code = api.run_on_nodes(node_dir, spec["script"], spec.get("envs"), spec.get("workdir"))
        return {"exit_code": code}
    raise ValueError(f"unknown command {args.command}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    enter_private_umask()  # the node folder is owner-only; jobs get the inherited umask
    if args.command == "agent":
        from skystate.runtime.agent import main as agent_main

        return agent_main(args.node_dir)
    try:
        result = _run(args)
    except Exception as exc:  # rendered once, here, as JSON
        print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
        return 1
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
