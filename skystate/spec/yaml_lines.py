"""YAML loading that remembers the line of every mapping key.

PyYAML's C parser composes the node tree (fast); one Python walk then builds the
plain data and, on the side, a table ``path -> line`` where ``path`` is the tuple of
keys/indices leading to a value, e.g. ``("resources", "accelerators")`` or
``("resources", "any_of", 0)``. Lines are 1-based. The table also holds ``()`` for
the document's first line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from skystate.exceptions import SpecError, SpecIssue

try:  # libyaml is ~10x faster; fall back to the pure-Python parser.
    _Base: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Base = yaml.SafeLoader

_SCALAR_TAGS: dict[tuple[str, tuple[bool, bool]], str] = {}


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """SafeLoader with a memo of implicit scalar tags (no path resolvers used).

    Tag resolution runs a regex per scalar in Python; state files repeat the same
    scalars (keys, small numbers) over and over, so a memo halves composition time.
    """

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is ScalarNode and implicit[0] and len(value) <= 64:
            key = (value, implicit)
            tag = _SCALAR_TAGS.get(key)
            if tag is None:
                tag = super().resolve(kind, value, implicit)
                if len(_SCALAR_TAGS) < 100_000:
                    _SCALAR_TAGS[key] = tag
            return tag
        return super().resolve(kind, value, implicit)

Path_ = tuple[Any, ...]

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_INT = "tag:yaml.org,2002:int"
_MAX_DEPTH = 200
# Nodes built again through aliases/merges, per file: this many plus 4 per distinct node
# of the file (so expansion stays linear in the text; see _Builder).
ALIAS_EXPANSION_LIMIT = 10_000
ALIAS_EXPANSION_RATIO = 4
# Bytes of one YAML file (the largest real state files are well under 1 MiB).
MAX_FILE_BYTES = 16 * 1024 * 1024


@dataclass
class YamlDoc:
    """One YAML document: its data and where each key was written."""

    file: str  # as shown to the user
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    index: int = 0  # position in a multi-document file

    @property
    def start_line(self) -> int:
        return self.lines.get((), 1)

    def line_of(self, path: Path_) -> int:
        """The line of ``path``'s key, or of its closest written ancestor."""
        lines = self.lines
        path = tuple(path)
        while path:
            line = lines.get(path)
            if line is not None:
                return line
            path = path[:-1]
        return self.start_line


