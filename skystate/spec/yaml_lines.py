"""YAML loading that remembers the line of every mapping key.

PyYAML's C parser composes the node tree (fast); one Python walk then builds the
plain data. The table ``path -> line``, where ``path`` is the tuple of keys/indices
leading to a value, e.g. ``("resources", "accelerators")`` or ``("resources", "any_of",
0)``, is only needed for messages: it is built when first asked for, by a second walk of
the file's text that records it (lines are 1-based; ``()`` is the document's first line).
A file whose first walk finds a problem (a duplicate key, an alias bomb) is walked again
at once with its lines, so that the problem is reported at its line.
"""

from __future__ import annotations

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
        if kind is ScalarNode:
            if not implicit[0] or (_SHORTCUT and value and value[0] not in _IMPLICIT_FIRST):
                return _STR  # quoted, or no implicit type starts with this character
            if len(value) <= 64:
                key = (value, implicit)
                tag = _SCALAR_TAGS.get(key)
                if tag is None:
                    tag = super().resolve(kind, value, implicit)
                    if len(_SCALAR_TAGS) < 100_000:
                        _SCALAR_TAGS[key] = tag
                return tag
        elif kind is MappingNode:
            return self.DEFAULT_MAPPING_TAG  # type: ignore[no-any-return]
        elif kind is SequenceNode:
            return self.DEFAULT_SEQUENCE_TAG  # type: ignore[no-any-return]
        return super().resolve(kind, value, implicit)

Path_ = tuple[Any, ...]
Lines = dict[Path_, int] | None  # None: not recorded

_STR = "tag:yaml.org,2002:str"
# The first characters of the scalars an implicit resolver may type (int, bool, null...):
# a plain scalar starting otherwise is a string (unless a resolver takes any character).
_IMPLICIT_FIRST = frozenset(k for k in _Base.yaml_implicit_resolvers if k)
_SHORTCUT = None not in _Base.yaml_implicit_resolvers
_MERGE = "tag:yaml.org,2002:merge"
_INT = "tag:yaml.org,2002:int"
_MAX_DEPTH = 200
# Nodes built again through aliases/merges, per file: this many plus 4 per distinct node
# of the file (so expansion stays linear in the text; see _Builder).
ALIAS_EXPANSION_LIMIT = 10_000
ALIAS_EXPANSION_RATIO = 4
# Bytes of one YAML file (the largest real state files are well under 1 MiB).
MAX_FILE_BYTES = 16 * 1024 * 1024


class YamlDoc:
    """One YAML document: its data and where each key was written (``lines``, built when
    first asked for from the file's text)."""

    __slots__ = ("_lines", "_source", "_start", "data", "file", "index")

    def __init__(self, file: str, data: Any, lines: dict[Path_, int] | None = None,
                 index: int = 0, *, start: int | None = None,
                 source: _Source | None = None) -> None:
        self.file = file  # as shown to the user
        self.data = data
        self.index = index  # position in a multi-document file
        self._lines = lines
        self._start = start
        self._source = source

    @property
    def lines(self) -> dict[Path_, int]:
        if self._lines is None:
            self._lines = self._source.lines(self.index) if self._source is not None else {}
        return self._lines

    @property
    def start_line(self) -> int:
        if self._start is None:
            self._start = self.lines.get((), 1)
        return self._start

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


class _Source:
    """A file's text, shared by its documents, walked again for their lines on demand."""

    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self._tables: dict[int, dict[Path_, int]] | None = None

    def lines(self, index: int) -> dict[Path_, int]:
        if self._tables is None:
            self._tables = {i: lines or {} for i, _, lines, _ in _walk(self.text, self.file,
                                                                      record=True)}
        return self._tables.get(index, {})


class _NeedLines(Exception):
    """The walk without lines met a problem: the file is walked again to report it."""


