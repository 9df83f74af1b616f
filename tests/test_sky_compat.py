"""skystate agrees with SkyPilot 0.14.1 on every recorded task-YAML case.

Each ``tests/data/sky_compat/<case>.yaml`` has a ``<case>.verdict.json`` recorded by
``benchmarks/sky_diff.py --record`` from SkyPilot's own ``Task.from_yaml``: accepted or
rejected, and when accepted the parsed values in a normalised form. This test needs no
SkyPilot: it loads each case with skystate and compares (the same comparison as the
script). ``service/`` cases are checked by their own test.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _sky_diff() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sky_diff", ROOT / "benchmarks" / "sky_diff.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SKY_DIFF = _sky_diff()
CASES = SKY_DIFF.case_files()


def test_there_are_hundreds_of_cases_each_with_a_recorded_verdict() -> None:
    assert len(CASES) >= 300
    missing = [p.name for p in CASES if not p.with_suffix(".verdict.json").is_file()]
    assert missing == []
    verdicts = [json.loads(p.with_suffix(".verdict.json").read_text()) for p in CASES]
    accepted = sum(v["accepted"] for v in verdicts)
    assert 100 <= accepted <= len(CASES) - 100  # both verdicts well covered


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.relative_to(SKY_DIFF.CASES).as_posix())
def test_skystate_gives_skypilots_verdict_and_values(path: Path) -> None:
    verdict = json.loads(path.with_suffix(".verdict.json").read_text())
    ours = SKY_DIFF.skystate_result(path)
    assert SKY_DIFF.disagreement(verdict, ours) is None


def test_a_rejected_case_is_refused_at_the_line_of_its_field() -> None:
    path = SKY_DIFF.CASES / "multi" / "list-x-any-of.yaml"
    error = SKY_DIFF.skystate_result(path)["error"]
    assert f"{path}:3: resources.accelerators: a list of accelerators" in error


def test_the_editor_schema_flags_no_yaml_that_skypilot_accepts() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    from skystate.spec.schema import task_schema

    validator = jsonschema.Draft202012Validator(task_schema())
    flagged = []
    for path in CASES:
        verdict = json.loads(path.with_suffix(".verdict.json").read_text())
        docs = list(yaml.safe_load_all(path.read_text()))
        if verdict["accepted"] and not verdict.get("divergence") and len(docs) == 1:
            if list(validator.iter_errors(docs[0] or {})):
                flagged.append(path.relative_to(SKY_DIFF.CASES).as_posix())
    assert flagged == []