class _Refused(Exception):
    """Input the builder refuses (alias bomb, duplicate key): one issue at ``line``."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Builder:
    """Builds Python data from composed nodes, recording key lines.

    Bounded: the composed tree shares one node per anchor, so its size is linear in
    the text; only building it expands aliases. Every node built a second time (an
    alias, or a merge) counts towards a budget of ``ALIAS_EXPANSION_LIMIT`` plus
    ``ALIAS_EXPANSION_RATIO`` per distinct node: a "billion laughs" file stops after
    ~10^4 nodes (milliseconds) instead of exhausting memory, while a large file that
    shares a few anchors many times still loads.
    """

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        self._constructors = loader.yaml_constructors
        self._seen: set[int] = set()
        self._distinct = 0
        self._expanded = 0

    def document(self, node: Node) -> tuple[Any, dict[Path_, int]]:
        lines: dict[Path_, int] = {(): node.start_mark.line + 1}
        self._seen.clear()  # anchors are per document; the budget is per file
        return self._build(node, (), lines, 0), lines

    def _count(self, node: Node, size: int, path: Path_, lines: dict[Path_, int]) -> None:
        key = id(node)
        if key not in self._seen:
            self._seen.add(key)
            self._distinct += size
            return
        self._expanded += size
        if self._expanded > ALIAS_EXPANSION_LIMIT + ALIAS_EXPANSION_RATIO * self._distinct:
            # the top-level key whose value expands (lines inside anchors are the anchor's)
            line = lines.get(path[:1], node.start_mark.line + 1)
            raise _Refused(line, f"YAML aliases expand past the limit ({self._expanded:,} "
                                 f"nodes built from {self._distinct:,} written; an alias "
                                 "bomb?): write the values out or use fewer nested aliases")

    def _build(self, node: Node, path: Path_, lines: dict[Path_, int], depth: int) -> Any:
        cls = type(node)
        if cls is ScalarNode:
            tag = node.tag
            if tag == _STR:
                return node.value
            if tag == _INT and node.value.isdigit():
                return int(node.value)
            return self._constructors.get(tag, self._constructors[None])(self._loader, node)
        if depth > _MAX_DEPTH:
            raise yaml.constructor.ConstructorError(
                None, None, "document nested too deeply (recursive alias?)", node.start_mark
            )
        self._count(node, len(node.value) + 1, path, lines)
        if cls is MappingNode:
            if node.tag != "tag:yaml.org,2002:map":
                return self._loader.construct_object(node, deep=True)
            return self._mapping(node, path, lines, depth)
        if cls is SequenceNode:
            if node.tag != "tag:yaml.org,2002:seq":
                return self._loader.construct_object(node, deep=True)
            items = []
            for i, item in enumerate(node.value):
                sub = (*path, i)
                lines[sub] = item.start_mark.line + 1
                items.append(self._build(item, sub, lines, depth + 1))
            return items
        return self._loader.construct_object(node, deep=True)  # pragma: no cover

    def _mapping(self, node: MappingNode, path: Path_, lines: dict[Path_, int],
                 depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        build = self._build
        pairs = node.value
        if any(k.tag == _MERGE for k, _ in pairs):
            out = self._merged(node, path, lines, depth)
            pairs = [(k, v) for k, v in pairs if k.tag != _MERGE]
        first: dict[Any, int] = {}
        for key_node, value_node in pairs:
            if type(key_node) is ScalarNode and key_node.tag == _STR:
                key: Any = key_node.value
            else:
                key = build(key_node, path, lines, depth + 1)
                try:
                    hash(key)
                except TypeError:
                    raise yaml.constructor.ConstructorError(
                        None, None, "found an unhashable mapping key", key_node.start_mark
                    ) from None
            line = key_node.start_mark.line + 1
            if key in first:
                raise _Refused(line, f"duplicate key {key!r} (first at line {first[key]})")
            first[key] = line
            sub = (*path, key)
            lines[sub] = line
            if type(value_node) is ScalarNode and value_node.tag == _STR:
                out[key] = value_node.value
            else:
                out[key] = build(value_node, sub, lines, depth + 1)
        return out

    def _merged(self, node: MappingNode, path: Path_, lines: dict[Path_, int],
                depth: int) -> dict[Any, Any]:
        """The ``<<:`` mappings of ``node`` (earlier ones win), as PyYAML merges them."""
        sources: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                continue
            if isinstance(value_node, MappingNode):
                sources.append(value_node)
            elif isinstance(value_node, SequenceNode) and all(
                isinstance(v, MappingNode) for v in value_node.value
            ):
                self._count(value_node, len(value_node.value) + 1, path, lines)
                sources.extend(value_node.value)
            else:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "expected a mapping or list of mappings for merging",
                    value_node.start_mark,
                )
        out: dict[Any, Any] = {}
        for source in reversed(sources):
            merged = self._build(source, path, lines, depth + 1)
            if isinstance(merged, dict):
                out.update(merged)
        return out


def yaml_error_issue(file: str, err: yaml.YAMLError) -> SpecIssue:
    """A SpecIssue from a PyYAML error, at the line of its problem mark."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(err, "problem", None)
    context = getattr(err, "context", None)
    if problem:
        text = f"{context} {problem}" if context and context not in problem else problem
        if mark is not None:
            text += f" (column {mark.column + 1})"
    else:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return SpecIssue(file, line, "", f"invalid YAML: {text}")


def parse_yaml(text: str, file: str) -> list[YamlDoc]:
    """Every document of ``text``; empty documents are skipped. Raises SpecError."""
    loader = _Loader(text)
    docs: list[YamlDoc] = []
    try:
        builder = _Builder(loader)
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover
                continue
            data, lines = builder.document(node)
            if data is not None:
                docs.append(YamlDoc(file, data, lines, index))
            index += 1
    except yaml.YAMLError as err:
        raise SpecError([yaml_error_issue(file, err)]) from None
    except _Refused as err:
        raise SpecError([SpecIssue(file, err.line, "", err.message)]) from None
    finally:
        loader.dispose()
    return docs


def load_yaml_file(path: str | Path, display: str | None = None) -> list[YamlDoc]:
    """Parse a YAML file into documents with key lines. Raises SpecError."""
    shown = display if display is not None else str(path)
    try:
        size = Path(path).stat().st_size
        if size > MAX_FILE_BYTES:
            raise SpecError([SpecIssue(shown, None, "", (
                f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,} bytes (16 MiB)"
            ))])
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([SpecIssue(shown, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError([SpecIssue(shown, None, "", f"cannot read file: {err}")]) from None
    return parse_yaml(text, shown)
