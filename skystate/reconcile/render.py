"""Show a plan the way Terraform does: ``+`` create, ``~`` update, ``-/+`` replace, ``-`` delete.

``render_plan`` returns rich markup (``markup=True``, for a terminal) or plain text. A plan
with more than ``DETAIL_LIMIT`` changes stays readable: changes alike (same action, kind,
reason and offer) are shown as one group with its names summarised and one example's
field changes; ``full=True`` shows every change in detail (``--json`` has every field).
Unchanged resources are counted by kind and reason, never listed one by one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from skystate.reconcile import storage_mounts
from skystate.reconcile.plan import Action, ActionType, Plan

DETAIL_LIMIT = 40  # more changes than this: group alike ones
NAMES_SHOWN = 8  # names listed per group before "… and N more"
CHANGES_SHOWN = 20  # field changes listed per action

_SYMBOLS: dict[ActionType, tuple[str, str]] = {
    ActionType.CREATE: ("+", "green"),
    ActionType.SUBMIT_JOB: ("+", "green"),
    ActionType.SERVE_UP: ("+", "green"),
    ActionType.UPDATE: ("~", "yellow"),
    ActionType.SET_AUTOSTOP: ("~", "yellow"),
    ActionType.START: ("~", "yellow"),
    ActionType.STOP: ("~", "yellow"),
    ActionType.SERVE_UPDATE: ("~", "yellow"),
    ActionType.REPLACE: ("-/+", "magenta"),
    ActionType.DOWN: ("-", "red"),
    ActionType.CANCEL_JOB: ("-", "red"),
    ActionType.SERVE_DOWN: ("-", "red"),
}

Line = tuple[str, str]  # (rich style or "", plain text)


def _value(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def offer_text(offer: dict[str, Any] | None, num_nodes: int) -> str:
    if not offer:
        return ""
    infra = "/".join(p for p in (offer.get("provider"), offer.get("region"), offer.get("zone"))
                     if p)
    market = "spot" if offer.get("use_spot") else "on-demand"
    price = float(offer.get("hourly_price", 0.0)) * num_nodes
    nodes = f"{num_nodes}x " if num_nodes > 1 else ""
    return f"{nodes}{infra} {offer.get('instance_type')} {market} ${price:.2f}/h"


def service_offer_text(action: Action) -> str:
    """A replica's offer, and the $/hour at the minimum and maximum replica counts."""
    after = action.after or {}
    per_replica = offer_text(action.offer, int(after.get("num_nodes") or 1))
    if not per_replica:
        return ""
    if "hourly_at_min" not in after:
        return f"per replica {per_replica}"
    if after.get("ondemand_offer"):
        return _spot_mix_text(after, per_replica)
    low, high = after.get("min_replicas"), after.get("max_replicas")
    span = (f"${after['hourly_at_min']:.2f}/h at {low} replica(s)" if low == high else
            f"${after['hourly_at_min']:.2f}/h at {low} to ${after['hourly_at_max']:.2f}/h at "
            f"{high} replicas")
    return f"per replica {per_replica}; {span}"


def _spot_mix_text(after: dict[str, Any], spot: str) -> str:
    """Spot replicas with an on-demand fallback: both offers and the split's $/h."""
    ondemand = offer_text(after["ondemand_offer"], int(after.get("num_nodes") or 1))

    def at(split: list[int], price: float) -> str:
        return f"${price:.2f}/h at {split[0]} spot + {split[1]} on-demand"

    low = at(after["split_at_min"], after["hourly_at_min"])
    high = at(after["split_at_max"], after["hourly_at_max"])
    text = f"per replica {spot} or {ondemand}; {low}"
    if after["split_at_min"] != after["split_at_max"]:
        text += f" to {high}"
    if after.get("dynamic_ondemand_fallback"):
        text += "; on-demand also covers spot replicas that are not ready"
    return text


def _offer_of(action: Action) -> str:
    if action.kind == "Service":
        return service_offer_text(action)
    num_nodes = int((action.after or action.before or {}).get("num_nodes") or 1)
    offer = offer_text(action.offer, num_nodes) if action.kind in ("Cluster", "ManagedJob") \
        else ""
    cost = (action.after or {}).get("estimated_cost") if action.kind == "ManagedJob" else None
    if cost is not None:
        hours = float((action.after or {})["max_duration_seconds"]) / 3600
        offer += f", est. ${cost:.2f} for max_duration {hours:g}h"
    if action.failover_offers:
        offer += f" (then {len(action.failover_offers)} failover offer(s))"
    return offer


def _change_lines(action: Action, indent: str = "      ") -> list[Line]:
    lines: list[Line] = []
    for change in action.changes[:CHANGES_SHOWN]:
        if change.before is None:
            lines.append(("green", f"{indent}+ {change.path}: {_value(change.after)}"))
        elif change.after is None:
            lines.append(("red", f"{indent}- {change.path}: {_value(change.before)}"))
        else:
            lines.append(("yellow", f"{indent}~ {change.path}: {_value(change.before)} → "
                                    f"{_value(change.after)}"))
    if len(action.changes) > CHANGES_SHOWN:
        lines.append(("", f"{indent}... and {len(action.changes) - CHANGES_SHOWN} more changes"))
    return lines


def action_lines(action: Action) -> list[Line]:
    symbol, colour = _SYMBOLS.get(action.type, (" ", ""))
    head = f"{symbol:>3} {action.address}  {action.type.value}  {_offer_of(action)}".rstrip()
    after = action.after or {}
    mounts = (after.get("task") or {}).get("file_mounts") or after.get("file_mounts")
    storage = [("", f"      storage: {line}") for line in storage_mounts.describe(mounts)]
    return [(colour, head), ("dim", f"      reason: {action.reason}"), *storage,
            *_change_lines(action)]


