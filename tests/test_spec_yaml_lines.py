"""YAML loading with the line of every key."""

from __future__ import annotations

import pytest
import yaml

from skystate.exceptions import SpecError
from skystate.spec.yaml_lines import parse_yaml

TEXT = """\
# comment
kind: Cluster
name: train
resources:
  accelerators: A100:8
  any_of:
    - cpus: 4
    - {cpus: 8, memory: 32}
---
---
kind: Job
name: j
"""


def test_every_key_has_its_line():
    first, second = parse_yaml(TEXT, "f.yaml")
    assert first.lines[("kind",)] == 2
    assert first.lines[("resources", "accelerators")] == 5
    assert first.lines[("resources", "any_of", 0, "cpus")] == 7
    assert first.lines[("resources", "any_of", 1, "memory")] == 8
    assert first.start_line == 2
    assert second.start_line == 11 and second.index == 2  # empty document skipped


def test_line_of_a_missing_key_is_its_closest_written_ancestor():
    doc = parse_yaml(TEXT, "f.yaml")[0]
    assert doc.line_of(("resources", "disk_size")) == 4
    assert doc.line_of(("num_nodes",)) == doc.start_line


def test_data_equals_pyyaml_safe_load():
    text = TEXT + "envs: {A: 1, B: true, C: null, D: 1.5, E: '7', F: 0x10}\n"
    text += "x: &a {k: 1}\ny:\n  <<: *a\n"
    expected = [d for d in yaml.safe_load_all(text) if d is not None]
    assert [d.data for d in parse_yaml(text, "f")] == expected


def test_invalid_yaml_is_a_spec_issue_at_the_error_line():
    with pytest.raises(SpecError) as info:
        parse_yaml("kind: Cluster\nname: [a\nb: c\n", "bad.yaml")
    (issue,) = info.value.issues
    assert issue.file == "bad.yaml" and issue.line == 3
    assert issue.message.startswith("invalid YAML:")


def test_unknown_tags_are_rejected_safely():
    with pytest.raises(SpecError, match="invalid YAML"):
        parse_yaml("run: !!python/object/apply:os.system [echo]\n", "t.yaml")
