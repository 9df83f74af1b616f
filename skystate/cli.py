"""The ``skystate`` command's entry point: run a command, render its error once.

The commands are a typer app (cli_app), loaded only when needed: a local ``skystate
plan`` runs without typer (cli_plan). ``skystate.cli.app`` and the other names of cli_app
are still importable from here.
"""

from __future__ import annotations

import sys
from typing import Any


def _debug() -> bool:
    """``skystate --debug ...``: errors raise with their traceback (set by cli_app)."""
    app = sys.modules.get("skystate.cli_app")
    return bool(app is not None and app._DEBUG["on"])


def _run() -> None:
    from skystate.cli_plan import fast_plan_args, run_plan

    args = fast_plan_args(sys.argv[1:])
    if args is not None:
        code = run_plan(**args)
        if code:
            sys.exit(code)
        return
    from skystate.cli_app import app

    app()


def _error(text: str) -> None:
    from rich.markup import escape

    from skystate.cli_output import console

    console(stderr=True).print(f"[red]Error:[/red] {escape(text)}")


def main() -> None:
    from skystate.exceptions import SkyStateError, SpecError

    try:
        _run()
    except SpecError as exc:
        if _debug():
            raise
        from skystate.cli_output import console

        err = console(stderr=True)
        err.print(f"[red]Error:[/red] {len(exc.issues)} problem(s) in the state files; "
                  "nothing was changed:", markup=True)
        for line in exc.shown():
            err.print(f"  {line}", markup=False, highlight=False)
        sys.exit(1)
    except (SkyStateError, ValueError, RuntimeError, OSError) as exc:  # a request's error,
        if _debug():  # or bad input
            raise
        _error(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - anything else, e.g. a request's own error
        if _debug():
            raise
        _error(f"{type(exc).__name__}: {exc} (--debug shows the traceback)")
        sys.exit(1)


def __getattr__(name: str) -> Any:
    """``from skystate.cli import app`` (and the other commands) load the typer app."""
    if name.startswith("__"):
        raise AttributeError(name)
    from skystate import cli_app

    return getattr(cli_app, name)


if __name__ == "__main__":
    main()
