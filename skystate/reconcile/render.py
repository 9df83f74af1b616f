"""Show a plan the way Terraform does: ``+`` create, ``~`` update, ``-/+`` replace, ``-`` delete.

Returns rich markup; rich drops the colours when output is not a terminal.
"""

from __future__ import annotations

import json
from typing import Any

from skystate.reconcile.plan import Action, ActionType, Plan

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


def render_action(action: Action) -> list[str]:
    symbol, colour = _SYMBOLS.get(action.type, (" ", "white"))
    num_nodes = int((action.after or action.before or {}).get("num_nodes") or 1)
    offer = offer_text(action.offer, num_nodes) if action.kind == "Cluster" else ""
    if action.failover_offers:
        offer += f" (then {len(action.failover_offers)} failover offer(s))"
    head = (f"[{colour}]{symbol:>3} {action.address}[/{colour}]  [bold]{action.type.value}"
            f"[/bold]  {offer}".rstrip())
    lines = [head, f"      [dim]reason: {action.reason}[/dim]"]
    for change in action.changes[:20]:
        if change.before is None:
            lines.append(f"      [green]+ {change.path}: {_value(change.after)}[/green]")
        elif change.after is None:
            lines.append(f"      [red]- {change.path}: {_value(change.before)}[/red]")
        else:
            lines.append(f"      [yellow]~ {change.path}: {_value(change.before)} → "
                         f"{_value(change.after)}[/yellow]")
    if len(action.changes) > 20:
        lines.append(f"      ... and {len(action.changes) - 20} more changes")
    return lines


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
    return f"Plan: {', '.join(parts)}; {counts.get('noop', 0)} unchanged."


def render_plan(plan: Plan) -> str:
    lines: list[str] = []
    if plan.errors:
        lines.append("[bold red]The plan has errors and cannot be applied:[/bold red]")
        lines.extend(f"  [red]✗ {e}[/red]" for e in plan.errors)
        lines.append("")
    changes = plan.changes
    if not changes and not plan.errors:
        lines.append("[green]No changes.[/green] The infrastructure matches the files "
                     f"({len(plan.actions)} resource(s) unchanged).")
    elif changes:
        lines.append(f"skystate will perform these actions (owner {plan.owner!r}):")
        lines.append("")
        for action in changes:
            lines.extend(render_action(action))
        lines.append("")
        lines.append(summary(plan))
        before = sum(a.hourly_before for a in plan.actions)
        after = sum(a.hourly_after for a in plan.actions)
        sign = "+" if after >= before else "-"
        lines.append(f"Cost: {sign}${abs(after - before):.2f}/h "
                     f"(${before:.2f}/h → ${after:.2f}/h)")
    for warning in plan.warnings:
        lines.append(f"[yellow]Warning: {warning}[/yellow]")
    return "\n".join(lines)
