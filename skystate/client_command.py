"""The command line of this process as SkyPilot records it in a cluster's ``last_use``.

SkyPilot's client sends its ``entrypoint_command`` with every request (``sys.argv``
joined, the ``sky`` program shortened to its name, ``--secret K=V`` values redacted);
``launch`` and ``exec`` store it as the cluster's ``last_use``: ``sky launch -c c
task.yaml``, or ``app.py`` for a program run as ``python app.py``.
"""

from __future__ import annotations

import os
import shlex
import sys

_PROGRAMS = ("sky", "skystate")  # shortened to their name, as SkyPilot shortens ``sky``


def _redacted(argv: list[str]) -> list[str]:
    out: list[str] = []
    redact_next = False
    for arg in argv:
        if redact_next and "=" in arg:
            arg = arg.split("=", 1)[0] + "=<redacted>"
        elif arg.startswith("--secret=") and arg.count("=") >= 2:
            arg = "--secret=" + arg[len("--secret="):].split("=", 1)[0] + "=<redacted>"
        redact_next = arg == "--secret"
        out.append(arg)
    return out


def client_command(argv: list[str] | None = None) -> str:
    """``shlex.join`` of this process's argv, as ``last_use`` shows it."""
    args = list(sys.argv if argv is None else argv) or [""]
    if os.path.basename(args[0]) in _PROGRAMS:
        args[0] = os.path.basename(args[0])
    return shlex.join(_redacted(args))
