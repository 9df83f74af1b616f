"""``skystate plan``: what it does, and its common form parsed without typer.

A local plan is the command run most against large state directories, and loading typer
costs more than planning a small one. So ``plan DIR`` with the read-only options
(``--target``, ``--no-prune``, ``--detailed-exitcode``, ``--full``, ``--json``,
``--lock-timeout``) is parsed here with the standard library and run at once; every other
form (``--help``, ``--refresh``, ``-o``, a typo, ``--debug``) goes to the typer app
(cli_app.plan), which defines the options, their help and their errors.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_FLAGS = {"--json": "as_json", "--no-prune": "no_prune",
          "--detailed-exitcode": "detailed_exitcode", "--full": "full", "--no-refresh": None}
_VALUED = {"--target": "target", "--lock-timeout": "lock_timeout"}


def fast_plan_args(argv: list[str]) -> dict[str, Any] | None:
    """``run_plan``'s arguments for ``argv`` (without the program name) when it is a plan
    this module runs alone, else None (the typer app parses it, errors included)."""
    if not argv or argv[0] != "plan":
        return None
    args: dict[str, Any] = {"as_json": False, "no_prune": False, "detailed_exitcode": False,
                            "full": False, "target": [], "lock_timeout": 30.0}
    positional: list[str] = []
    words: Iterator[str] = iter(argv[1:])
    for word in words:
        if word == "--":
            positional.extend(words)
            break
        if not word.startswith("-") or word == "-":
            positional.append(word)
            continue
        name, eq, value = word.partition("=")
        if name in _FLAGS and not eq:
            if _FLAGS[name] is not None:
                args[str(_FLAGS[name])] = True
            continue
        if name not in _VALUED:
            return None
        if not eq:
            found = next(words, None)
            if found is None:
                return None
            value = found
        if name == "--target":
            args["target"].append(value)
        else:
            try:
                args["lock_timeout"] = float(value)
            except ValueError:
                return None
    if len(positional) > 1:
        return None
    args["directory"] = Path(positional[0]) if positional else Path(".")
    return args


def run_plan(directory: Path, *, out: Path | None = None, as_json: bool = False,
             refresh: bool = False, target: list[str] | None = None, no_prune: bool = False,
             detailed_exitcode: bool = False, lock_timeout: float = 30.0,
             full: bool = False) -> int:
    """Plan, print it; the exit code (1: the plan has errors, 2: changes and
    ``detailed_exitcode``)."""
    targets = list(target or [])
    if out or refresh:  # refresh writes the state: a request to the server
        from skystate import sdk

        the_plan = sdk.get(sdk.plan(directory, refresh=refresh, targets=targets,
                                    prune=not no_prune))
    else:  # read-only: straight from the atomically written state file
        from skystate.reconcile.engine import plan_state_dir

        the_plan = plan_state_dir(directory, targets=targets, prune=not no_prune,
                                  lock_timeout=lock_timeout)
    if out:
        out.write_text(the_plan.to_json())
    if as_json:
        print(the_plan.to_json())
    else:
        print_plan(the_plan, full=full)
        if out:
            from skystate.cli_output import console

            console().print(f"Saved the plan to {out}; apply it with: skystate apply {out}")
    if the_plan.errors:
        return 1
    if detailed_exitcode and the_plan.has_changes:
        return 2
    return 0


def print_plan(the_plan: Any, full: bool = False) -> None:
    """Rich colours on a terminal; plain text (no rich rendering: it is most of the time of
    a large plan) when piped."""
    from skystate.reconcile.render import render_plan

    if sys.stdout.isatty():
        from skystate.cli_output import console

        console().print(render_plan(the_plan, full=full))
    else:
        sys.stdout.write(render_plan(the_plan, full=full, markup=False) + "\n")
        sys.stdout.flush()
