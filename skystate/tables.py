"""The one table renderer every listing uses (status, queue, refresh, api status, show-gpus).

- Not a terminal (piped, redirected): plain text, columns aligned with two spaces, no
  colour, no box; the header is the first line (titles only when a listing has several
  tables, as ``status``). On a terminal: a rich table, coloured.
- Nothing is ever cut to ``…``. When the table is wider than the screen (``$COLUMNS``, the
  terminal, else 80), whole columns are dropped, lowest priority first (priority 0 columns
  always stay); ``wide`` keeps every column. A line that is still too long stays long
  (plain) or wraps inside its cell (rich); a value is never shortened.
- A table that dropped columns says which, and that ``-o wide`` shows them.

Rich is imported only on a terminal, so a piped listing starts fast.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["OUTPUT_FORMATS", "Column", "Note", "Table", "by_first_word", "print_listing",
           "render_plain", "screen_width", "visible_columns"]

OUTPUT_FORMATS = ("table", "wide", "json")
PLAIN_GAP = 2  # spaces between plain columns
RICH_CELL_OVERHEAD = 3  # a rich cell's padding (1 + 1) and its border (1)

Style = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Column:
    header: str
    priority: int = 0  # 0: always shown; higher numbers are dropped first
    style: Style | None = None  # cell text -> rich style (terminal only)
    justify: str = "left"


@dataclass(frozen=True)
class Table:
    columns: Sequence[Column]
    rows: Sequence[Sequence[str]]
    title: str | None = None
    empty: str | None = None  # shown instead of the table when it has no rows


@dataclass(frozen=True)
class Note:
    """A line of text between tables (e.g. an error), never truncated."""

    text: str
    style: str | None = None
    lines: Sequence[str] = field(default_factory=tuple)  # indented lines under it


def by_first_word(styles: Mapping[str, str]) -> Style:
    """A style chosen by the first word of the cell (``STOPPED (autostop)`` -> STOPPED)."""
    def style(text: str) -> str | None:
        word = text.split(" ", 1)[0] if text else ""
        return styles.get(word)
    return style


def screen_width() -> int:
    return shutil.get_terminal_size((80, 24)).columns


def _clean(cell: Any) -> str:
    return " ".join(str(cell).split()) if cell is not None else "-"


def visible_columns(table: Table, width: int, *, wide: bool, gap: int = PLAIN_GAP,
                    edge: int = 0) -> list[int]:
    """Indexes of the columns to show: every column if ``wide``; else priority 0 and then
    columns in priority order (left to right within one priority) while the table fits,
    stopping at the first that does not."""
    count = len(table.columns)
    if wide:
        return list(range(count))
    widths = _widths(table)
    shown = [i for i, c in enumerate(table.columns) if c.priority == 0]
    total = edge + sum(widths[i] for i in shown) + gap * max(0, len(shown) - 1)
    optional = sorted((i for i, c in enumerate(table.columns) if c.priority > 0),
                      key=lambda i: (table.columns[i].priority, i))
    for index in optional:
        extra = widths[index] + gap
        if total + extra > width:
            break
        shown.append(index)
        total += extra
    return sorted(shown)


def _widths(table: Table) -> list[int]:
    widths = [len(c.header) for c in table.columns]
    for row in table.rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(_clean(cell)))
    return widths


def _hidden_note(table: Table, shown: list[int]) -> str | None:
    hidden = [c.header for i, c in enumerate(table.columns) if i not in shown]
    if not hidden:
        return None
    return f"(-o wide adds: {', '.join(hidden)})"


def render_plain(table: Table, *, width: int | None = None, wide: bool = False,
                 title: bool = True) -> str:
    """The table as aligned plain text (no trailing spaces); its title line first if it
    has one and ``title``."""
    if not table.rows and table.empty is not None:
        return table.empty
    shown = visible_columns(table, width or screen_width(), wide=wide)
    widths = _widths(table)
    lines = [table.title] if table.title and title else []
    for row in [[c.header for c in table.columns], *table.rows]:
        cells = []
        for index in shown:
            text = _clean(row[index]) if row is not None else "-"
            column = table.columns[index]
            cells.append(text.rjust(widths[index]) if column.justify == "right"
                         else text.ljust(widths[index]))
        lines.append((" " * PLAIN_GAP).join(cells).rstrip())
    note = _hidden_note(table, shown)
    if note:
        lines.append(note)
    return "\n".join(lines)


def _rich_table(table: Table, width: int, wide: bool) -> list[Any]:
    from rich.markup import escape
    from rich.table import Table as RichTable
    from rich.text import Text

    if not table.rows and table.empty is not None:
        return [Text(table.empty)]
    shown = visible_columns(table, width, wide=wide, gap=RICH_CELL_OVERHEAD,
                            edge=RICH_CELL_OVERHEAD + 1)
    out = RichTable(title=escape(table.title) if table.title else None, title_justify="left")
    for index in shown:
        column = table.columns[index]
        out.add_column(column.header, justify=column.justify,  # type: ignore[arg-type]
                       overflow="fold")
    for row in table.rows:
        cells = []
        for index in shown:
            text = _clean(row[index])
            style = table.columns[index].style
            cells.append(Text(text, style=(style(text) if style else None) or ""))
        out.add_row(*cells)
    parts: list[Any] = [out]
    note = _hidden_note(table, shown)
    if note:
        parts.append(Text(note, style="dim"))
    return parts


def print_listing(parts: Sequence[Table | Note], *, wide: bool = False,
                  out: TextIO | None = None) -> None:
    """Print tables and notes: rich on a terminal, plain text otherwise."""
    target = out or sys.stdout
    width = screen_width()
    if not target.isatty():
        blocks = []
        titles = sum(isinstance(p, Table) for p in parts) > 1  # only to tell tables apart
        for part in parts:
            if isinstance(part, Table):
                blocks.append(render_plain(part, width=width, wide=wide, title=titles))
            else:
                blocks.append("\n".join([part.text, *part.lines]))
        target.write("\n".join(blocks) + "\n")
        target.flush()
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(file=target, highlight=False, soft_wrap=False)
    for part in parts:
        if isinstance(part, Table):
            for renderable in _rich_table(part, console.width, wide):
                console.print(renderable)
        else:
            console.print(Text(part.text, style=part.style or ""))
            for line in part.lines:
                console.print(Text(line), soft_wrap=True)
