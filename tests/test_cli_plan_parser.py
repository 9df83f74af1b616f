"""The standard-library parser of a local ``skystate plan`` (cli_plan.fast_plan_args, which
spares a plan typer's import) reads every command line it accepts exactly as the typer
command does, and leaves every other one to typer: the options are defined twice, so this
keeps them one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from skystate import cli_app
from skystate.cli_plan import fast_plan_args

ACCEPTED = [
    ["plan"],
    ["plan", "d"],
    ["plan", "d", "--json", "--no-prune", "--detailed-exitcode", "--full"],
    ["plan", "--target", "Cluster/a", "--target=Job/b", "d", "--lock-timeout", "5"],
    ["plan", "--lock-timeout=2.5", "--no-refresh", "--", "d"],
]
LEFT_TO_TYPER = [
    ["plan", "--help"], ["plan", "--refresh", "d"], ["plan", "-o", "p.json", "d"],
    ["plan", "--jsn", "d"], ["plan", "a", "b"], ["plan", "--lock-timeout", "soon"],
    ["plan", "--target"], ["status"], [],
]


def _typer_args(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def capture(directory: Path, **kwargs: Any) -> int:
        seen.update(directory=directory, **kwargs)
        return 0

    monkeypatch.setattr(cli_app, "run_plan", capture)
    result = CliRunner().invoke(cli_app.app, argv)
    assert result.exit_code == 0, result.output
    return seen


@pytest.mark.parametrize("argv", ACCEPTED, ids=" ".join)
def test_an_accepted_plan_reads_as_typer_reads_it(argv: list[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fast = fast_plan_args(argv)
    assert fast is not None
    typed = _typer_args(argv, monkeypatch)
    assert typed.pop("out") is None and typed.pop("refresh") is False
    assert {**typed, "target": list(typed["target"])} == fast


@pytest.mark.parametrize("argv", LEFT_TO_TYPER, ids=" ".join)
def test_every_other_form_is_left_to_typer(argv: list[str]) -> None:
    assert fast_plan_args(argv) is None
