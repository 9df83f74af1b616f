"""``workdir`` and ``file_mounts``: destinations that stay on the node, sources that exist.

- A destination is a path as a job sees it: ``~/x`` (or ``x``) under the home, ``/x``
  from the root. After normalising, it must not climb above that anchor with ``..``
  (``~/../../etc``, ``/../x``): on a local node the home and the root are folders of
  the node, so such a path would land outside it. (The local provider also checks, at
  copy time, that no symlink inside the node leads out.)
- A local source (not a URI such as ``s3://``) must exist when a launch or apply starts,
  so a typo fails before anything is provisioned.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable
from typing import Any

from skystate.exceptions import SpecIssue

__all__ = ["check_destination", "is_local_source", "missing_sources"]

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def check_destination(dst: Any) -> Any:
    """``dst`` unchanged, or ValueError when it leaves its node (see the module doc)."""
    if not isinstance(dst, str):
        return dst
    if "\x00" in dst:
        raise ValueError(f"file_mounts: destination {dst!r} contains a NUL byte")
    if dst == "~" or dst.startswith("~/"):
        anchor, rest = "~", dst[2:]
    elif dst.startswith("/"):
        anchor, rest = "/", dst.lstrip("/")
    else:
        anchor, rest = "~", dst
    normal = posixpath.normpath(rest) if rest else "."
    if normal == ".." or normal.startswith("../"):
        raise ValueError(
            f"file_mounts: destination {dst!r} climbs above {anchor} with '..'; "
            "a destination must stay on the node"
        )
    return dst


def is_local_source(source: Any) -> bool:
    return isinstance(source, str) and bool(source) and not _URI.match(source)


def missing_sources(
    workdir: Any, file_mounts: Any, where: Callable[[tuple[Any, ...]], tuple[str, int | None]]
) -> list[SpecIssue]:
    """Issues for a local ``workdir``/mount source that does not exist.

    ``where(path)`` gives (file, line) of a field path such as ``("file_mounts", dst)``.
    Relative sources are taken relative to the current directory (the loader has made
    the ones of state files absolute already).
    """
    issues: list[SpecIssue] = []

    def check(source: Any, path: tuple[Any, ...], what: str, field: str) -> None:
        if not is_local_source(source):
            return
        if not os.path.exists(os.path.expanduser(source)):
            file, line = where(path)
            issues.append(SpecIssue(file, line, field, f"{what} {source!r} does not exist"))

    if isinstance(workdir, str):
        check(workdir, ("workdir",), "workdir", "workdir")
    if isinstance(file_mounts, dict):
        for dst, src in file_mounts.items():
            if isinstance(src, dict):  # a storage mount: its local source(s)
                src = src.get("source")
            for one in src if isinstance(src, list) else [src]:
                check(one, ("file_mounts", dst), "file mount source", f"file_mounts.{dst}")
    return issues