class _Refused(Exception):
    """Input the builder refuses (alias bomb, duplicate key): one issue at ``line``."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Builder:
    """Builds Python data from composed nodes, recording key lines if ``record``.

    Bounded: the composed tree shares one node per anchor, so its size is linear in
    the text; only building it expands aliases. Every node built a second time (an
    alias, or a merge) counts towards a budget of ``ALIAS_EXPANSION_LIMIT`` plus
    ``ALIAS_EXPANSION_RATIO`` per distinct node: a "billion laughs" file stops after
    ~10^4 nodes (milliseconds) instead of exhausting memory, while a large file that
    shares a few anchors many times still loads.
    """

    def __init__(self, loader: Any, record: bool) -> None:
        self._loader = loader
        self._constructors = loader.yaml_constructors
        self._record = record
        self._seen: set[int] = set()
        self._distinct = 0
        self._expanded = 0

    def document(self, node: Node) -> tuple[Any, dict[Path_, int] | None]:
        lines = {(): node.start_mark.line + 1} if self._record else None
        self._seen.clear()  # anchors are per document; the budget is per file
        return self._build(node, (), lines, 0), lines

    def _count(self, node: Node, size: int, path: Path_, lines: Lines) -> None:
        key = id(node)
        if key not in self._seen:
            self._seen.add(key)
            self._distinct += size
            return
        self._expanded += size
        if self._expanded > ALIAS_EXPANSION_LIMIT + ALIAS_EXPANSION_RATIO * self._distinct:
            if lines is None:
                raise _NeedLines
            # the top-level key whose value expands (lines inside anchors are the anchor's)
            line = lines.get(path[:1], node.start_mark.line + 1)
            raise _Refused(line, f"YAML aliases expand past the limit ({self._expanded:,} "
                                 f"nodes built from {self._distinct:,} written; an alias "
                                 "bomb?): write the values out or use fewer nested aliases")

    def _build(self, node: Node, path: Path_, lines: Lines, depth: int) -> Any:
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
            if lines is None:
                return [self._build(item, path, None, depth + 1) for item in node.value]
            items = []
            for i, item in enumerate(node.value):
                sub = (*path, i)
                lines[sub] = item.start_mark.line + 1
                items.append(self._build(item, sub, lines, depth + 1))
            return items
        return self._loader.construct_object(node, deep=True)  # pragma: no cover

    def _key(self, key_node: Node, path: Path_, lines: Lines, depth: int) -> Any:
        key = self._build(key_node, path, lines, depth + 1)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "found an unhashable mapping key", key_node.start_mark
            ) from None
        return key

    def _mapping(self, node: MappingNode, path: Path_, lines: Lines,
                 depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        build = self._build
        pairs = node.value
        merged = any(k.tag == _MERGE for k, _ in pairs)
        if merged:
            out = self._merged(node, path, lines, depth)
            pairs = [(k, v) for k, v in pairs if k.tag != _MERGE]
        if lines is None:
            return self._plain_mapping(out, pairs, merged, depth)
        first: dict[Any, int] = {}
        for key_node, value_node in pairs:
            if type(key_node) is ScalarNode and key_node.tag == _STR:
                key: Any = key_node.value
            else:
                key = self._key(key_node, path, lines, depth)
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

    def _plain_mapping(self, out: dict[Any, Any], pairs: list[tuple[Node, Node]],
                       merged: bool, depth: int) -> dict[Any, Any]:
        """``_mapping`` without lines; a repeated key sends the file to a walk with them."""
        build = self._build
        keys: list[Any] = []
        for key_node, value_node in pairs:
            if type(key_node) is ScalarNode and key_node.tag == _STR:
                key: Any = key_node.value
            else:
                key = self._key(key_node, (), None, depth)
            if merged:
                keys.append(key)
            if type(value_node) is ScalarNode and value_node.tag == _STR:
                out[key] = value_node.value
            else:
                out[key] = build(value_node, (), None, depth + 1)
        if (len(set(keys)) if merged else len(out)) != len(pairs):
            raise _NeedLines
        return out

    def _merged(self, node: MappingNode, path: Path_, lines: Lines,
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


def _walk(text: str, file: str, record: bool
          ) -> list[tuple[int, Any, dict[Path_, int] | None, int]]:
    """(index, data, lines or None, first line) of every non-empty document of ``text``.
    Raises SpecError (and _NeedLines, without ``record``)."""
    loader = _Loader(text)
    found = []
    try:
        builder = _Builder(loader, record)
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover
                continue
            data, lines = builder.document(node)
            if data is not None:
                found.append((index, data, lines, node.start_mark.line + 1))
            index += 1
    except yaml.YAMLError as err:
        raise SpecError([yaml_error_issue(file, err)]) from None
    except _Refused as err:
        raise SpecError([SpecIssue(file, err.line, "", err.message)]) from None
    finally:
        loader.dispose()
    return found


def parse_yaml(text: str, file: str) -> list[YamlDoc]:
    """Every document of ``text``; empty documents are skipped. Raises SpecError."""
    try:
        found = _walk(text, file, record=False)
    except _NeedLines:  # a problem: walked again with lines, it is reported at its line
        found = _walk(text, file, record=True)
    source = _Source(text, file)
    return [YamlDoc(file, data, lines, index, start=start, source=source)
            for index, data, lines, start in found]


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
