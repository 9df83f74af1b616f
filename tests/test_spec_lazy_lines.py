"""Key lines are recorded only when a message needs them, and are then the same.

A file is walked once without lines; the table of a document is built from a second walk
when first asked for. A problem the first walk meets (a repeated key, also next to a
``<<:`` merge; an alias bomb) sends the file to the walk with lines, so it is still
reported at its line.
"""

from __future__ import annotations

import pytest

from skystate.exceptions import SpecError
from skystate.spec.yaml_lines import parse_yaml

TEXT = """\
kind: Cluster
name: a
resources:
  any_of:
    - {cpus: 4}
    - cpus: 8
      memory: 32
---
---
# an empty document above
kind: Job
name: j
envs: &e
  A: 1
other:
  <<: *e
  B: 2
"""


def test_start_lines_need_no_second_walk() -> None:
    first, second = parse_yaml(TEXT, "f.yaml")
    assert (first.start_line, second.start_line, second.index) == (1, 11, 2)
    assert first._source is not None and first._source._tables is None


def test_lines_asked_for_are_those_of_each_document() -> None:
    first, second = parse_yaml(TEXT, "f.yaml")
    assert second.lines[("envs", "A")] == 14
    assert second.lines[("other", "B")] == 17
    assert second.line_of(("other", "C")) == 15
    assert first.lines[("resources", "any_of", 1, "memory")] == 7
    assert first.line_of(("resources", "any_of", 0, "cpus")) == 5


@pytest.mark.parametrize(("text", "line", "words"), [
    ("a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a' (first at line 1)"),
    ("x: &x {k: 1}\ny:\n  <<: *x\n  j: 1\n  j: 2\n", 5, "duplicate key 'j' (first at line 4)"),
    ("- a: 1\n- {b: 1, b: 2}\n", 2, "duplicate key 'b'"),
])
def test_a_repeated_key_is_reported_at_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_yaml(text, "d.yaml")
    (issue,) = info.value.issues
    assert issue.line == line and words in issue.message


def test_a_merge_may_be_overridden_by_an_own_key() -> None:
    (doc,) = parse_yaml("x: &x {k: 1, j: 1}\ny:\n  <<: *x\n  j: 2\n", "m.yaml")
    assert doc.data["y"] == {"k": 1, "j": 2}
    assert doc.lines[("y", "j")] == 4


def test_an_alias_bomb_is_reported_at_its_top_level_key() -> None:
    rows = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i, name in enumerate("bcdefg"):
        prev = "abcdefg"[i]
        rows.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    rows.append("bomb: [*g, *g]")
    with pytest.raises(SpecError) as info:
        parse_yaml("\n".join(rows) + "\n", "bomb.yaml")
    (issue,) = info.value.issues
    assert "aliases expand past the limit" in issue.message and issue.line == 4  # d: &d [...]
