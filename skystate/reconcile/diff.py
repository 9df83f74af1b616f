"""Field-level diffs, computed only for resources that differ (deepdiff is slow at scale)."""

from __future__ import annotations

import re
from typing import Any

from skystate.reconcile.plan import FieldChange

_PATH_PART = re.compile(r"\[(?:'([^']*)'|(\d+))\]")


def _dotted(path: str) -> str:
    parts = [key if key else f"[{index}]" for key, index in _PATH_PART.findall(path)]
    return ".".join(parts).replace(".[", "[")


def field_changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[FieldChange]:
    if before == after:
        return []
    if not before or not after:  # a whole resource appears or goes: list its fields
        side = "after" if after else "before"
        return [FieldChange(path=key, **{side: value})
                for key, value in sorted((after or before or {}).items()) if value is not None]
    from deepdiff import DeepDiff

    diff = DeepDiff(before or {}, after or {}, verbose_level=2)
    changes: list[FieldChange] = []
    for key in ("values_changed", "type_changes"):
        for path, change in diff.get(key, {}).items():
            changes.append(FieldChange(path=_dotted(path), before=change.get("old_value"),
                                       after=change.get("new_value")))
    for path, value in diff.get("dictionary_item_added", {}).items():
        changes.append(FieldChange(path=_dotted(path), before=None, after=value))
    for path, value in diff.get("dictionary_item_removed", {}).items():
        changes.append(FieldChange(path=_dotted(path), before=value, after=None))
    for key, side in (("iterable_item_added", "after"), ("iterable_item_removed", "before")):
        for path, value in diff.get(key, {}).items():
            changes.append(FieldChange(path=_dotted(path), **{side: value}))
    return sorted(changes, key=lambda c: c.path)