def render_action(action: Action) -> list[str]:
    """One action in detail, as rich markup lines."""
    return [_markup(style, text) for style, text in action_lines(action)]


def _group_key(action: Action) -> tuple[str, str, str, str]:
    return (action.type.value, action.kind, action.reason, _offer_of(action))


def _names(addresses: Sequence[str], kind: str) -> str:
    prefix = f"{kind}/"
    short = [a[len(prefix):] if a.startswith(prefix) else a for a in addresses]
    more = len(short) - NAMES_SHOWN
    return ", ".join(short[:NAMES_SHOWN]) + (f", … and {more} more" if more > 0 else "")


def grouped_lines(changes: Sequence[Action]) -> list[Line]:
    """Changes alike as one entry each: count, names (summarised), one example's fields."""
    groups: dict[tuple[str, str, str, str], list[Action]] = {}
    for action in changes:
        groups.setdefault(_group_key(action), []).append(action)
    lines: list[Line] = []
    for (kind_of_action, kind, reason, offer), members in groups.items():
        if len(members) == 1:
            lines.extend(action_lines(members[0]))
            continue
        symbol, colour = _SYMBOLS.get(members[0].type, (" ", ""))
        head = f"{symbol:>3} {len(members)} {kind}s  {kind_of_action}  {offer}".rstrip()
        lines.append((colour, head))
        lines.append(("dim", f"      reason: {reason}"))
        lines.append(("", f"      {_names([a.address for a in members], kind)}"))
        example = members[0]
        if example.changes:
            lines.append(("dim", f"      e.g. {example.address}:"))
            lines.extend(_change_lines(example, indent="        "))
    return lines


def describe_enabled(considered: Sequence[str], skipped: dict[str, str]) -> str:
    from skystate.providers.enabled import Enabled

    return Enabled(tuple(considered), dict(skipped)).describe()


def summary(plan: Plan) -> str:
    counts = plan.counts()
    parts = [
        f"{counts.get('create', 0)} to create",
        f"{counts.get('replace', 0)} to replace",
        f"{counts.get('update', 0) + counts.get('set-autostop', 0)} to update in place",
        f"{counts.get('start', 0)} to start",
        f"{counts.get('stop', 0)} to stop",
        f"{counts.get('down', 0)} to destroy",
        f"{counts.get('submit-job', 0)} job(s) to submit",
        f"{counts.get('cancel-job', 0)} to cancel",
    ]
    served = [counts.get("serve-up", 0), counts.get("serve-update", 0),
              counts.get("serve-down", 0)]
    if any(served):
        parts.append(f"services: {served[0]} to serve up, {served[1]} to update, "
                     f"{served[2]} to take down")
    return f"Plan: {', '.join(parts)}; {counts.get('noop', 0)} unchanged."


def unchanged_lines(actions: Iterable[Action]) -> list[Line]:
    """Unchanged resources counted by kind and reason (names only for a handful)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for action in actions:
        if not action.is_change:
            groups.setdefault((action.kind, action.reason or "unchanged"), []).append(
                action.address)
    lines: list[Line] = []
    for (kind, reason), addresses in groups.items():
        names = f": {_names(addresses, kind)}" if len(addresses) <= NAMES_SHOWN else ""
        lines.append(("dim", f"  = {len(addresses)} {kind}(s) {reason}{names}"))
    return lines


def plan_lines(plan: Plan, *, full: bool = False) -> list[Line]:
    lines: list[Line] = []
    if plan.errors:
        lines.append(("bold red", "The plan has errors and cannot be applied:"))
        lines.extend(("red", f"  ✗ {e}") for e in plan.errors)
        lines.append(("", ""))
    changes = plan.changes
    if not changes and not plan.errors:
        lines.append(("green", "No changes. The infrastructure matches the files "
                               f"({len(plan.actions)} resource(s) unchanged)."))
    elif changes:
        lines.append(("", f"skystate will perform these actions (owner {plan.owner!r}):"))
        lines.append(("", ""))
        if full or len(changes) <= DETAIL_LIMIT:
            for action in changes:
                lines.extend(action_lines(action))
        else:
            lines.extend(grouped_lines(changes))
            lines.append(("dim", f"  ({len(changes)} changes, alike ones grouped; "
                                 "--full lists each, --json has every field)"))
        lines.append(("", ""))
        lines.append(("", summary(plan)))
        before = sum(a.hourly_before for a in plan.actions)
        after = sum(a.hourly_after for a in plan.actions)
        sign = "+" if after >= before else "-"
        lines.append(("", f"Cost: {sign}${abs(after - before):.2f}/h "
                          f"(${before:.2f}/h → ${after:.2f}/h)"))
    lines.extend(unchanged_lines(plan.actions))
    if plan.considered_providers:
        lines.append(("", "Clusters without infra go to the best offer of any enabled provider: "
                          + describe_enabled(plan.considered_providers, plan.skipped_providers)))
    lines.extend(("yellow", f"Warning: {warning}") for warning in plan.warnings)
    return lines


def _markup(style: str, text: str) -> str:
    from rich.markup import escape

    return f"[{style}]{escape(text)}[/{style}]" if style and text else escape(text)


def render_plan(plan: Plan, *, full: bool = False, markup: bool = True) -> str:
    """The plan as rich markup (``markup``) or plain text."""
    lines = plan_lines(plan, full=full)
    if not markup:
        return "\n".join(text for _, text in lines)
    return "\n".join(_markup(style, text) for style, text in lines)
