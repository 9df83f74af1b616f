"""SkyPilot's ``sky.Dag``: tasks in a chain (a pipeline), as SkyPilot's own programs build it.

``with sky.Dag() as dag:`` makes ``dag`` the current one; every ``sky.Task`` created inside the
block registers itself with it, in creation order. ``task_a >> task_b`` (or ``dag.add_edge``)
records an edge. Only chains are run: ``launch``/``exec`` take a one-task Dag, managed jobs take
a chain (``is_chain()``). A multi-document task YAML (a header document with ``name:``, then one
document per task) loads with ``Dag.from_yaml``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skystate.spec.task import Task

__all__ = ["Dag", "get_current_dag"]

_context = threading.local()


def _stack() -> list[Dag]:
    stack: list[Dag] | None = getattr(_context, "stack", None)
    if stack is None:
        stack = _context.stack = []
    return stack


def get_current_dag() -> Dag | None:
    """The innermost ``with Dag()`` block of this thread, if any."""
    stack = _stack()
    return stack[-1] if stack else None


@contextlib.contextmanager
def _no_current_dag() -> Iterator[None]:
    """Tasks built while loading a Dag belong to it alone, not to an enclosing ``with Dag()``."""
    saved = list(_stack())
    _stack().clear()
    try:
        yield
    finally:
        _stack()[:] = saved


class Dag:
    """Tasks and the edges between them; runnable when it is a chain."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self.tasks: list[Task] = []
        self.edges: set[tuple[int, int]] = set()  # (index of upstream, index of downstream)

    # --- building ----------------------------------------------------------------------

    def add(self, task: Task) -> None:
        if not any(existing is task for existing in self.tasks):
            self.tasks.append(task)

    def remove(self, task: Task) -> None:
        index = self._index(task)
        self.tasks.pop(index)
        self.edges = {
            (a - (a > index), b - (b > index)) for a, b in self.edges if index not in (a, b)
        }

    def add_edge(self, op1: Task, op2: Task) -> None:
        """``op1`` runs before ``op2`` (both are added if they are not in the Dag yet)."""
        if op1 is op2:
            raise ValueError("a task cannot depend on itself")
        self.add(op1)
        self.add(op2)
        self.edges.add((self._index(op1), self._index(op2)))

    def _index(self, task: Task) -> int:
        for index, existing in enumerate(self.tasks):
            if existing is task:
                return index
        raise ValueError(f"task {task.name!r} is not in this Dag")

    # --- reading -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.tasks)

    def is_chain(self) -> bool:
        """One task, or tasks each depending on the one before (edges i→i+1, or none at all:
        tasks added without edges run in the order they were added)."""
        count = len(self.tasks)
        if not self.edges:
            return True
        return self.edges == {(i, i + 1) for i in range(count - 1)}

    def chain(self) -> list[Task]:
        """The tasks in run order; ValueError if the Dag is not a chain."""
        if not self.is_chain():
            raise ValueError("only a chain of tasks (each depending on the one before) can run; "
                             "this Dag has other edges")
        return list(self.tasks)

    def single_task(self) -> Task:
        """The one task of a one-task Dag (what ``launch``/``exec`` accept)."""
        if len(self.tasks) != 1:
            raise ValueError(f"a Dag given to launch/exec must contain exactly one task, "
                             f"got {len(self.tasks)}; use sky.jobs.launch for a pipeline")
        return self.tasks[0]

    def __repr__(self) -> str:
        names = " >> ".join(str(task.name) for task in self.tasks)
        return f"Dag(name={self.name!r}, tasks=[{names}])"

    # --- context -----------------------------------------------------------------------

    def __enter__(self) -> Dag:
        _stack().append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        stack = _stack()
        if stack and stack[-1] is self:
            stack.pop()

    # --- YAML ----------------------------------------------------------------------------

    @staticmethod
    def from_yaml(yaml_path: str | Path) -> Dag:
        """A task YAML as a chain: one document is a one-task Dag; several documents are
        SkyPilot's pipeline form (an optional header ``{name: ...}``, then the tasks)."""
        from skystate.exceptions import SpecError, SpecIssue
        from skystate.spec.task import Task
        from skystate.spec.yaml_lines import load_yaml_file

        shown = str(yaml_path)
        docs = load_yaml_file(Path(yaml_path).expanduser(), shown)
        name: str | None = None
        if len(docs) > 1 and _is_header(docs[0].data):
            name = docs[0].data.get("name")
            docs = docs[1:]
        dag = Dag(name=name)
        for doc in docs:
            if not isinstance(doc.data, dict):
                raise SpecError([SpecIssue(
                    shown, doc.start_line, "",
                    f"a task YAML document must be a mapping, got {type(doc.data).__name__}",
                )])
            with _no_current_dag():
                dag.add(Task._from_doc(doc))
        for index in range(len(dag.tasks) - 1):
            dag.edges.add((index, index + 1))
        if dag.name is None and len(dag.tasks) == 1:
            dag.name = dag.tasks[0].name
        return dag


def _is_header(data: Any) -> bool:
    return isinstance(data, dict) and set(data) <= {"name", "execution"}
