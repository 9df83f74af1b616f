"""What an ``apply`` request changes: its directory and every cluster it may touch.

An apply may create, change or prune any cluster of its owner, so it is exclusive with
requests on those clusters (and with another apply of the same directory); SDK
requests on other clusters run beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def keys_of_apply(source: Any) -> list[str]:
    from skystate.reconcile.operations import saved_plan

    plan = saved_plan(source)
    if plan is None:
        return _keys_of_directory(Path(str(source)))
    return sorted({f"cluster:{a.cluster or a.name}" for a in plan.actions
                   if (a.cluster or a.name)})


def _keys_of_directory(directory: Path) -> list[str]:
    from skystate.exceptions import SpecError
    from skystate.reconcile.store import read_snapshot
    from skystate.spec.loader import load_state_dir

    keys = {f"dir:{directory.resolve()}"}
    try:
        desired = load_state_dir(directory)
    except (SpecError, OSError):
        return sorted(keys)  # the worker reports the error; nothing will be changed
    owner = desired.project.name
    keys.update(f"cluster:{name}" for name in desired.clusters)
    keys.update(f"cluster:{c['name']}" for c in read_snapshot().get("clusters", [])
                if c.get("owner") == owner)
    return sorted(keys)
